"""The timeout an HTTP inference body names, where that can be told without decoding its inputs.

The front door asks the scheduler whether a request would be refused before it decodes the
request's inputs (``ModelServer.refuse_early``). The question needs the request's deadline, and
a KServe request may name its own timeout in ``parameters.timeout``, inside its JSON. With
binary tensors, the JSON is a small header before them (``Inference-Header-Content-Length``):
it is parsed, bounded, and the tensors are not touched.

An all-JSON body is not searched: its timeout may be anywhere in it, and even a byte search for
the key costs the loop milliseconds per MiB (about 5 ms for 9 MiB, 64 ms with a second pattern
for escaped spellings), which is what the decode processes are there to keep off it. But clients
write the request's ``parameters`` before or after the bulky ``inputs`` (tritonclient and
``clockwork bench`` last, others first), so its two ends are read, a few KiB each:

- the head: the top-level members before ``inputs`` or ``outputs``, parsed one by one;
- the tail: the last ``"parameters"`` key, if its object is followed by nothing but the closing
  brace of the body. Only a top-level member can be (a nested one is followed by at least two
  closing brackets in a valid body; an invalid one gets its 400 from the decoder unless it is
  refused first).

A body whose ends do not tell is searched whole, once it is all in and if it is at most
``SEARCH_MAX_BYTES`` (two byte searches in C, about 0.3 ms for 752 KB: one step of the loop, and
only for such bodies): with neither the key ``"parameters"`` spelt out nor any backslash (the
only other way to spell a key) it has no ``parameters`` member anywhere, so it names no timeout
(``perf_analyzer``'s JSON, for one). A larger body whose ends do not tell, a compressed one, or a
header too large or malformed is ``UNKNOWN``: it is decoded first, as every body was.
"""

from __future__ import annotations

import json
from typing import Any, Final

from clockwork.frontend.api import FrontendError
from clockwork.frontend.parameters import timeout_param
from clockwork.frontend.shared_body import SharedBody

__all__ = [
    "JSON_DECODER",
    "MAX_HEADER_BYTES",
    "SEARCH_MAX_BYTES",
    "UNKNOWN",
    "binary_header",
    "header_timeout_us",
    "skip_space",
    "stated_timeout_us",
]

#: only decoding the body can tell its timeout
UNKNOWN: Final = -1
#: a binary body's JSON header is parsed for its timeout up to this size (a header is usually
#: a few hundred bytes; the decoder takes larger ones elsewhere)
MAX_HEADER_BYTES: Final = 64 * 1024
#: how much of each end of an all-JSON body is read for its ``parameters``
END_BYTES: Final = 4 * 1024
#: an all-JSON body whose ends do not tell is searched for the key up to this size
SEARCH_MAX_BYTES: Final = 1 << 20

_PARAMETERS_KEY: Final = '"parameters"'
_KEY: Final = _PARAMETERS_KEY.encode()
#: JSON's whitespace (str.strip's default would take more)
_SPACE: Final = " \t\r\n"
#: occurrences of the key tried from the tail's end
_TAIL_TRIES: Final = 8
_BULKY_MEMBERS: Final = frozenset({"inputs", "outputs"})
JSON_DECODER: Final = json.JSONDecoder()


def stated_timeout_us(
    body: bytearray | SharedBody, header_length: str | None, complete: bool = True
) -> int:
    """The timeout ``body`` names, in microseconds: 0 when it names none (the model's default
    applies, as Triton reads 0), ``UNKNOWN`` when only decoding it can tell. ``header_length``
    is the value of ``Inference-Header-Content-Length`` (binary tensors follow the JSON); without
    it the body is all JSON: its ends are read, and then, if it is ``complete`` (not its first
    bytes only) and small enough, the whole of it is searched."""
    if header_length is None:
        data = body.view if isinstance(body, SharedBody) else body
        stated = _json_ends_timeout(data)
        if stated == UNKNOWN and complete and len(data) <= SEARCH_MAX_BYTES:
            raw = data if isinstance(data, bytearray) else bytes(data)
            if _KEY not in raw and b"\\" not in raw:
                return 0
        return stated
    return header_timeout_us(binary_header(body, header_length))


def binary_header(body: bytearray | SharedBody, header_length: str) -> dict[str, Any] | None:
    """The JSON header of a body with binary tensors (``header_length``: the value of
    ``Inference-Header-Content-Length``), parsed if it is at most ``MAX_HEADER_BYTES``; None
    when it cannot be (the decoder says what is wrong with it)."""
    try:
        end = int(header_length)
    except ValueError:
        return None
    size = body.size if isinstance(body, SharedBody) else len(body)
    if not 0 < end <= min(size, MAX_HEADER_BYTES):
        return None
    data = body.view if isinstance(body, SharedBody) else body
    try:
        header = json.loads(bytes(data[:end]))
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


def header_timeout_us(header: dict[str, Any] | None) -> int:
    """The timeout a binary body's parsed header (``binary_header``) names, as
    ``stated_timeout_us`` says it."""
    if header is None:
        return UNKNOWN
    params = header.get("parameters", {})
    if not isinstance(params, dict):
        return UNKNOWN
    try:
        timeout = timeout_param(params, "request")
    except FrontendError:
        return UNKNOWN  # the decoder says what is wrong with it
    return timeout or 0


def _json_ends_timeout(data: bytearray | memoryview) -> int:
    """The timeout of an all-JSON body from the ``parameters`` at its head or tail."""
    params = _head_parameters(data)
    if params is None:
        params = _tail_parameters(data)
    if params is None:
        return UNKNOWN
    try:
        timeout = timeout_param(params, "request")
    except FrontendError:
        return UNKNOWN  # the decoder says what is wrong with it
    return timeout or 0


def skip_space(text: str, i: int) -> int:
    """The first index from ``i`` that is not JSON whitespace."""
    while i < len(text) and text[i] in _SPACE:
        i += 1
    return i


def _head_parameters(data: bytearray | memoryview) -> dict[str, Any] | None:
    """``parameters`` if it comes among the top-level members before the bulky ones."""
    text = bytes(data[:END_BYTES]).decode("utf-8", "replace")
    i = skip_space(text, 0)
    if not text.startswith("{", i):
        return None
    i += 1
    try:
        while True:
            i = skip_space(text, i)
            key, i = JSON_DECODER.raw_decode(text, i)
            if not isinstance(key, str) or key in _BULKY_MEMBERS:
                return None
            i = skip_space(text, i)
            if not text.startswith(":", i):
                return None
            value, i = JSON_DECODER.raw_decode(text, skip_space(text, i + 1))
            if key == "parameters":
                return value if isinstance(value, dict) else None
            i = skip_space(text, i)
            if not text.startswith(",", i):
                return None  # the object ended (no parameters) or the window did
            i += 1
    except ValueError:  # the window ends inside a member, or the JSON is bad
        return None


def _tail_parameters(data: bytearray | memoryview) -> dict[str, Any] | None:
    """``parameters`` if it is the body's last top-level member (the key may also appear
    inside its own value: each of the last few occurrences is tried, the last first)."""
    text = bytes(data[-END_BYTES:]).decode("utf-8", "replace")
    at = len(text)
    for _ in range(_TAIL_TRIES):
        at = text.rfind(_PARAMETERS_KEY, 0, at)
        if at < 0:
            return None
        value = _last_member_at(text, at)
        if value is not None:
            return value
    return None


def _last_member_at(text: str, at: int) -> dict[str, Any] | None:
    """The object of the key at ``at`` if nothing but the body's closing brace follows it."""
    before = text[:at].rstrip(_SPACE)
    if not before.endswith((",", "{")):  # a key, not a string inside a value
        return None
    i = skip_space(text, at + len(_PARAMETERS_KEY))
    if not text.startswith(":", i):
        return None
    try:
        value, i = JSON_DECODER.raw_decode(text, skip_space(text, i + 1))
    except ValueError:
        return None
    if not isinstance(value, dict) or text[i:].strip(_SPACE) != "}":
        return None
    return value
