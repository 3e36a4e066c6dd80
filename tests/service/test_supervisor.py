"""``ChildSupervisor`` with real child processes: a child that dies is started again, with a
backoff that grows while it keeps dying and starts over once it ran long enough."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from clockwork.service.supervisor import ChildSupervisor, describe_exit

SLEEPER = [sys.executable, "-S", "-c", "import time; time.sleep(60)"]


def spawner(
    command: list[str], started: list[subprocess.Popen[bytes]]
) -> Callable[[], subprocess.Popen[bytes]]:
    def spawn() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        started.append(proc)
        return proc

    return spawn


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_a_killed_child_is_started_again_and_the_exit_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started: list[subprocess.Popen[bytes]] = []
    sup = ChildSupervisor(spawner(SLEEPER, started), "sleeper", backoff_s=(0.05, 1.0))

    async def main() -> None:
        task = asyncio.create_task(sup.run())
        try:
            await wait_for(lambda: len(started) == 1)
            first = started[0]
            os.kill(first.pid, signal.SIGKILL)
            await wait_for(lambda: len(started) == 2)
            assert started[1].pid != first.pid and started[1].poll() is None
            assert sup.restarts == 1 and sup.pid == started[1].pid
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.INFO, logger="clockwork.service.supervisor"):
        asyncio.run(main())
        assert sup.stop() == -signal.SIGINT
    text = caplog.text
    assert "exited with signal SIGKILL" in text and "restarting in 0.1 s" in text
    assert "restarted (pid" in text
    assert all(p.poll() is not None for p in started)


def test_the_backoff_doubles_while_it_keeps_dying_and_starts_over_after_a_stable_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started: list[subprocess.Popen[bytes]] = []
    # dies at once with code 3 four times, then runs 0.4 s (longer than stable_s) and dies
    command = [
        sys.executable,
        "-S",
        "-c",
        "import sys, time; n = int(sys.argv[1]); time.sleep(0.4 if n == 4 else 0); sys.exit(3)",
    ]

    def spawn() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([*command, str(len(started))], stdin=subprocess.DEVNULL)
        started.append(proc)
        return proc

    sup = ChildSupervisor(spawn, "crasher", backoff_s=(0.02, 0.08), stable_s=0.3)

    async def main() -> None:
        task = asyncio.create_task(sup.run())
        try:
            await wait_for(lambda: len(started) == 6)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    with caplog.at_level(logging.WARNING, logger="clockwork.service.supervisor"):
        asyncio.run(main())
        sup.stop()
    delays = [
        r.args[4]  # type: ignore[index]
        for r in caplog.records
        if r.getMessage().startswith("crasher (pid")
    ]
    # 0.02, 0.04, 0.08, then capped at 0.08; after the 0.4 s run, 0.02 again
    assert delays[:5] == [0.02, 0.04, 0.08, 0.08, 0.02]
    assert "exited with exit code 3" in caplog.text


def test_stop_ends_the_restarts_and_the_child() -> None:
    started: list[subprocess.Popen[bytes]] = []
    sup = ChildSupervisor(spawner(SLEEPER, started), "sleeper", backoff_s=(0.05, 1.0))

    async def main() -> None:
        task = asyncio.create_task(sup.run())
        await wait_for(lambda: len(started) == 1)
        sup.stop()
        await asyncio.wait_for(task, 5.0)  # run returns by itself
        await asyncio.sleep(0.2)

    asyncio.run(main())
    assert len(started) == 1 and started[0].poll() is not None and sup.restarts == 0


def test_describe_exit_names_the_signal() -> None:
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(2) == "exit code 2"
