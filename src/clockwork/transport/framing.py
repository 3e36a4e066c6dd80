"""Length-prefixed frames: a 4-byte big-endian payload length, then the payload (one message)."""

from __future__ import annotations

import asyncio
import struct

from clockwork.core.units import MIB
from clockwork.transport.errors import FrameError

HEADER = struct.Struct(">I")
HEADER_BYTES = HEADER.size
#: the largest payload accepted by default (a batch of 16 ResNet50 inputs is under 10 MiB)
DEFAULT_MAX_FRAME_BYTES = 64 * MIB
#: the most a 4-byte prefix can say
MAX_FRAME_LIMIT = 2**32 - 1


def frame_header(payload_bytes: int) -> bytes:
    if not 0 <= payload_bytes <= MAX_FRAME_LIMIT:
        raise FrameError(f"a frame cannot hold {payload_bytes} bytes (at most {MAX_FRAME_LIMIT})")
    return HEADER.pack(payload_bytes)


def check_frame_length(length: int, max_frame_bytes: int) -> None:
    if length > max_frame_bytes:
        raise FrameError(f"frame length {length} bytes exceeds the limit of {max_frame_bytes}")


async def read_frame_header(reader: asyncio.StreamReader, max_frame_bytes: int) -> int | None:
    """The next frame's payload length; None at a clean end of stream (between frames)."""
    try:
        header = await reader.readexactly(HEADER_BYTES)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise FrameError(
            f"truncated frame header: stream ended after {len(e.partial)} of {HEADER_BYTES} bytes"
        ) from e
    (length,) = HEADER.unpack(header)
    check_frame_length(length, max_frame_bytes)
    return int(length)


async def read_frame_payload(reader: asyncio.StreamReader, length: int) -> bytes:
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as e:
        raise FrameError(
            f"truncated frame: stream ended after {len(e.partial)} of {length} payload bytes"
        ) from e


async def read_frame(reader: asyncio.StreamReader, max_frame_bytes: int) -> bytes | None:
    """The next frame's payload; None at a clean end of stream; ``FrameError`` for an oversized
    length or a frame cut short."""
    length = await read_frame_header(reader, max_frame_bytes)
    if length is None:
        return None
    return await read_frame_payload(reader, length)
