"""An in-memory transport for tests: two connected endpoints over asyncio queues.

``memory_pair()`` returns two ``MemoryConnection``s with the same interface and the same failure
behaviour as ``StreamConnection``. By default every message goes through the codec (encoded on
``send``, decoded on ``recv``), so that serialisation bugs show up in tests that use it; with
``use_codec=False`` the message objects themselves are passed (``sent_ns`` still stamped).
``send_raw`` injects arbitrary bytes as one frame, to test how a peer copes with garbage.

Closing one end lets the other receive what was already sent, then ends its ``recv`` with
``ConnectionClosedError``; sending to a closed peer closes this end too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Sequence

from clockwork.core.clock_sync import ClockSync
from clockwork.transport.codec import decode, encode
from clockwork.transport.connection import BaseConnection, ClockNs
from clockwork.transport.errors import ProtocolError
from clockwork.transport.framing import DEFAULT_MAX_FRAME_BYTES
from clockwork.transport.handshake import LinkPeer
from clockwork.transport.messages import Message


class _Eof:
    """Queued after the last item an endpoint will ever receive."""


_EOF = _Eof()

_Item = bytes | Message | _Eof


class MemoryConnection(BaseConnection):
    """One end of an in-memory connection (make them with ``memory_pair``)."""

    def __init__(
        self,
        name: str,
        *,
        use_codec: bool = True,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        clock_ns: ClockNs = time.monotonic_ns,
        clock_sync: ClockSync | None = None,
        stamp: bool = True,
    ) -> None:
        super().__init__(
            name,
            max_frame_bytes=max_frame_bytes,
            clock_ns=clock_ns,
            clock_sync=clock_sync,
            stamp=stamp,
        )
        self.use_codec = use_codec
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._peer: MemoryConnection | None = None
        self._peer_gone = False
        self._eof_queued = False
        self._rx_ns = clock_ns()
        #: what a handshake would have established about the other end (set by whoever
        #: stands in for it: an in-memory connection has none)
        self.peer: LinkPeer | None = None

    def _deliver(self, item: _Item) -> None:
        peer = self._peer
        if peer is None or self._peer_gone:
            self._mark_closed("peer closed the connection", logging.INFO)
            raise self._closed_error()
        peer._inbox.put_nowait(item)

    async def send(self, msg: Message) -> None:
        failed = self.send_nowait([msg])
        if failed:
            raise failed[0][1]
        await asyncio.sleep(0)  # let the receiver run, as a socket write would

    def send_nowait(self, msgs: Sequence[Message]) -> list[tuple[Message, ProtocolError]]:
        """Deliver ``msgs`` at once (an in-memory peer never makes a sender wait); returns the
        ``ProtocolError`` of each left out, as ``send_many`` does."""
        failed: list[tuple[Message, ProtocolError]] = []
        for msg in msgs:
            if self.closed:
                raise self._closed_error()
            stamp = self._send_stamp(msg)
            if not self.use_codec:
                self._deliver(
                    msg if stamp == msg.sent_ns else dataclasses.replace(msg, sent_ns=stamp)
                )
                continue
            try:
                payload = encode(msg, sent_ns=stamp)
            except ProtocolError as e:
                failed.append((msg, e))
                continue
            if len(payload) > self.max_frame_bytes:
                error = ProtocolError(
                    f"{type(msg).__name__} of {len(payload)} bytes exceeds the "
                    f"frame limit of {self.max_frame_bytes}; not sent"
                )
                failed.append((msg, error))
                continue
            self._deliver(payload)
        return failed

    @property
    def last_rx_ns(self) -> int:
        """When a message last arrived (our clock); when the connection was made, before any."""
        return self._rx_ns

    def has_buffered_frame(self) -> bool:
        """Whether a message waits already (the next ``recv`` will not wait)."""
        return not self._inbox.empty()

    async def send_raw(self, frame: bytes) -> None:
        """Deliver ``frame`` to the peer as one frame's payload, unchecked (for tests)."""
        if self.closed:
            raise self._closed_error()
        self._deliver(bytes(frame))
        await asyncio.sleep(0)

    async def recv(self) -> Message:
        if self.closed:
            raise self._closed_error()
        item = await self._inbox.get()
        if self.closed:  # closed while we waited
            raise self._closed_error()
        if isinstance(item, _Eof):
            self._mark_closed("peer closed the connection", logging.INFO)
            raise self._closed_error()
        self._rx_ns = self._clock_ns()
        if isinstance(item, bytes):
            if len(item) > self.max_frame_bytes:
                raise self._fail(
                    f"frame length {len(item)} bytes exceeds the limit of {self.max_frame_bytes}"
                )
            try:
                msg = decode(item)
            except ProtocolError as e:
                raise self._fail(f"undecodable frame of {len(item)} bytes: {e}") from None
        else:
            msg = item
        return self._received(msg)

    def _on_close(self, abort: bool) -> None:
        if self._eof_queued:
            return  # a later abort: nothing more to do
        self._eof_queued = True
        self._inbox.put_nowait(_EOF)  # wake our own pending recv
        peer = self._peer
        if peer is not None and not self._peer_gone:
            peer._inbox.put_nowait(_EOF)
            peer._peer_gone = True


def memory_pair(
    names: tuple[str, str] = ("a", "b"),
    *,
    use_codec: bool = True,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    clock_ns: ClockNs | tuple[ClockNs, ClockNs] = time.monotonic_ns,
    clock_sync: tuple[ClockSync | None, ClockSync | None] = (None, None),
) -> tuple[MemoryConnection, MemoryConnection]:
    """Two connected endpoints. ``clock_ns`` may give each end its own clock (to test skew)."""
    clocks = clock_ns if isinstance(clock_ns, tuple) else (clock_ns, clock_ns)
    a, b = (
        MemoryConnection(
            names[i],
            use_codec=use_codec,
            max_frame_bytes=max_frame_bytes,
            clock_ns=clocks[i],
            clock_sync=clock_sync[i],
        )
        for i in range(2)
    )
    a._peer, b._peer = b, a
    return a, b
