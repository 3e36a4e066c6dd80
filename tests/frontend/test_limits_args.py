"""``clockwork serve``'s door flags become a ``DoorLimits``; a bad one is refused by name."""

from __future__ import annotations

import argparse

import pytest

from clockwork.cli.limits_args import add_limits_arguments, limits_from_args
from clockwork.core.errors import ConfigurationError
from clockwork.frontend.limits import DoorLimits


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_limits_arguments(p)
    return p.parse_args(argv)


def test_defaults_are_the_dataclass_defaults() -> None:
    assert limits_from_args(parse()) == DoorLimits()


def test_flags_set_the_limits_in_their_units() -> None:
    limits = limits_from_args(
        parse("--max-inflight", "7", "--max-inflight-body-mb", "1.5", "--min-body-rate-kbps", "2")
    )
    assert limits.max_inflight == 7
    assert limits.max_inflight_body_bytes == 3 * 2**19
    assert limits.min_body_rate_bytes_per_s == 2048


def test_a_bad_limit_is_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match="header_timeout_s must be > 0"):
        limits_from_args(parse("--header-timeout-s", "0"))
