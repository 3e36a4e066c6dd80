"""Open Inference Protocol tensors <-> numpy, shared by the HTTP and gRPC layers.

Raw bytes (Triton's binary extension on HTTP, ``raw_input_contents`` on gRPC) are little-endian,
row-major; ``BYTES`` elements are each a 4-byte little-endian length and that many bytes. Every
error names the tensor and what is wrong with it and is a ``FrontendError(INVALID_ARGUMENT)``.
"""

from __future__ import annotations

import array as c_array
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from clockwork.frontend.api import ErrorKind, FrontendError, Tensor

NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

_MAX_DIMS = 16


def bad(tensor: str, problem: str) -> FrontendError:
    return FrontendError(ErrorKind.INVALID_ARGUMENT, f"tensor {tensor!r}: {problem}", "BAD_TENSOR")


def numpy_dtype(datatype: str, tensor: str) -> np.dtype[Any]:
    dt = NUMPY_DTYPES.get(datatype)
    if dt is None:
        if datatype == "BF16":
            raise bad(tensor, "datatype BF16 is not supported by this server")
        raise bad(
            tensor, f"unknown datatype {datatype!r}; expected one of {', '.join(NUMPY_DTYPES)}"
        )
    return dt


def datatype_of(array: npt.NDArray[np.generic]) -> str:
    """The OIP datatype name of a numpy array."""
    if array.dtype == np.dtype(object):
        return "BYTES"
    for name, dt in NUMPY_DTYPES.items():
        if dt == array.dtype.newbyteorder("<") or dt == array.dtype:
            return name
    raise FrontendError(ErrorKind.INTERNAL, f"numpy dtype {array.dtype} has no OIP datatype")


def check_shape(shape: Sequence[object], tensor: str) -> tuple[int, ...]:
    if not isinstance(shape, list | tuple) or len(shape) > _MAX_DIMS:
        raise bad(tensor, f"shape must be a list of at most {_MAX_DIMS} integers, got {shape!r}")
    if not all(type(d) is int and d >= 0 for d in shape):
        raise bad(tensor, f"shape {list(shape)} must hold integers >= 0")
    return tuple(int(d) for d in shape)


def element_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def from_raw(
    datatype: str, shape: Sequence[object], raw: bytes | memoryview, tensor: str
) -> npt.NDArray[np.generic]:
    """A tensor from its raw bytes; the byte count must match the shape exactly."""
    dims = check_shape(shape, tensor)
    dt = numpy_dtype(datatype, tensor)
    n = element_count(dims)
    if datatype == "BYTES":
        return _bytes_from_raw(memoryview(raw), dims, n, tensor)
    want = n * dt.itemsize
    if len(raw) != want:
        raise bad(
            tensor, f"{len(raw)} bytes of data, but shape {list(dims)} of {datatype} needs {want}"
        )
    return np.frombuffer(raw, dtype=dt).reshape(dims)


def _bytes_from_raw(
    raw: memoryview, dims: tuple[int, ...], n: int, tensor: str
) -> npt.NDArray[np.generic]:
    items: list[bytes] = []
    pos = 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise bad(tensor, "BYTES data ends inside an element's length prefix")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise bad(tensor, f"BYTES element {len(items)} claims {size} bytes past the end")
        items.append(bytes(raw[pos : pos + size]))
        pos += size
    if len(items) != n:
        raise bad(tensor, f"{len(items)} BYTES elements, but shape {list(dims)} needs {n}")
    out = np.empty(n, dtype=object)
    out[:] = items
    return out.reshape(dims)


def to_raw(array: npt.NDArray[np.generic]) -> bytes:
    """The raw bytes of a tensor (little-endian, row-major; BYTES length-prefixed)."""
    if array.dtype == np.dtype(object):
        parts = []
        for item in array.reshape(-1):
            b = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(b)))
            parts.append(b)
        return b"".join(parts)
    dt = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    return np.ascontiguousarray(array, dtype=dt).tobytes()


@dataclass(frozen=True, slots=True)
class ParsedNumbers:
    """A tensor's JSON data read straight into an array (``json_request``): flat, float64 for a
    floating-point datatype, int64 or uint64 for an integer one; not yet checked against the
    datatype's range nor the shape."""

    values: npt.NDArray[np.float64] | npt.NDArray[np.int64] | npt.NDArray[np.uint64]

    def as_array(self, dt: np.dtype[Any], dims: tuple[int, ...]) -> npt.NDArray[np.generic] | None:
        """The tensor, or None where the values do not make one of ``dt`` and ``dims`` (the
        checked path words why)."""
        values = self.values
        if len(values) != element_count(dims):
            return None
        if dt.kind in "iu":
            info = np.iinfo(dt)
            if len(values) and (values.min() < info.min or values.max() > info.max):
                return None
            return values.astype(dt).reshape(dims)
        with np.errstate(over="ignore"):
            out = values.astype(dt).reshape(dims)
        return out if np.isfinite(out).all() else None


def from_json(
    datatype: str, shape: Sequence[object], data: object, tensor: str
) -> npt.NDArray[np.generic]:
    """A tensor from JSON ``data`` (flat or nested lists, row-major, or ``ParsedNumbers``),
    checked element by element against the datatype."""
    dims = check_shape(shape, tensor)
    dt = numpy_dtype(datatype, tensor)
    n = element_count(dims)
    if isinstance(data, ParsedNumbers):
        parsed = data.as_array(dt, dims) if dt.kind in "iuf" else None
        if parsed is not None:
            return parsed
        data = data.values.tolist()  # the checked path decides, and words the error
    if type(data) is list and data and type(data[0]) is not list:
        # flat data the JSON reader left as a list (``json_request`` takes most as
        # ``ParsedNumbers``): read and checked in C; a 12,288-float image costs 0.25 ms here
        # against 1 ms as a checked set of types and numpy's conversion
        fast = _from_flat_numbers(datatype, dt, dims, n, data, tensor)
        if fast is not None:
            return fast
    flat = _flatten(data, tensor)
    if len(flat) != n:
        raise bad(tensor, f"{len(flat)} elements of data, but shape {list(dims)} needs {n}")
    if datatype == "BYTES":
        if not all(isinstance(x, str) for x in flat):
            raise bad(tensor, "BYTES data must be strings")
        out = np.empty(n, dtype=object)
        out[:] = [x.encode() for x in flat]
        return out.reshape(dims)
    if datatype == "BOOL":
        if not all(isinstance(x, bool) for x in flat):
            raise bad(tensor, "BOOL data must be true or false")
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        if not all(type(x) is int for x in flat):
            # orjson reads an integer beyond 64 bits as a float: say what the client sent
            if any(
                type(x) is float and x.is_integer() and not info.min <= x <= info.max for x in flat
            ):
                raise bad(tensor, f"{datatype} data out of range [{info.min}, {info.max}]")
            raise bad(tensor, f"{datatype} data must be integers")
        if flat and (min(flat) < info.min or max(flat) > info.max):
            raise bad(tensor, f"{datatype} data out of range [{info.min}, {info.max}]")
    elif not all(type(x) in (int, float) for x in flat):
        raise bad(tensor, f"{datatype} data must be numbers")
    try:
        with np.errstate(over="ignore"):
            array = np.asarray(flat, dtype=dt).reshape(dims)
    except (OverflowError, ValueError) as e:
        raise bad(tensor, f"data does not fit {datatype}: {e}") from e
    if dt.kind == "f":
        _check_finite(array, flat, datatype, tensor)
    return array


def _check_finite(
    array: npt.NDArray[np.generic], data: list[Any], datatype: str, tensor: str
) -> None:
    """Refuse NaN and infinities (not JSON numbers; Python's parser lets them through) and
    finite numbers too large for the datatype (they would become infinities)."""
    if np.isfinite(array).all():
        return
    for i, x in enumerate(data):
        if not math.isfinite(x):
            raise bad(
                tensor,
                f"element {i} is {x}: NaN and infinities (or numbers beyond a double, "
                "which parse as infinities) are not allowed",
            )
    largest = float(np.finfo(NUMPY_DTYPES[datatype]).max)
    raise bad(tensor, f"{datatype} data out of range [{-largest:g}, {largest:g}]")


# the C array type that reads a flat list of each datatype's JSON numbers (``array.array``
# refuses, in C, any element that is not a number of the kind, or is out of the type's range)
_ARRAY_CODES: Final = {
    "INT8": "b",
    "UINT8": "B",
    "INT16": "h",
    "UINT16": "H",
    "INT32": "i",
    "UINT32": "I",
    "INT64": "q",
    "UINT64": "Q",
    "FP16": "d",
    "FP32": "f",
    "FP64": "d",
}


_FEW_TO_CHECK_ONE_BY_ONE: Final = 64


def _from_flat_numbers(
    datatype: str,
    dt: np.dtype[Any],
    dims: tuple[int, ...],
    n: int,
    data: list[Any],
    tensor: str,
) -> npt.NDArray[np.generic] | None:
    """A numeric tensor from flat ``data`` whose elements are all numbers of the datatype's
    kind; None (the checked slow path decides, and words the error) otherwise."""
    code = _ARRAY_CODES.get(datatype)
    if code is None or len(data) != n:
        return None
    try:
        packed = c_array.array(code, data)
    except (TypeError, OverflowError):
        return None
    read = np.frombuffer(packed, dtype=np.dtype(code))
    # array.array takes true and false as 1 and 0: only elements read as 0 or 1 can be one;
    # where they are many (a zero image), their types are checked as a set, in C
    maybe_bool = np.flatnonzero((read == 0) | (read == 1))
    if len(maybe_bool) > _FEW_TO_CHECK_ONE_BY_ONE:
        if bool in set(map(type, data)):
            return None
    elif any(type(data[i]) is bool for i in maybe_bool.tolist()):
        return None
    with np.errstate(over="ignore"):
        out = read.astype(dt, copy=read.dtype != dt).reshape(dims)
    if dt.kind == "f":
        _check_finite(out, data, datatype, tensor)
    return out


def _flatten(data: object, tensor: str) -> list[Any]:
    if not isinstance(data, list):
        raise bad(tensor, f"data must be a list, got {type(data).__name__}")
    if not any(isinstance(x, list) for x in data):
        return data
    out: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                if len(stack) > _MAX_DIMS:
                    raise bad(tensor, f"data nested deeper than {_MAX_DIMS} levels")
                stack.append(iter(x))
                break
            out.append(x)
        else:
            stack.pop()
    return out


def to_json(array: npt.NDArray[np.generic]) -> list[Any]:
    """Flat row-major JSON data of a tensor (BYTES as strings, bytes decoded as UTF-8 with
    replacement)."""
    if array.dtype == np.dtype(object):
        return [
            x.decode(errors="replace") if isinstance(x, bytes) else str(x)
            for x in array.reshape(-1)
        ]
    if array.dtype.kind == "f":
        # NaN and infinities are not JSON: clients get null for them
        flat = array.reshape(-1).astype(np.float64)
        if not np.isfinite(flat).all():
            return [float(x) if math.isfinite(x) else None for x in flat.tolist()]
        return flat.tolist()
    return array.reshape(-1).tolist()


def to_json_flat(array: npt.NDArray[np.generic]) -> list[Any] | npt.NDArray[np.generic]:
    """``to_json``'s data for ``orjson.dumps`` with ``OPT_SERIALIZE_NUMPY``: a numeric tensor
    with only finite values as one flat contiguous array, which orjson writes without a Python
    object per element (the same bytes as the list: floats go as float64, as ``to_json`` makes
    them; an answer of 1,000 FP32 values took 42 us that way against 25 us this way); anything
    else as ``to_json``'s list."""
    kind = array.dtype.kind
    if kind not in "fiub":
        return to_json(array)
    flat = array.reshape(-1)
    if kind == "f":
        flat = flat.astype(np.float64)
        if not np.isfinite(flat).all():
            return to_json(array)
    return np.ascontiguousarray(flat)


def classify(tensor: Tensor, count: int) -> npt.NDArray[np.generic]:
    """Triton's classification: the ``count`` highest values of each batch row (the whole tensor
    when it has fewer than two dimensions), as BYTES ``"value:index"``, highest first, ties to the
    lower index."""
    array = tensor.data
    if array.dtype == np.dtype(object):
        raise bad(tensor.name, "classification needs a numeric output, not BYTES")
    if array.ndim < 2:
        rows = array.reshape(1, array.size)
    else:  # explicit sizes: numpy cannot infer a -1 dimension next to a zero-sized batch
        rows = array.reshape(array.shape[0], math.prod(array.shape[1:]))
    width = rows.shape[1]
    k = min(count, width)
    # a stable ascending sort of the reversed rows, read backwards, is a descending sort with ties
    # in index order; negating the values instead would wrap unsigned integers
    order = (width - 1) - np.argsort(rows[:, ::-1], axis=1, kind="stable")[:, ::-1][:, :k]
    values = np.take_along_axis(rows, order, axis=1)
    fmt = "{:f}:{}" if array.dtype.kind == "f" else "{:d}:{}"
    flat = [
        fmt.format(v, i).encode()
        for vals, idx in zip(values.tolist(), order.tolist(), strict=True)
        for v, i in zip(vals, idx, strict=True)
    ]
    out = np.empty(len(flat), dtype=object)
    out[:] = flat
    return out.reshape(values.shape if array.ndim >= 2 else (k,))
