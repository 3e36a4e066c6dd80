"""The timeout an HTTP inference body names, where that can be told without decoding its inputs.

The front door asks the scheduler whether a request would be refused before it decodes the
request's inputs (``ModelServer.refuse_early``). The question needs the request's deadline, and
a KServe request may name its own timeout in ``parameters.timeout``, inside its JSON. With
binary tensors, the JSON is a small header before them (``Inference-Header-Content-Length``):
it is parsed, bounded, and the tensors are not touched. An all-JSON body is not looked into: its
timeout may be anywhere in it, and even a byte search for the key costs the loop milliseconds
per MiB (about 5 ms for 9 MiB, 64 ms with a second pattern for escaped spellings), which is what
the decode processes are there to keep off it. Such a body, a compressed one, or a header too
large or malformed is ``UNKNOWN``: it is decoded first, as every body was.
"""

from __future__ import annotations

import json
from typing import Final

from clockwork.frontend.api import FrontendError
from clockwork.frontend.parameters import timeout_param
from clockwork.frontend.shared_body import SharedBody

__all__ = ["MAX_HEADER_BYTES", "UNKNOWN", "stated_timeout_us"]

#: only decoding the body can tell its timeout
UNKNOWN: Final = -1
#: a binary body's JSON header is parsed for its timeout up to this size (a header is usually
#: a few hundred bytes; the decoder takes larger ones elsewhere)
MAX_HEADER_BYTES: Final = 64 * 1024


def stated_timeout_us(body: bytearray | SharedBody, header_length: str | None) -> int:
    """The timeout ``body`` names, in microseconds: 0 when it names none (the model's default
    applies, as Triton reads 0), ``UNKNOWN`` when only decoding it can tell. ``header_length``
    is the value of ``Inference-Header-Content-Length`` (binary tensors follow the JSON)."""
    if header_length is None:
        return UNKNOWN
    try:
        end = int(header_length)
    except ValueError:
        return UNKNOWN
    size = body.size if isinstance(body, SharedBody) else len(body)
    if not 0 < end <= min(size, MAX_HEADER_BYTES):
        return UNKNOWN
    data = body.view if isinstance(body, SharedBody) else body
    try:
        header = json.loads(bytes(data[:end]))
        params = header.get("parameters", {}) if isinstance(header, dict) else None
        if not isinstance(params, dict):
            return UNKNOWN
        timeout = timeout_param(params, "request")
    except (ValueError, FrontendError):
        return UNKNOWN  # the decoder says what is wrong with it
    return timeout or 0
