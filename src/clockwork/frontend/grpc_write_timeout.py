"""The gRPC door's write timeout: a client that stops reading does not hold answers for ever.

``DoorLimits.write_timeout_s`` bounds, as on HTTP (``http_door``), how long an answer may wait
for its client. gRPC core owns the sockets and has no write timer of its own, so two mechanisms
share the job (grpcio 1.85, measured on 127.0.0.1 with a child client SIGSTOPped after it sent
requests for 8 or 16 MiB answers; ``tests/frontend/test_grpc_write_timeout.py``):

- **A client whose transport stops reading** (a stopped or stuck process, a dead host). Without
  keep-alive the server's end stayed ESTABLISHED with 3.7 MB in its send queue and the RPCs never
  ended (watched for 8 s): unary answers stayed in core, a stream kept its door slot. With server
  keep-alive pings (``keepalive_options``: a ping every ``write_timeout_s`` on a connection with
  calls, closed when one is not acknowledged within ``write_timeout_s``) the connection was closed
  about 1.1 s after the stop with both set to 1 s, the RPCs ended and a stream's slot came back.
  A ping is queued while the send buffer is full and its timer runs from then, so data stuck
  before it does not delay the close; pings kept going after 5 s of calls that sent nothing, so
  ``grpc.http2.max_pings_without_data`` does not stop them. Clients do not police a server's
  pings (tritonclient's defaults included), and the server's own ping policing
  (``grpc.http2.min_ping_interval_without_data_ms``) is about the pings it receives: unchanged.
  The price: a client must read what the sockets already hold (a few MiB on loopback) and
  acknowledge the ping within ``write_timeout_s``; one reading slower than that is cut off.
- **A client whose transport reads but whose application does not** (a stream it never
  iterates). Its transport acknowledges pings, so keep-alive never fires; HTTP/2 flow control
  stops the answers with nothing in the send queue, and the stream held its door slot for ever.
  So each stream answer is written under ``write_timeout_s`` (``send_within``). aio gRPC cannot
  cancel a call from the server: on expiry the RPC's status (``UNAVAILABLE``, reason
  ``WRITE_TIMEOUT``) is queued behind the unsent answer and the handler's task ends as if the
  client had cancelled, so the door slot and the answers not yet written are released at once
  (measured: 1.0 s after the write began, with 1 s). A client that reads again gets the answer
  being written, then that status. The initial metadata is sent before the first answer: a
  write cut short leaves gRPC believing it unsent, and the status would carry it a second time,
  which core refuses (``GRPC_CALL_ERROR_TOO_MANY_OPERATIONS``).

What no timer here releases, until the client reads or its connection closes: the call in core,
with the one answer being written (a unary answer is sent by gRPC after the handler returns,
out of Python's reach), and the call's place under gRPC's ``maximum_concurrent_rpcs``, which aio
gRPC frees only when core ends the call (measured with keep-alive off: four unary answers
stalled at a stopped client and a limit of four, a fifth call from another client was refused
"Concurrent RPC limit exceeded!" though the stalled calls' tasks had ended). Keep-alive closes
the connection of a client that stops altogether; a client that answers pings but never opens
its flow-control windows (no gRPC library does; a hand-made HTTP/2 client can) keeps them until
its connection is closed, by ``max_connection_age_s`` if set. Nothing smaller than a connection
can be closed from Python.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from clockwork.frontend.api import REASON_METADATA_KEY
from clockwork.frontend.limits import Door, DoorLimits, Timeout

__all__ = ["WRITE_TIMEOUT_REASON", "keepalive_options", "send_within"]

WRITE_TIMEOUT_REASON = "WRITE_TIMEOUT"


def keepalive_options(limits: DoorLimits) -> list[tuple[str, int]]:
    """Channel arguments that close a connection whose client stops reading (see above)."""
    ms = max(1, round(limits.write_timeout_s * 1000))
    return [("grpc.keepalive_time_ms", ms), ("grpc.keepalive_timeout_ms", ms)]


async def send_within(context: grpc.aio.ServicerContext, response: Any, door: Door) -> None:
    """Write one answer of a stream, or, if the client takes none of it within the write
    timeout, end the RPC (``UNAVAILABLE`` queued behind it) by raising ``CancelledError``.
    The stream's initial metadata must have been sent."""
    timeout_s = door.limits.write_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            await context.write(response)
        return
    except TimeoutError:
        pass
    door.timed_out(Timeout.WRITE)
    status = asyncio.ensure_future(
        context.abort(
            grpc.StatusCode.UNAVAILABLE,
            f"the client read none of an answer for {timeout_s:g} s (the write timeout); "
            "the stream's other answers are dropped",
            trailing_metadata=((REASON_METADATA_KEY, WRITE_TIMEOUT_REASON),),
        )
    )
    # its first step starts the status's batch in core; awaiting it would wait for the client
    await asyncio.sleep(0)
    status.cancel()
    # how gRPC ends an RPC whose client went away: no status of its own, no error logged
    raise asyncio.CancelledError
