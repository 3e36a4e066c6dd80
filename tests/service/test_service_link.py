"""Authenticated links between controllers and a worker, over real TCP on 127.0.0.1: the cluster
secret, one controller at a time, explicit and logged takeovers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from clockwork.cli.main import main as cli_main
from clockwork.core.policies import make_policy
from clockwork.service import ControllerService, WorkerService
from clockwork.transport import PROTOCOL_VERSION, Hello, Role, connect
from clockwork.transport.cluster_secret import ENV_VAR
from clockwork.worker.assembly import emulated_setup

PROFILE = "resnet50_v2-V100-32GB"
SECRET = b"cluster-secret-for-tests-0123456789"


def run(coro: Coroutine[Any, Any, None], timeout_s: float = 30.0) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout_s):
            await coro

    asyncio.run(bounded())


async def start_worker(silence_s: float = 3.0, secret: bytes | None = SECRET) -> WorkerService:
    devs, infos = emulated_setup("w0", 1, 1, PROFILE)
    svc = WorkerService("w0", devs, infos, secret=secret, controller_silence_s=silence_s)
    await svc.start("127.0.0.1", 0)
    return svc


def controller(
    worker: WorkerService, name: str, take_over: bool = False, secret: bytes | None = SECRET
) -> ControllerService:
    return ControllerService(
        make_policy("clockwork"),
        [("127.0.0.1", worker.port)],
        controller_id=name,
        ping_interval_s=0.05,
        silence_pings=40,
        connect_backoff_s=(0.02, 0.2),
        link_secret=secret,
        take_over=take_over,
    )


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_second_controller_is_refused_and_the_first_keeps_the_worker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    async def main() -> None:
        worker = await start_worker()
        first, second = controller(worker, "c1"), controller(worker, "c2")
        await first.start()
        try:
            await first.wait_workers(1)
            await second.start()
            await asyncio.sleep(1.0)  # the second retries with backoff meanwhile
            assert first.workers == ("w0",) and second.workers == ()
            assert first.stats.joins == 1 and first.stats.losses == 0
            assert second.stats.joins == 0
            assert worker.refusals >= 2 and worker.takeovers == 0
            # the first is still served
            model = sorted(first.models)[0]
            response, _ = await first.submit(model, timeout_ns=2_000_000_000)
            assert response.status.name == "SUCCESS"
        finally:
            await second.close()
            await first.close()
            await worker.close()

    run(main())
    logged = warnings(caplog)
    # the worker says whom it refused and why; the refused controller says it was refused
    assert any(
        "refused controller 'c2'" in w and "serves controller 'c1'" in w and "--take-over" in w
        for w in logged
    )
    assert any("worker 'w0'" in w and "refused us" in w for w in logged)
    assert not any("TAKEOVER" in w for w in logged)


def test_take_over_replaces_the_controller_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def main() -> None:
        worker = await start_worker()
        first, second = controller(worker, "c1"), controller(worker, "c2", take_over=True)
        await first.start()
        try:
            await first.wait_workers(1)
            await second.start()
            await second.wait_workers(1)
            await asyncio.sleep(1.0)  # no flapping back: the first is refused from now on
            assert second.workers == ("w0",) and first.workers == ()
            assert first.stats.joins == 1 and first.stats.losses == 1
            assert second.stats.joins == 1 and second.stats.losses == 0
            assert worker.takeovers == 1
        finally:
            await second.close()
            await first.close()
            await worker.close()

    run(main())
    takeovers = [w for w in warnings(caplog) if "TAKEOVER" in w]
    assert len(takeovers) == 1
    (line,) = takeovers
    assert "controller 'c2' (127.0.0.1:" in line and "from controller 'c1' (127.0.0.1:" in line
    assert "asked to take over" in line


def test_two_controllers_without_the_flag_do_not_flap() -> None:
    async def main() -> None:
        worker = await start_worker()
        ctrls = [controller(worker, "c1"), controller(worker, "c2")]
        for c in ctrls:
            await c.start()
        try:
            t0 = time.monotonic()
            while not any(c.workers for c in ctrls):
                await asyncio.sleep(0.01)
            assert time.monotonic() - t0 < 5
            await asyncio.sleep(1.0)
            assert sum(c.stats.joins for c in ctrls) == 1
            assert sum(c.stats.losses for c in ctrls) == 0
            assert worker.takeovers == 0
        finally:
            for c in ctrls:
                await c.close()
            await worker.close()

    run(main())


def test_a_silent_controller_no_longer_holds_the_worker(caplog: pytest.LogCaptureFixture) -> None:
    """A controller whose connection is open but silent (half-open: it died without closing)
    is replaced by the next one once ``controller_silence_s`` has passed, and that is logged."""
    caplog.set_level(logging.INFO)

    async def main() -> None:
        worker = await start_worker(silence_s=0.3)
        silent = await connect("127.0.0.1", worker.port, secret=SECRET, sender_id="ghost")
        await silent.send(Hello(0, PROTOCOL_VERSION, Role.CONTROLLER, "ghost"))
        assert isinstance(await silent.recv(), Hello)
        ctrl = controller(worker, "c2")
        await ctrl.start()
        try:
            t0 = time.monotonic()
            await ctrl.wait_workers(1, timeout_s=5)
            assert time.monotonic() - t0 >= 0.2  # not before the silence
            assert worker.takeovers == 1
        finally:
            await ctrl.close()
            silent.close()
            await silent.wait_closed()
            await worker.close()

    run(main())
    takeovers = [w for w in warnings(caplog) if "TAKEOVER" in w]
    assert len(takeovers) == 1
    assert "from controller 'ghost'" in takeovers[0] and "silent for" in takeovers[0]


def test_a_controller_with_the_wrong_secret_never_joins(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def main() -> None:
        worker = await start_worker()
        ctrl = controller(worker, "c1", secret=b"not-the-cluster-secret-at-all!!")
        await ctrl.start()
        try:
            await asyncio.sleep(0.5)
            assert ctrl.workers == () and not worker.controller_connected
        finally:
            await ctrl.close()
            await worker.close()

    run(main())
    assert any("did not prove the cluster secret" in w for w in warnings(caplog))


def test_the_worker_command_needs_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert cli_main(["worker", "--listen", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert ENV_VAR in err and "--cluster-secret-file" in err and "--insecure-no-auth" in err
    short = tmp_path / "short"
    short.write_text("tiny\n")
    assert cli_main(["worker", "--cluster-secret-file", str(short)]) == 2
    assert "at least 16" in capsys.readouterr().err
    assert cli_main(["controller", "--workers", "127.0.0.1:1"]) == 2
    assert ENV_VAR in capsys.readouterr().err


def test_serve_with_remote_workers_needs_their_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    code = cli_main(["serve", "--no-local-worker", "--workers", "127.0.0.1:1"])
    assert code == 2
    assert ENV_VAR in capsys.readouterr().err
