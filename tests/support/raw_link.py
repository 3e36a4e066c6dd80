"""A link opened by hand: the handshake done, then plain streams for writing arbitrary bytes."""

from __future__ import annotations

import asyncio
import socket

from clockwork.transport.handshake import client_handshake


async def open_raw_link(
    host: str,
    port: int,
    *,
    secret: bytes | None = None,
    sender_id: str = "raw",
    take_over: bool = False,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a ``serve``-ing peer, pass the link handshake, and return the streams (no
    frames, no ``StreamConnection``): what a peer that holds the secret can send anything on."""
    sock = socket.create_connection((host, port))
    sock.setblocking(False)
    try:
        await client_handshake(
            sock, address=f"{host}:{port}", sender_id=sender_id, secret=secret, take_over=take_over
        )
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)
