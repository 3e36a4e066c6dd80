"""``clockwork controller`` as a user runs it: what it says, and its exit status."""

from __future__ import annotations

import logging

import pytest

from clockwork import __version__
from clockwork.cli.main import main as cli_main
from clockwork.service import worker_links
from clockwork.service.bench_cluster import free_ports
from clockwork.transport.cluster_secret import ENV_VAR


def test_an_address_that_never_answers_is_named_and_the_exit_status_is_1(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(ENV_VAR, "a-cluster-secret-of-some-length")
    (port,) = free_ports(1)  # nothing listens there
    # refusals for a few seconds are a worker starting; past them, a warning, once
    monkeypatch.setattr(worker_links, "CONNECT_WARN_AFTER_NS", 200_000_000)
    with caplog.at_level(logging.WARNING, logger="clockwork.service.controller"):
        code = cli_main(["controller", "--workers", f"127.0.0.1:{port}", "--duration", "1"])
    assert code == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len([w for w in warnings if f"127.0.0.1:{port}: cannot connect" in w]) == 1
    err = capsys.readouterr().err
    assert f"no worker ever joined (127.0.0.1:{port}: " in err
    assert "final: no requests" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        cli_main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"clockwork {__version__}"


def test_the_status_line_claims_no_attainment_before_any_answer() -> None:
    from types import SimpleNamespace

    from clockwork.core.requests import ResponseStatus
    from clockwork.service.controller_stats import ControllerStats
    from clockwork.service.telemetry import StatusLine

    stats = ControllerStats()
    service = SimpleNamespace(stats=stats, workers=("w0",), models={}, pending=lambda: 0)
    line = StatusLine(service, 1)  # type: ignore[arg-type]
    assert line.line().endswith("attainment -")
    stats.responses[ResponseStatus.SUCCESS] += 3
    stats.responses[ResponseStatus.OVERLOADED] += 1
    assert line.line().endswith("attainment 75.0%")


def test_a_supervised_worker_that_is_still_starting_is_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # serve's local worker: its supervisor reports its failures; refusals while it starts are
    # expected however long it takes (a loaded machine), so only the other address is warned
    import asyncio

    from clockwork.core.policies import make_policy
    from clockwork.service import ControllerService

    local, remote = free_ports(2)  # nothing listens on either
    monkeypatch.setattr(worker_links, "CONNECT_WARN_AFTER_NS", 100_000_000)

    async def run() -> None:
        service = ControllerService(
            make_policy("clockwork"),
            [("127.0.0.1", local), ("127.0.0.1", remote)],
            connect_backoff_s=(0.02, 0.05),
            supervised_workers=[("127.0.0.1", local)],
        )
        await service.start()
        await asyncio.sleep(0.6)
        await service.close()

    with caplog.at_level(logging.WARNING, logger="clockwork.service.controller"):
        asyncio.run(run())
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"127.0.0.1:{remote}: cannot connect" in warned
    assert f"127.0.0.1:{local}" not in warned
