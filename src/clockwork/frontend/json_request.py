"""A JSON inference request read with its numeric tensor data parsed straight into arrays.

Parsed as Python objects, a 12,288-number input is 12,288 float objects made, read into an array
and freed: most of what decoding a JSON request costs. simdjson reads the document lazily and
hands a number array over as a buffer of doubles or 64-bit integers, with no object per element.
Everything else of the request becomes the Python values ``orjson.loads`` would give; an input's
numeric ``data`` becomes ``ParsedNumbers``, which ``tensor_codec.from_json`` checks and converts.

Whatever this reader does not take as it is (invalid JSON, NaN, integers beyond 64 bits, keys
given twice, true or false among numbers) it leaves to the usual parser (``loads_request``
returns None): that parser decides, and words any error, exactly as before.
"""

from __future__ import annotations

import threading
from typing import Any, Final, Literal

import numpy as np
import simdjson

from clockwork.frontend.tensor_codec import ParsedNumbers

__all__ = ["loads_request"]

# the buffer type simdjson reads each datatype's numbers as: doubles for floating point (JSON
# integers among them too), 64-bit integers for the integer types (a float among them, or a
# number out of the type's range, is refused and goes to the usual parser)
_BUFFER_TYPES: Final[dict[str, tuple[Literal["d", "i", "u"], np.dtype[Any]]]] = {
    "FP16": ("d", np.dtype(np.float64)),
    "FP32": ("d", np.dtype(np.float64)),
    "FP64": ("d", np.dtype(np.float64)),
    "INT8": ("i", np.dtype(np.int64)),
    "INT16": ("i", np.dtype(np.int64)),
    "INT32": ("i", np.dtype(np.int64)),
    "INT64": ("i", np.dtype(np.int64)),
    "UINT8": ("u", np.dtype(np.uint64)),
    "UINT16": ("u", np.dtype(np.uint64)),
    "UINT32": ("u", np.dtype(np.uint64)),
    "UINT64": ("u", np.dtype(np.uint64)),
}

# a parser keeps its buffers from one document to the next (a new one costs more than the parse
# of a 50 KB request), but must not parse while values of its last document are alive: one per
# thread (decode pools may run threads), replaced if a caller still holds its last document
_parsers = threading.local()

# ... and its buffers are sized for the largest document it read (several times the text): a
# larger document gets a parser of its own, let go with it, so that memory comes back after
# the largest inputs or a bomb
_KEEP_PARSER_MAX_BYTES: Final = 1 << 20


def _parse(json_part: bytes | bytearray | memoryview) -> object:
    if len(json_part) > _KEEP_PARSER_MAX_BYTES:
        return simdjson.Parser().parse(json_part)
    parser: simdjson.Parser | None = getattr(_parsers, "parser", None)
    if parser is not None:
        try:
            return parser.parse(json_part)
        except RuntimeError:
            pass  # its last document is still referenced: a fresh parser
    _parsers.parser = parser = simdjson.Parser()
    return parser.parse(json_part)


def loads_request(json_part: bytes | bytearray | memoryview) -> dict[str, Any] | None:
    """The request as ``orjson.loads`` gives it, but for each numeric input's flat ``data``
    (``ParsedNumbers``); None where the usual parser should read it (see the module
    docstring)."""
    try:
        doc = _parse(json_part)
        if not isinstance(doc, simdjson.Object):
            return None
        req = _fields(doc, lazy="inputs")
        inputs = req.get("inputs")
        if isinstance(inputs, simdjson.Array):
            req["inputs"] = [_input(spec) for spec in inputs]
        elif "inputs" in req:
            req["inputs"] = _plain(inputs)
    except (ValueError, TypeError, RuntimeError, _KeyTwiceError):
        return None
    return req


class _KeyTwiceError(Exception):
    """An object gives a key twice: orjson keeps the last value, simdjson finds the first."""


def _fields(obj: simdjson.Object, *, lazy: str) -> dict[str, Any]:
    """``obj``'s fields as Python values, but for ``lazy``'s, as simdjson gives it."""
    keys = list(obj.keys())
    if len(set(keys)) != len(keys):
        raise _KeyTwiceError
    return {k: obj[k] if k == lazy else _plain(obj[k]) for k in keys}


def _plain(value: object) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value


def _input(spec: object) -> Any:
    """One input: a dict whose numeric data is ``ParsedNumbers`` where it is a flat array of
    numbers of the datatype's kind."""
    if not isinstance(spec, simdjson.Object):
        return _plain(spec)
    out = _fields(spec, lazy="data")
    data = out.get("data")
    if isinstance(data, simdjson.Array):
        numbers = _numbers(data, out.get("datatype"))
        out["data"] = data.as_list() if numbers is None else numbers
    elif "data" in out:
        out["data"] = _plain(data)
    return out


def _numbers(data: simdjson.Array, datatype: object) -> ParsedNumbers | None:
    kind = _BUFFER_TYPES.get(datatype) if isinstance(datatype, str) else None
    if kind is None:
        return None
    of_type, dtype = kind
    try:
        values = np.frombuffer(data.as_buffer(of_type=of_type), dtype=dtype)
    except (ValueError, TypeError, RuntimeError):
        return None  # not all numbers of the kind: the checked path words why
    if len(values) != len(data):
        return None  # nested: the checked path flattens it, and bounds its depth
    return ParsedNumbers(values)
