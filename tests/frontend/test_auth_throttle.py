"""Failed bearer-token attempts are limited per address: after ten wrong tokens an address gets
429 on everything that needs a token (its token not looked at) until the lockout ends; health
stays open, and other addresses are not affected."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from urllib.error import HTTPError

import pytest

from clockwork.frontend.auth_throttle import FailedAttempts

from support.front_door import FrontDoor
from support.security import TOKEN, control_enabled


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_locked_out_after_its_failures_and_let_in_after() -> None:
    clock = Clock()
    attempts = FailedAttempts(max_failures=3, window_s=10, lockout_s=30, clock_s=clock)
    for _ in range(2):
        attempts.failed("a")
    assert attempts.blocked_s("a") == 0
    clock.now += 11  # the window passed: counting starts again
    attempts.failed("a")
    attempts.failed("a")
    assert attempts.blocked_s("a") == 0
    attempts.failed("a")
    assert attempts.blocked_s("a") == 30 and attempts.blocked_s("b") == 0
    clock.now += 30
    assert attempts.blocked_s("a") == 0


def test_only_so_many_addresses_are_remembered() -> None:
    attempts = FailedAttempts(max_failures=1, max_addresses=2)
    for address in ("a", "b", "c"):
        attempts.failed(address)
    assert attempts.blocked_s("a") == 0  # the stalest, forgotten
    assert attempts.blocked_s("b") > 0 and attempts.blocked_s("c") > 0


@pytest.fixture
def door() -> Iterator[FrontDoor]:
    d = FrontDoor(control_enabled(token=TOKEN))
    yield d
    d.close()


def get(door: FrontDoor, path: str, token: str | None) -> tuple[int, dict[str, str], object]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    req = urllib.request.Request(door.url + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read() or b"{}")
    except HTTPError as e:
        with e:
            return e.code, dict(e.headers), json.loads(e.read() or b"{}")


def test_ten_wrong_tokens_lock_the_address_out(door: FrontDoor) -> None:
    assert get(door, "/v2/models/add", TOKEN)[0] == 200
    for _ in range(10):
        assert get(door, "/v2/models/add", "guess")[0] == 401
    status, headers, body = get(door, "/v2/models/add", TOKEN)  # even the right one, now
    assert status == 429 and body["reason"] == "TOO_MANY_FAILED_ATTEMPTS"  # type: ignore[index]
    assert int(headers["Retry-After"]) > 0
    assert get(door, "/v2/health/live", None)[0] == 200
