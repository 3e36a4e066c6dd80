"""``scripts/run-once.sh``: two makes that install at once install once, the second waits."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "run-once.sh"


def start(stamp: Path, dependency: Path, log: Path) -> subprocess.Popen[bytes]:
    # the "install": slow enough that the two overlap, and counted
    command = f"sleep 0.5; echo ran >> {log}"
    return subprocess.Popen([str(SCRIPT), str(stamp), str(dependency), "sh", "-c", command])


def test_two_at_once_run_the_command_once_and_both_succeed(tmp_path: Path) -> None:
    dependency, stamp, log = (
        tmp_path / "pyproject.toml",
        tmp_path / "v" / ".installed",
        tmp_path / "log",
    )
    dependency.write_text("x")
    first = start(stamp, dependency, log)
    time.sleep(0.1)
    second = start(stamp, dependency, log)
    assert first.wait(10) == 0 and second.wait(10) == 0
    assert log.read_text().splitlines() == ["ran"]
    assert stamp.exists()
    # fresh: nothing to do; the dependency changed since: run again
    assert start(stamp, dependency, log).wait(10) == 0
    assert log.read_text().splitlines() == ["ran"]
    later = stamp.stat().st_mtime + 10
    os.utime(dependency, (later, later))
    assert start(stamp, dependency, log).wait(10) == 0
    assert log.read_text().splitlines() == ["ran", "ran"]


def test_a_failed_command_leaves_no_stamp(tmp_path: Path) -> None:
    dependency, stamp = tmp_path / "pyproject.toml", tmp_path / ".installed"
    dependency.write_text("x")
    run = subprocess.run([str(SCRIPT), str(stamp), str(dependency), "false"], check=False)
    assert run.returncode != 0 and not stamp.exists()
