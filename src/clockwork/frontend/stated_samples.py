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

import json
from typing import Any, Final

from clockwork.frontend.own_timeout import END_BYTES, MAX_HEADER_BYTES
from clockwork.frontend.shared_body import SharedBody

__all__ = ["stated_samples"]

_SPACE: Final = " \t\r\n"
_DECODER: Final = json.JSONDecoder()


def stated_samples(body: bytearray | SharedBody, header_length: str | None) -> int:
    """The samples ``body`` carries by its first input's shape; 1 when that cannot be told
    without decoding it. ``header_length``: as ``own_timeout.stated_timeout_us``'s."""
    data = body.view if isinstance(body, SharedBody) else body
    if header_length is None:
        return _json_head_samples(bytes(data[:END_BYTES]).decode("utf-8", "replace"))
    try:
        end = int(header_length)
    except ValueError:
        return 1
    if not 0 < end <= min(len(data), MAX_HEADER_BYTES):
        return 1
    try:
        header = json.loads(bytes(data[:end]))
    except ValueError:
        return 1
    inputs = header.get("inputs") if isinstance(header, dict) else None
    first = inputs[0] if isinstance(inputs, list) and inputs else None
    return _batch(first.get("shape") if isinstance(first, dict) else None)


def _batch(shape: Any) -> int:
    if isinstance(shape, list) and shape and type(shape[0]) is int and shape[0] > 1:
        return int(shape[0])
    return 1


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _SPACE:
        i += 1
    return i


def _json_head_samples(text: str) -> int:
    """The first input's batch from the members before its ``data``, walking the top-level
    members up to ``inputs`` (nothing after a bulky member can be reached without reading it)."""
    try:
        i = _skip(text, 0)
        if not text.startswith("{", i):
            return 1
        i += 1
        while True:
            key, i = _DECODER.raw_decode(text, _skip(text, i))
            i = _skip(text, i)
            if not isinstance(key, str) or not text.startswith(":", i):
                return 1
            i = _skip(text, i + 1)
            if key == "inputs":
                return _first_input_batch(text, i)
            if key == "outputs":
                return 1
            _, i = _DECODER.raw_decode(text, i)
            i = _skip(text, i)
            if not text.startswith(",", i):
                return 1
            i += 1
    except ValueError:  # the window ends inside a member, or the JSON is bad
        return 1


def _first_input_batch(text: str, i: int) -> int:
    if not text.startswith("[", i):
        return 1
    i = _skip(text, i + 1)
    if not text.startswith("{", i):
        return 1
    i += 1
    while True:
        key, i = _DECODER.raw_decode(text, _skip(text, i))
        i = _skip(text, i)
        if not isinstance(key, str) or not text.startswith(":", i) or key == "data":
            return 1
        value, i = _DECODER.raw_decode(text, _skip(text, i + 1))
        if key == "shape":
            return _batch(value)
        i = _skip(text, i)
        if not text.startswith(",", i):
            return 1
        i += 1
