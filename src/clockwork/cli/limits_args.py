"""The ``clockwork serve`` flags of the front door's limits (``clockwork.frontend.limits``)."""

from __future__ import annotations

import argparse

from clockwork.core.errors import ConfigurationError
from clockwork.frontend.limits import MIB, DoorLimits

_DEFAULTS = DoorLimits()


def add_limits_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "front door limits",
        "overload is refused before a request's body is read (503, or RESOURCE_EXHAUSTED)",
    )
    g.add_argument(
        "--max-connections",
        type=int,
        default=_DEFAULTS.max_connections,
        help="open client connections per protocol; more are answered 503 and closed",
    )
    g.add_argument(
        "--max-inflight",
        type=int,
        default=_DEFAULTS.max_inflight,
        help="inference requests in flight (HTTP and gRPC together)",
    )
    g.add_argument(
        "--fixed-inflight",
        action="store_true",
        help="let in up to --max-inflight inference requests at all times; by default the "
        "door keeps them below it, at what the server answers in time (the limit is cut when "
        "an admitted request misses its deadline and raised while answers come in time)",
    )
    g.add_argument(
        "--initial-inflight",
        type=int,
        default=_DEFAULTS.initial_inflight,
        help="where the adaptive limit starts",
    )
    g.add_argument(
        "--min-inflight",
        type=int,
        default=_DEFAULTS.min_inflight,
        help="the adaptive limit's floor",
    )
    g.add_argument(
        "--queue-delay-target-ms",
        type=float,
        default=_DEFAULTS.queue_delay_target_s * 1000,
        help="once every inference request has waited this long before the server read it, "
        "for --queue-delay-interval-ms, such requests are refused unread (0: never)",
    )
    g.add_argument(
        "--queue-delay-interval-ms",
        type=float,
        default=_DEFAULTS.queue_delay_interval_s * 1000,
        help="how long a queue must stand before --queue-delay-target-ms refuses",
    )
    g.add_argument(
        "--max-control-inflight",
        type=int,
        default=_DEFAULTS.max_control_inflight,
        help="health, metadata, metrics and repository requests in flight",
    )
    g.add_argument(
        "--max-streams-per-connection",
        type=int,
        default=_DEFAULTS.max_streams_per_connection,
        help="concurrent gRPC streams on one connection",
    )
    g.add_argument(
        "--max-inflight-body-mb",
        type=float,
        default=_DEFAULTS.max_inflight_body_bytes / MIB,
        help="request bodies being read or held, all requests together",
    )
    g.add_argument(
        "--header-timeout-s",
        type=float,
        default=_DEFAULTS.header_timeout_s,
        help="a request's headers must be complete this long after its first byte",
    )
    g.add_argument(
        "--body-timeout-s",
        type=float,
        default=_DEFAULTS.body_timeout_s,
        help="grace for a request body, after which it must arrive at --min-body-rate-kbps",
    )
    g.add_argument(
        "--min-body-rate-kbps",
        type=float,
        default=_DEFAULTS.min_body_rate_bytes_per_s / 1024,
        help="slowest average body rate (KiB/s) after the grace",
    )
    g.add_argument(
        "--idle-timeout-s",
        type=float,
        default=_DEFAULTS.idle_timeout_s,
        help="an idle keep-alive connection (HTTP or gRPC) is closed after this",
    )
    g.add_argument(
        "--write-timeout-s",
        type=float,
        default=_DEFAULTS.write_timeout_s,
        help="an answer its client stops reading for this long is dropped: HTTP aborts the "
        "connection; gRPC closes a connection whose client does not answer a ping within it "
        "(pinged this often) and ends a stream whose answer is not taken within it",
    )
    g.add_argument(
        "--max-connection-age-s",
        type=float,
        default=_DEFAULTS.max_connection_age_s,
        help="gRPC connections are closed gracefully after this age (0: never)",
    )


def limits_from_args(args: argparse.Namespace) -> DoorLimits:
    try:
        return DoorLimits(
            max_connections=args.max_connections,
            max_inflight=args.max_inflight,
            adaptive_inflight=not args.fixed_inflight,
            initial_inflight=args.initial_inflight,
            min_inflight=args.min_inflight,
            queue_delay_target_s=args.queue_delay_target_ms / 1000,
            queue_delay_interval_s=args.queue_delay_interval_ms / 1000,
            max_control_inflight=args.max_control_inflight,
            max_streams_per_connection=args.max_streams_per_connection,
            max_inflight_body_bytes=round(args.max_inflight_body_mb * MIB),
            header_timeout_s=args.header_timeout_s,
            body_timeout_s=args.body_timeout_s,
            min_body_rate_bytes_per_s=round(args.min_body_rate_kbps * 1024),
            idle_timeout_s=args.idle_timeout_s,
            max_connection_age_s=args.max_connection_age_s,
            write_timeout_s=args.write_timeout_s,
        )
    except ValueError as e:
        # the dataclass names its field; the flag is the same name with dashes
        raise ConfigurationError(f"front door limits: {e}") from None
