"""How many samples an HTTP inference body carries, where that can be told without decoding its
inputs.

The front door asks the scheduler whether a call would be refused before it decodes its inputs
(``ModelServer.refuse_early``), and a call of many samples is refused whole where the backlog
cannot serve them all in time (``ControllerService.submit_call``): a call of 16 samples is
judged as 16 requests, not one. Every input is batch first, so the count is the first dimension
of the first input's ``shape``:

- with binary tensors, from the small JSON header before them (``Inference-Header-Content-
  Length``), parsed and bounded as ``own_timeout`` does;
- in an all-JSON body, from the head of the first input, if its ``shape`` comes before its
  ``data`` in the first few KiB (``tritonclient`` and ``clockwork bench`` write it there).

A body that does not tell is counted as one sample: the answer is never more than the decoder
would find in a valid body (a body whose data disagrees with its shape gets its 400 from the
decoder, unless it is refused first).
"""

from __future__ import annotations

from typing import Any, Final

from clockwork.frontend.own_timeout import (
    END_BYTES,
    JSON_DECODER,
    UNKNOWN,
    binary_header,
    header_timeout_us,
    skip_space,
    stated_timeout_us,
)
from clockwork.frontend.shared_body import SharedBody

__all__ = ["stated_call", "stated_samples"]

# the members that end a walk: the bulky ones at the top level, and in an input its shape or
# (too late) its data
_BULKY: Final = frozenset({"inputs", "outputs"})
_SHAPE_OR_DATA: Final = frozenset({"shape", "data"})


def stated_call(
    body: bytearray | SharedBody, header_length: str | None, complete: bool = True
) -> tuple[int, int]:
    """The timeout ``body`` names (``own_timeout.stated_timeout_us``, ``UNKNOWN`` included) and,
    where it does name one, the samples it carries (else 1): a binary header parsed once for
    both."""
    if header_length is None:
        timeout_us = stated_timeout_us(body, None, complete)
        return timeout_us, stated_samples(body, None) if timeout_us != UNKNOWN else 1
    header = binary_header(body, header_length)
    timeout_us = header_timeout_us(header)
    return timeout_us, _header_samples(header) if timeout_us != UNKNOWN else 1


def stated_samples(body: bytearray | SharedBody, header_length: str | None) -> int:
    """The samples ``body`` carries by its first input's shape; 1 when that cannot be told
    without decoding it. ``header_length``: as ``own_timeout.stated_timeout_us``'s."""
    if header_length is None:
        data = body.view if isinstance(body, SharedBody) else body
        return _json_head_samples(bytes(data[:END_BYTES]).decode("utf-8", "replace"))
    return _header_samples(binary_header(body, header_length))


def _header_samples(header: dict[str, Any] | None) -> int:
    inputs = header.get("inputs") if header is not None else None
    first = inputs[0] if isinstance(inputs, list) and inputs else None
    return _batch(first.get("shape") if isinstance(first, dict) else None)


def _batch(shape: Any) -> int:
    if isinstance(shape, list) and shape and type(shape[0]) is int and shape[0] > 1:
        return int(shape[0])
    return 1


def _json_head_samples(text: str) -> int:
    """The first input's batch from the members before its ``data``, walking the top-level
    members up to ``inputs`` (nothing after a bulky member can be reached without reading it)."""
    try:
        top = _member(text, skip_space(text, 0), _BULKY)
        if top is None or top[0] != "inputs" or not text.startswith("[", top[1]):
            return 1
        first = _member(text, skip_space(text, top[1] + 1), _SHAPE_OR_DATA)
        if first is None or first[0] != "shape":
            return 1
        return _batch(JSON_DECODER.raw_decode(text, first[1])[0])
    except ValueError:  # the window ends inside a member, or the JSON is bad
        return 1


def _member(text: str, i: int, wanted: frozenset[str]) -> tuple[str, int] | None:
    """In the object that opens at ``i``, the first member whose key is in ``wanted``: its key
    and where its value starts; None if the object ends first (``ValueError`` if the text
    does)."""
    if not text.startswith("{", i):
        return None
    i += 1
    while True:
        key, i = JSON_DECODER.raw_decode(text, skip_space(text, i))
        i = skip_space(text, i)
        if not isinstance(key, str) or not text.startswith(":", i):
            return None
        i = skip_space(text, i + 1)
        if key in wanted:
            return key, i
        _, i = JSON_DECODER.raw_decode(text, i)
        i = skip_space(text, i)
        if not text.startswith(",", i):
            return None
        i += 1
