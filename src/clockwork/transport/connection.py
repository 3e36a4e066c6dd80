"""The interface every transport's connection offers, and the logic they share.

A connection carries protocol messages (``clockwork.transport.messages``) both ways:

- ``await send(msg)`` stamps ``sent_ns`` with the connection's clock (unless ``stamp=False``) and
  writes the message; it raises ``ConnectionClosedError`` once the connection is closed, and
  ``ProtocolError`` (leaving the connection open) for a message that cannot be encoded or is over
  ``max_frame_bytes``. ``await send_many(msgs)`` sends several in order and returns, instead of
  raising it, the ``ProtocolError`` of each message it had to leave out.
- ``await recv()`` returns the next message, or raises ``ConnectionClosedError`` once the
  connection is closed. ``async for msg in conn`` iterates until then, ending cleanly.
- Anything malformed from the peer (an oversized length prefix, a truncated frame, bytes that do
  not decode) closes *that* connection, logs the reason on the ``clockwork.transport`` logger and
  ends ``recv``/iteration with ``ConnectionClosedError``; nothing else is affected.
- ``close(reason)`` is synchronous and idempotent; the first reason sticks (``close_reason``).
  It flushes what was sent first; ``abort(reason)`` drops it. ``await wait_closed()`` waits
  (boundedly) until the transport is released.

With a ``ClockSync`` attached, every received message is observed (``sent_ns`` against the local
clock at receipt) and the ``min_delta_ns`` of a ``Ping``/``Pong`` is taken as the peer's report.
Answering pings is the application's job (``pong_for``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Protocol, Self

from clockwork.core.clock_sync import ClockSync
from clockwork.transport.errors import ConnectionClosedError, ProtocolError
from clockwork.transport.framing import DEFAULT_MAX_FRAME_BYTES
from clockwork.transport.messages import Message, Ping, Pong

log = logging.getLogger("clockwork.transport")

ClockNs = Callable[[], int]


class Connection(Protocol):
    """What the controller and worker code may rely on, whatever the transport."""

    @property
    def name(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    @property
    def close_reason(self) -> str | None: ...

    @property
    def clock_sync(self) -> ClockSync | None: ...

    async def send(self, msg: Message) -> None: ...

    async def send_many(self, msgs: Sequence[Message]) -> list[tuple[Message, ProtocolError]]: ...

    async def recv(self) -> Message: ...

    def close(self, reason: str = "closed locally") -> None: ...

    def abort(self, reason: str = "aborted locally") -> None: ...

    async def wait_closed(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[Message]: ...


def pong_for(ping: Ping, clock_sync: ClockSync | None = None) -> Pong:
    """The answer to ``ping`` (``sent_ns`` is stamped when it is sent), carrying our minimum
    one-way delta if we keep one."""
    return Pong(
        0, ping.seq, ping.sent_ns, None if clock_sync is None else clock_sync.local_min_delta_ns
    )


class BaseConnection:
    """State and behaviour shared by the transports: closing, logging, stamping, clock sync."""

    def __init__(
        self,
        name: str,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        clock_ns: ClockNs = time.monotonic_ns,
        clock_sync: ClockSync | None = None,
        stamp: bool = True,
    ) -> None:
        if max_frame_bytes <= 0:
            raise ValueError(f"max_frame_bytes must be positive, got {max_frame_bytes}")
        self._name = name
        self.max_frame_bytes = max_frame_bytes
        self._clock_ns = clock_ns
        self._clock_sync = clock_sync
        self._stamp = stamp
        self._close_reason: str | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def closed(self) -> bool:
        return self._close_reason is not None

    @property
    def close_reason(self) -> str | None:
        return self._close_reason

    @property
    def clock_sync(self) -> ClockSync | None:
        return self._clock_sync

    def __repr__(self) -> str:
        state = f"closed: {self._close_reason}" if self.closed else "open"
        return f"<{type(self).__name__} {self._name} {state}>"

    # ---- closing ---------------------------------------------------------------------------

    def close(self, reason: str = "closed locally") -> None:
        """Close the connection after what was sent is flushed (idempotent: the first reason is
        kept)."""
        self._mark_closed(reason, logging.INFO)

    def abort(self, reason: str = "aborted locally") -> None:
        """Close the connection at once, dropping anything not yet written."""
        self._mark_closed(reason, logging.INFO, abort=True)

    def _fail(self, reason: str) -> ConnectionClosedError:
        """Close because the peer broke the protocol; the error for the caller to raise."""
        self._mark_closed(reason, logging.WARNING, abort=True)
        return self._closed_error()

    def _mark_closed(self, reason: str, level: int, abort: bool = False) -> bool:
        if self._close_reason is not None:
            if abort:
                self._on_close(abort=True)
            return False
        self._close_reason = reason
        log.log(level, "connection %s closed: %s", self._name, reason)
        self._on_close(abort)
        return True

    def _on_close(self, abort: bool) -> None:
        """Release the transport's resources (called by the first close, and by an abort)."""

    def _closed_error(self) -> ConnectionClosedError:
        return ConnectionClosedError(f"connection {self._name} is closed: {self._close_reason}")

    # ---- hooks for subclasses --------------------------------------------------------------

    def _send_stamp(self, msg: Message) -> int:
        return self._clock_ns() if self._stamp else msg.sent_ns

    def _received(self, msg: Message, now: int | None = None) -> Message:
        """Observe ``msg`` (received at ``now``, local clock; default: read the clock now)."""
        sync = self._clock_sync
        if sync is not None:
            if now is None:
                now = self._clock_ns()
            sync.observe_received(msg.sent_ns, now)
            # a tuple, not ``Ping | Pong``: that builds a union object on every message
            if isinstance(msg, (Ping, Pong)) and msg.min_delta_ns is not None:
                sync.observe_peer_report(msg.min_delta_ns, now)
        return msg

    # ---- sending, receiving, iteration and context management -------------------------------

    async def send(self, msg: Message) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    async def send_many(self, msgs: Sequence[Message]) -> list[tuple[Message, ProtocolError]]:
        """Send ``msgs`` in order; return ``(message, error)`` for each that could not be sent
        (not encodable, or over the frame limit). Transports may write them all at once."""
        failed: list[tuple[Message, ProtocolError]] = []
        for msg in msgs:
            try:
                await self.send(msg)
            except ProtocolError as e:
                failed.append((msg, e))
        return failed

    async def recv(self) -> Message:  # pragma: no cover - overridden
        raise NotImplementedError

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.recv()
        except ConnectionClosedError:
            raise StopAsyncIteration from None

    async def wait_closed(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close("context exited" if exc is None else f"context exited with {exc!r}")
        await self.wait_closed()
