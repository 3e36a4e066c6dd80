"""Errors of the transport layer."""

from __future__ import annotations

from clockwork.core.errors import ClockworkError


class ProtocolError(ClockworkError):
    """Bytes that are not a valid message (or a message that cannot be encoded); the text names
    what is wrong."""


class FrameError(ProtocolError):
    """A frame is malformed: a length prefix over the limit, or a frame cut short."""


class ConnectionClosedError(ClockworkError):
    """The connection is closed (by us, by the peer, or because of a protocol error); ``reason``
    says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HandshakeError(ConnectionError):
    """The link handshake failed: the peer is not a clockwork peer, speaks another handshake
    version, or did not prove the cluster secret. A ``ConnectionError``: to a caller of
    ``connect`` it is a connection that could not be made (retry later, as for a refused one)."""


class LinkRefusedError(HandshakeError):
    """The peer proved the secret but refused the link (a worker that serves another
    controller); the text carries its reason."""
