"""What the front door admits: its limits (``DoorLimits``) and the shared counts (``Door``).

Overload is refused at the door, before it costs memory: a connection over ``max_connections``
is answered 503 at once, and a request over an in-flight cap or the bound on request bodies in
flight is refused after its headers and before its body is read (``http_door`` for HTTP,
``grpc_door`` for gRPC). Below ``max_inflight``, an adaptive limit (``adaptive_limit``) keeps
inference in flight at what the server answers in time, and the door refuses requests that
stood in a queue before it (``queue_delay``; gRPC: ``grpc_queue_delay``). Inference and control
requests (health, metadata, metrics, repository) have caps of their own, so ``/metrics`` and the
health checks keep answering while inference is at its cap. Slow or idle connections are closed
by timeouts: headers, body (a grace then a minimum rate), idle keep-alive, and an answer the
client stops reading (HTTP: ``http_door``; gRPC: ``grpc_write_timeout``).

One ``Door`` serves both protocols of a server, so the in-flight caps hold for the server as a
whole; its counts are rendered as Prometheus text (``metrics_text``, appended to ``/metrics``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from clockwork.core.units import s_to_ns
from clockwork.frontend.adaptive_limit import AdaptiveLimit
from clockwork.frontend.door_ticket import DoorTicket
from clockwork.frontend.queue_delay import QueueDelayGate
from clockwork.frontend.refusal_times import RefusalTimes

if TYPE_CHECKING:  # imported when a Door is made: the CLI's flags need only DoorLimits
    from prometheus_client.metrics_core import Metric

__all__ = ["MIB", "Door", "DoorLimits", "Refusal", "RequestKind", "Timeout"]

MIB = 2**20


@dataclass(frozen=True, slots=True)
class DoorLimits:
    """The front door's limits. Every count and duration must be > 0, except
    ``max_connection_age_s`` (0: connections may live for ever) and ``queue_delay_target_s``
    (0: no queue delay test)."""

    #: open client connections per protocol; more are answered 503 and closed at once
    max_connections: int = 1024
    #: inference requests (HTTP and gRPC together) being read, queued or run
    max_inflight: int = 512
    #: every other request (health, metadata, metrics, statistics, repository) in flight
    max_control_inflight: int = 64
    #: concurrent gRPC (HTTP/2) streams on one connection; an HTTP/1.1 connection carries one
    #: request at a time, so the server-wide caps are what bound it
    max_streams_per_connection: int = 128
    #: request bodies being read or held (Content-Length, or bytes so far when chunked)
    max_inflight_body_bytes: int = 512 * MIB
    #: a connection must complete a request's headers within this of sending its first byte
    header_timeout_s: float = 10.0
    #: a body gets this grace, then must keep arriving at ``min_body_rate_bytes_per_s``
    body_timeout_s: float = 10.0
    min_body_rate_bytes_per_s: int = 64 * 1024
    #: a connection with no request in progress and no bytes sent is closed after this
    idle_timeout_s: float = 60.0
    #: after a refusal the unread body is read and dropped for at most this, then the
    #: connection closes (closing with unread data would reset it and could lose the answer)
    linger_s: float = 2.0
    #: gRPC connections are closed (gracefully) after this age; 0: never
    max_connection_age_s: float = 0.0
    #: an answer its client stops reading (the socket takes nothing more) for this long is
    #: dropped and the connection aborted: the answer's memory is not held for ever (gRPC: a
    #: keep-alive ping unanswered this long closes the connection, a stream answer not taken
    #: this long ends the stream; ``grpc_write_timeout``)
    write_timeout_s: float = 30.0
    #: an inference request that waited this long between its first byte and the door, while
    #: every request has waited as long for ``queue_delay_interval_s``, is refused before its
    #: body is decoded (``queue_delay``); 0: never
    queue_delay_target_s: float = 0.005
    queue_delay_interval_s: float = 0.1
    #: whether the door adapts its limit on inference requests in flight, below
    #: ``max_inflight``, to what the server answers in time (``adaptive_limit``)
    adaptive_inflight: bool = True
    #: the adaptive limit starts here and never goes below ``min_inflight``
    initial_inflight: int = 16
    min_inflight: int = 4

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if f.name in _MAY_BE_ZERO:
                if value < 0:
                    raise ValueError(f"{f.name} must be >= 0, got {value}")
            elif value <= 0:
                raise ValueError(f"{f.name} must be > 0, got {value}")
        if self.min_inflight > self.initial_inflight:
            raise ValueError(
                f"min_inflight ({self.min_inflight}) must be <= initial_inflight "
                f"({self.initial_inflight})"
            )

    def queue_delay_gate(self) -> QueueDelayGate:
        """A gate with these limits' target and interval (``queue_delay``)."""
        return QueueDelayGate(
            s_to_ns(self.queue_delay_target_s), s_to_ns(self.queue_delay_interval_s)
        )

    def adaptive_limit(self) -> AdaptiveLimit | None:
        """The adaptive limit on requests in flight these limits set, None if it is off."""
        if not self.adaptive_inflight:
            return None
        return AdaptiveLimit(
            min(self.initial_inflight, self.max_inflight),
            min(self.min_inflight, self.max_inflight),
            self.max_inflight,
        )


# limits whose 0 means "off"
_MAY_BE_ZERO = frozenset({"max_connection_age_s", "queue_delay_target_s"})


class RequestKind(enum.Enum):
    INFERENCE = "inference"
    CONTROL = "control"


class Refusal(enum.Enum):
    """Why the door refused, the ``reason`` of the error body and the metric's label."""

    CONNECTIONS = "TOO_MANY_CONNECTIONS"
    INFLIGHT = "TOO_MANY_REQUESTS"
    CONTROL_INFLIGHT = "TOO_MANY_CONTROL_REQUESTS"
    BODY_MEMORY = "BODY_MEMORY_FULL"
    MODEL = "MODEL_NOT_READY"
    QUEUE_DELAY = "QUEUE_DELAY"


class Timeout(enum.Enum):
    """Which timer closed a connection."""

    HEADERS = "headers"
    BODY = "body"
    IDLE = "idle"
    WRITE = "write"


class Door:
    """The door's counts, shared by the HTTP and gRPC servers of one process (one event loop:
    no locks). ``enter``/``leave`` bracket a request; ``reserve_body``/``release_body`` the body
    bytes it holds."""

    def __init__(self, limits: DoorLimits | None = None) -> None:
        self.limits = limits or DoorLimits()
        self.open_connections: dict[str, int] = {"http": 0}
        self.inflight: dict[RequestKind, int] = dict.fromkeys(RequestKind, 0)
        self.body_bytes = 0
        self.refusals: dict[Refusal, int] = dict.fromkeys(Refusal, 0)
        self.refusal_times = RefusalTimes()
        self.timeouts: dict[Timeout, int] = dict.fromkeys(Timeout, 0)
        self.queue_delay = self.limits.queue_delay_gate()
        # gRPC's waits are the loop's lateness, not HTTP's first-byte waits: a gate of its own
        self.grpc_queue_delay = self.limits.queue_delay_gate()
        self.adaptive = self.limits.adaptive_limit()
        self._caps = {
            RequestKind.INFERENCE: self.limits.max_inflight,
            RequestKind.CONTROL: self.limits.max_control_inflight,
        }
        from prometheus_client import CollectorRegistry

        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Collector(self))

    # ----------------------------------------------------------------- admission

    def at_cap(self, kind: RequestKind) -> Refusal | None:
        """The refusal for one more request of ``kind`` now, or None if it fits."""
        inflight = self.inflight[kind]
        if kind is RequestKind.CONTROL:
            return None if inflight < self._caps[kind] else Refusal.CONTROL_INFLIGHT
        if inflight < self._caps[kind] and (
            self.adaptive is None or self.adaptive.admits(inflight)
        ):
            return None
        return Refusal.INFLIGHT

    def full(self, kind: RequestKind) -> bool:
        """Whether ``kind`` is at its cap now; unlike ``at_cap``, asking changes nothing (the
        adaptive limit learns that it binds only from a request it holds back)."""
        return self.inflight[kind] >= self.inflight_cap(kind)

    def at_cap_message(self, kind: RequestKind) -> str:
        """What a refusal by ``at_cap`` says."""
        cap = self.inflight_cap(kind)
        if kind is RequestKind.INFERENCE and cap < self._caps[kind]:
            return (
                f"{cap} inference requests in flight, the most this server answers in time now "
                "(its adaptive limit); retry later"
            )
        return f"{cap} {kind.value} requests in flight, the limit; retry later"

    def inflight_cap(self, kind: RequestKind) -> int:
        """The most requests of ``kind`` let in at once now (the adaptive limit, if any)."""
        cap = self._caps[kind]
        if kind is RequestKind.INFERENCE and self.adaptive is not None:
            return min(cap, int(self.adaptive.limit))
        return cap

    def settle(self, ticket: DoorTicket, now_ns: int) -> None:
        """The request of ``ticket`` ended at ``now_ns``: the adaptive limit learns from it."""
        if self.adaptive is None:
            return
        met = ticket.met(now_ns)
        if met is not None:
            self.adaptive.answered(ticket.began_ns, now_ns, met=met)

    def body_fits(self, size_bytes: int) -> bool:
        # a body larger than the whole bound is refused even when nothing else is in flight
        return self.body_bytes + size_bytes <= self.limits.max_inflight_body_bytes

    def enter(self, kind: RequestKind) -> None:
        self.inflight[kind] += 1

    def leave(self, kind: RequestKind) -> None:
        self.inflight[kind] -= 1

    def reserve_body(self, size_bytes: int) -> None:
        self.body_bytes += size_bytes

    def release_body(self, size_bytes: int) -> None:
        self.body_bytes -= size_bytes

    def refused(self, why: Refusal, took_ns: int | None = None) -> None:
        """A refusal for ``why``; ``took_ns``: since the request's first byte, where known."""
        self.refusals[why] += 1
        if took_ns is not None:
            self.refusal_times.observe(took_ns)

    def timed_out(self, which: Timeout) -> None:
        self.timeouts[which] += 1

    # ----------------------------------------------------------------- metrics

    def metrics_text(self) -> bytes:
        """The door's metrics in the Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self._registry)


class _Collector:
    """Renders the door's plain counts at scrape time: nothing on the request path."""

    def __init__(self, door: Door) -> None:
        self._door = door

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        d = self._door
        conns = GaugeMetricFamily(
            "clockwork_door_open_connections", "Open client connections", labels=["protocol"]
        )
        for protocol, n in d.open_connections.items():
            conns.add_metric([protocol], n)
        yield conns
        inflight = GaugeMetricFamily(
            "clockwork_door_requests_in_flight",
            "Requests admitted and not yet answered (HTTP and gRPC)",
            labels=["kind"],
        )
        for kind, n in d.inflight.items():
            inflight.add_metric([kind.value], n)
        yield inflight
        yield GaugeMetricFamily(
            "clockwork_door_body_bytes_in_flight",
            "Request body bytes being read or held by admitted requests",
            value=d.body_bytes,
        )
        refusals = CounterMetricFamily(
            "clockwork_door_refusals",
            "Requests and connections refused at the door, by reason",
            labels=["reason"],
        )
        for why, n in d.refusals.items():
            refusals.add_metric([why.value], n)
        yield refusals
        yield d.refusal_times.metric()
        timeouts = CounterMetricFamily(
            "clockwork_door_timeouts",
            "Connections closed by a timeout, by what was awaited",
            labels=["phase"],
        )
        for which, n in d.timeouts.items():
            timeouts.add_metric([which.value], n)
        yield timeouts
        if d.adaptive is not None:
            yield GaugeMetricFamily(
                "clockwork_door_inflight_limit",
                "The adaptive limit on inference requests in flight, now",
                value=d.adaptive.limit,
            )
            yield GaugeMetricFamily(
                "clockwork_door_inflight_miss_share",
                "Moving average of the share of admitted requests that missed their deadline",
                value=d.adaptive.miss_share,
            )
            yield CounterMetricFamily(
                "clockwork_door_inflight_limit_cuts",
                "Times the adaptive limit was cut: an admitted request missed its deadline",
                value=d.adaptive.cuts,
            )
        limit = GaugeMetricFamily(
            "clockwork_door_limit", "The door's configured limits", labels=["name"]
        )
        for f in fields(d.limits):
            limit.add_metric([f.name], float(getattr(d.limits, f.name)))
        yield limit
