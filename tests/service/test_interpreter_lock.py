"""The switch interval every process of ours runs with (``service.interpreter_lock``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from clockwork.service.interpreter_lock import SWITCH_INTERVAL_S, bound_lock_waits


@pytest.fixture
def restored() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("restored")
def test_bound_lock_waits_sets_the_interval_below_cpythons_default() -> None:
    sys.setswitchinterval(0.005)
    bound_lock_waits()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_S)
    assert SWITCH_INTERVAL_S < 0.005


def test_the_worker_command_runs_with_the_bound() -> None:
    # the worker command's process, up to where it would serve: its interval is the bound
    code = (
        "import sys, asyncio\n"
        "import clockwork.cli.worker_cmd as w\n"
        "class Stop(Exception): pass\n"
        "def runner(*a, **k): raise Stop(sys.getswitchinterval())\n"
        "asyncio.Runner = runner\n"
        "from clockwork.cli.main import main\n"
        "try:\n"
        "    main(['worker', '--backend', 'emulated', '--listen', '127.0.0.1:0',\n"
        "          '--insecure-no-auth'])\n"
        "except Stop as e:\n"
        "    print(e.args[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert float(out.stdout.strip().splitlines()[-1]) == pytest.approx(SWITCH_INTERVAL_S)
