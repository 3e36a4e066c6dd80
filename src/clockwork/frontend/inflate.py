"""Content-Encoding of request bodies, undone with a bound on the decoded size.

A gzip body of 120 KiB can inflate to 60 MiB: the bound stops the inflation as soon as the
output passes it (the bomb costs the bound, not its full size), and the work runs where the
caller puts it (the decode pool: off the timed loop)."""

from __future__ import annotations

import zlib

from clockwork.frontend.api import ErrorKind, FrontendError

#: what the front door inflates itself (aiohttp's automatic decompression is off)
ENCODINGS = frozenset({"identity", "gzip", "x-gzip", "deflate"})

_GZIP_WBITS = 16 + zlib.MAX_WBITS


def normalise_encoding(header: str | None) -> str:
    """The body's single Content-Encoding, lower case ("identity" when none); a 400 naming it
    when it is not one the server inflates."""
    if header is None:
        return "identity"
    encoding = header.strip().lower() or "identity"
    if encoding not in ENCODINGS:
        raise FrontendError(
            ErrorKind.INVALID_ARGUMENT,
            f"Content-Encoding {header!r} is not supported; send gzip, deflate or none",
            "UNSUPPORTED_ENCODING",
        )
    return encoding


def inflate(
    body: bytes | bytearray | memoryview, encoding: str, max_bytes: int
) -> bytes | bytearray | memoryview:
    """``body`` decoded; ``PAYLOAD_TOO_LARGE`` once the output would pass ``max_bytes``,
    ``BAD_BODY`` for a stream that is not ``encoding`` or is cut short."""
    if encoding == "identity":
        return body
    if encoding in ("gzip", "x-gzip"):
        return _inflate(body, _GZIP_WBITS, encoding, max_bytes)
    try:  # deflate: zlib-wrapped as the RFC says, or raw as some clients send it
        return _inflate(body, zlib.MAX_WBITS, encoding, max_bytes)
    except FrontendError as e:
        if e.reason != "BAD_BODY":
            raise
        return _inflate(body, -zlib.MAX_WBITS, encoding, max_bytes)


def _inflate(
    body: bytes | bytearray | memoryview, wbits: int, encoding: str, max_bytes: int
) -> bytes:
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, max_bytes + 1)
    except zlib.error as e:
        raise FrontendError(
            ErrorKind.INVALID_ARGUMENT,
            f"request body cannot be read: not valid {encoding}: {e}",
            "BAD_BODY",
        ) from None
    if len(out) > max_bytes or d.unconsumed_tail:
        raise FrontendError(
            ErrorKind.PAYLOAD_TOO_LARGE,
            f"request body (decoded) is over the limit of {max_bytes} bytes",
            "PAYLOAD_TOO_LARGE",
        )
    if not d.eof:
        raise FrontendError(
            ErrorKind.INVALID_ARGUMENT,
            f"request body cannot be read: the {encoding} stream is cut short",
            "BAD_BODY",
        )
    return out
