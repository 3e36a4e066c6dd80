"""The gRPC side of the door (``limits``): server options and an admission interceptor.

gRPC core enforces the connection-level limits itself, from channel arguments: connections
(``grpc.max_allowed_incoming_connections``), streams per connection, the handshake (the HTTP/2
preface within the header timeout), idle and maximum connection age, and keep-alive ping abuse.
``DoorInterceptor`` counts RPCs in the door, inference (``ModelInfer``, ``ModelStreamInfer``: a
stream counts as one) and control apart, and refuses one over its kind's cap with
``RESOURCE_EXHAUSTED`` before its handler runs. ``maximum_concurrent_rpcs`` (both caps together)
is gRPC's own backstop. An answer its client stops reading is bounded by the write timeout
(``grpc_write_timeout``): keep-alive pings, and a timer on each stream answer.
Under a standing queue in front of the loop an inference call is refused as ``QUEUE_DELAY``
(``grpc_queue_delay``: the loop's lateness stands for the call's wait).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from clockwork.frontend.api import REASON_METADATA_KEY
from clockwork.frontend.door_ticket import TICKET, DoorTicket
from clockwork.frontend.grpc_queue_delay import LoopLag
from clockwork.frontend.grpc_write_timeout import keepalive_options, send_within
from clockwork.frontend.limits import Door, DoorLimits, Refusal, RequestKind
from clockwork.frontend.queue_delay import QueueDelayGate

__all__ = ["DoorInterceptor", "grpc_options", "maximum_concurrent_rpcs"]

_INFERENCE_METHODS = frozenset({"ModelInfer", "ModelStreamInfer"})
# a connection's pings without calls are allowed this often; a client pinging faster is
# cut off after a few strikes (gRPC's keep-alive enforcement)
_MIN_PING_INTERVAL_MS = 10_000
_MAX_PING_STRIKES = 2
_AGE_GRACE_MS = 5_000


def grpc_options(limits: DoorLimits) -> list[tuple[str, int]]:
    """Channel arguments of a gRPC server that enforce ``limits``."""
    options = [
        ("grpc.max_allowed_incoming_connections", limits.max_connections),
        ("grpc.max_concurrent_streams", limits.max_streams_per_connection),
        ("grpc.server_handshake_timeout_ms", round(limits.header_timeout_s * 1000)),
        ("grpc.max_connection_idle_ms", round(limits.idle_timeout_s * 1000)),
        ("grpc.http2.min_ping_interval_without_data_ms", _MIN_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", _MAX_PING_STRIKES),
        *keepalive_options(limits),
    ]
    if limits.max_connection_age_s > 0:
        options += [
            ("grpc.max_connection_age_ms", round(limits.max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", _AGE_GRACE_MS),
        ]
    return options


def maximum_concurrent_rpcs(limits: DoorLimits) -> int:
    return limits.max_inflight + limits.max_control_inflight


# grpcio ships no type information: its base class is Any to mypy
class DoorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Admission of each RPC through ``door``'s in-flight caps."""

    def __init__(self, door: Door) -> None:
        self._door = door
        self._refusals: dict[tuple[RequestKind, bool], grpc.RpcMethodHandler] = {
            (kind, method_is_stream): _refusal_handler(door, kind, method_is_stream)
            for kind in RequestKind
            for method_is_stream in (False, True)
        }
        self._loop_lag = LoopLag()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method.rpartition("/")[2]
        kind = RequestKind.INFERENCE if method in _INFERENCE_METHODS else RequestKind.CONTROL
        door = self._door
        why = door.at_cap(kind)
        if why is not None:
            door.refused(why)
            return self._refusals[kind, method == "ModelStreamInfer"]
        if kind is RequestKind.INFERENCE and door.grpc_queue_delay.target_ns:
            waited_ns = self._loop_lag.late_ns()
            if not door.grpc_queue_delay.admit(waited_ns, time.monotonic_ns()):
                door.refused(Refusal.QUEUE_DELAY)
                return _queue_delay_refusal(
                    door.grpc_queue_delay, waited_ns, method == "ModelStreamInfer"
                )
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        return _counted(door, kind, handler)


def _refusal_handler(door: Door, kind: RequestKind, stream: bool) -> grpc.RpcMethodHandler:
    """A handler that refuses a call over its kind's cap at once, never decoding it."""
    return _refusing(stream, lambda: door.at_cap_message(kind))


def _queue_delay_refusal(gate: QueueDelayGate, waited_ns: int, stream: bool) -> Any:
    """A handler that refuses a call that stood in the loop's queue, never decoding it."""
    message = (
        f"the server is behind: its loop runs {waited_ns / 1e6:.1f} ms late, and has run over "
        f"{gate.target_ns / 1e6:g} ms late for {gate.interval_ns / 1e6:g} ms; retry later"
    )
    return _refusing(stream, lambda: message, ((REASON_METADATA_KEY, Refusal.QUEUE_DELAY.value),))


def _refusing(
    stream: bool, message: Callable[[], str], metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.RpcMethodHandler:
    """A unary or stream handler that answers ``RESOURCE_EXHAUSTED`` with ``message()`` (read
    when it runs) and ``metadata``, never reading the request."""

    if stream:

        async def refuse_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message(), metadata)
            yield  # pragma: no cover - abort raises; the yield makes this a stream handler

        return grpc.stream_stream_rpc_method_handler(refuse_stream)

    async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message(), metadata)

    return grpc.unary_unary_rpc_method_handler(refuse)


def _counted(door: Door, kind: RequestKind, handler: grpc.RpcMethodHandler) -> Any:
    """``handler`` with its calls counted in flight in ``door``."""
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            door.enter(kind)
            if kind is not RequestKind.INFERENCE:
                try:
                    return await inner(request, context)
                finally:
                    door.leave(kind)
            # the first byte's time is gRPC's own: the ticket's begins at admission
            ticket = DoorTicket(time.perf_counter_ns())
            token = TICKET.set(ticket)
            try:
                return await inner(request, context)
            finally:
                door.leave(kind)
                TICKET.reset(token)
                door.settle(ticket, time.perf_counter_ns())

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None:
        inner_stream = handler.stream_stream

        # written here rather than yielded to gRPC, so that each write has the write timeout
        async def stream(requests: Any, context: grpc.aio.ServicerContext) -> None:
            door.enter(kind)
            responses = inner_stream(requests, context)
            try:
                await context.send_initial_metadata(())  # see ``send_within``
                async for response in responses:
                    await send_within(context, response, door)
            finally:
                door.leave(kind)
                await responses.aclose()

        return grpc.stream_stream_rpc_method_handler(
            stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler  # the service has no half-streaming method
