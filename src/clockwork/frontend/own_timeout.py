"""The timeout an HTTP inference body names, where that can be told without decoding its inputs.

The front door asks the scheduler whether a request would be refused before it decodes the
request's inputs (``ModelServer.refuse_early``): under a flood of large bodies that is the
difference between a refusal at once and one that waits its turn at the decode processes. The
question needs the request's deadline, and a KServe request may name its own timeout in
``parameters.timeout``, inside its JSON:

- with binary tensors, the JSON is a small header before them: it is parsed (bounded);
- an all-JSON body is not parsed (that is the work to be spared): if the bytes ``"timeout"`` do
  not occur in it, nor a ``\\u`` escape that could spell the key otherwise, it names none.

Anything else (a compressed body, a header too large or malformed, the key present in a JSON
body) is ``UNKNOWN``: the body is decoded first, as every body was.
"""

from __future__ import annotations

import json
import re
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

# the key as written, or an escape that could spell it otherwise
_TIMEOUT_KEY = re.compile(rb'"timeout"|\\u')


def stated_timeout_us(body: bytearray | SharedBody, header_length: str | None) -> int:
    """The timeout ``body`` names, in microseconds: 0 when it names none (the model's default
    applies, as Triton reads 0), ``UNKNOWN`` when only decoding it can tell. ``header_length``
    is the value of ``Inference-Header-Content-Length`` (binary tensors follow the JSON)."""
    data = body.view if isinstance(body, SharedBody) else body
    size = body.size if isinstance(body, SharedBody) else len(body)
    if header_length is None:
        return UNKNOWN if _TIMEOUT_KEY.search(data, 0, size) else 0
    try:
        end = int(header_length)
    except ValueError:
        return UNKNOWN
    if not 0 < end <= min(size, MAX_HEADER_BYTES):
        return UNKNOWN
    try:
        header = json.loads(bytes(data[:end]))
        params = header.get("parameters", {}) if isinstance(header, dict) else None
        if not isinstance(params, dict):
            return UNKNOWN
        timeout = timeout_param(params, "request")
    except (ValueError, FrontendError):
        return UNKNOWN  # the decoder says what is wrong with it
    return timeout or 0
