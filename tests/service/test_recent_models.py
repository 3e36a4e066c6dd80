"""The recent-models order a server keeps across restarts for its warm start."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pytest

from clockwork.cli.policy_args import policy_from_warm_args
from clockwork.core.requests import InferRequest
from clockwork.service.recent_models import (
    FORMAT,
    RecentModels,
    load_recent,
    state_file,
    warm_order,
)


def ask(recent: RecentModels, *models: str) -> None:
    for i, m in enumerate(models):
        recent.on_request(InferRequest(i, m, 0, 1))


def test_the_order_is_this_runs_latest_first_then_the_previous_runs(tmp_path: Path) -> None:
    path = tmp_path / "recent.json"
    first = RecentModels(path)
    assert first.previous == ()
    ask(first, "a", "b", "c", "a")
    assert first.order() == ("a", "c", "b")
    first.save()
    second = RecentModels(path)
    assert second.previous == ("a", "c", "b")
    ask(second, "b", "z")
    assert second.order() == ("z", "b", "a", "c")
    second.save()
    assert load_recent(path) == ("z", "b", "a", "c")


def test_nothing_is_written_when_nothing_was_asked(tmp_path: Path) -> None:
    path = tmp_path / "state" / "recent.json"
    RecentModels(path).save()
    assert not path.exists()


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"format": "something-else", "models": ["a"]}),
        json.dumps({"format": FORMAT, "models": "a"}),
        json.dumps({"format": FORMAT, "models": [1, 2]}),
        json.dumps([FORMAT]),
    ],
)
def test_a_bad_file_costs_only_the_order_and_says_so(
    tmp_path: Path, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "recent.json"
    path.write_text(text)
    with caplog.at_level(logging.WARNING):
        recent = RecentModels(path)
    assert recent.previous == ()
    assert str(path) in caplog.text
    ask(recent, "m")
    recent.save()  # and the next save replaces it with a good one
    assert load_recent(path) == ("m",)


def test_an_unwritable_state_dir_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    recent = RecentModels(blocker / "recent.json")  # a directory that cannot be made
    ask(recent, "m")
    with caplog.at_level(logging.WARNING):
        recent.save()
    assert "cannot write the recent-models file" in caplog.text


def test_one_file_per_repository(tmp_path: Path) -> None:
    a = state_file(tmp_path / "repo-a", tmp_path / "state")
    b = state_file(tmp_path / "repo-b", tmp_path / "state")
    assert a != b and a.parent == b.parent == tmp_path / "state"
    assert state_file(tmp_path / "repo-a" / ".." / "repo-a", tmp_path / "state") == a


def test_the_serving_policy_warms_named_models_then_recent_ones() -> None:
    assert warm_order(("x", "y"), ("y", "a", "x", "b")) == ("x", "y", "a", "b")
    args = argparse.Namespace(warm="x", no_warm=False, policy="clockwork", admission_level=0.9)
    policy = policy_from_warm_args(args, ("a", "x", "b"))
    assert policy.config.warm_first == ("x", "a", "b")  # type: ignore[attr-defined]
    assert policy.config.estimator.level == 0.9  # type: ignore[attr-defined]
