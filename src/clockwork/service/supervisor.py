"""Keep a child process running: restart it when it exits, with exponential backoff.

``clockwork serve`` runs its local worker under a ``ChildSupervisor``: a worker that dies (a
crash, the OOM killer, ``kill -9``) is started again the same way (``spawn`` builds the same
command and environment each time), on the same port, so the controller's link, which keeps
reconnecting to that address, finds it again and the worker re-joins.

The delay before a restart starts at ``backoff_s[0]`` and doubles with each restart up to
``backoff_s[1]``; a child that stayed up ``stable_s`` or longer counts as healthy, and the next
restart after it starts from the low end again. Each exit is logged with its exit code or signal.
``stop`` ends the supervision (no more restarts) and stops the child: SIGINT, then SIGKILL after
``stop_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import time
from collections.abc import Callable

log = logging.getLogger("clockwork.service.supervisor")

#: how often ``run`` looks whether the child has exited
POLL_INTERVAL_S = 0.05

Spawn = Callable[[], "subprocess.Popen[bytes]"]


def describe_exit(returncode: int) -> str:
    """``exit code 3`` or ``signal SIGKILL`` (Popen's negative return codes)."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


class ChildSupervisor:
    """Run ``spawn()``'s process and restart it whenever it exits, until ``stop``. ``name``
    names it in the log. ``proc`` may be a process already started by ``spawn`` (e.g. before
    the event loop ran); else ``start`` starts one."""

    def __init__(
        self,
        spawn: Spawn,
        name: str,
        *,
        proc: subprocess.Popen[bytes] | None = None,
        backoff_s: tuple[float, float] = (0.5, 10.0),
        stable_s: float = 30.0,
        stop_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        low, high = backoff_s
        if not 0 < low <= high or stable_s <= 0 or stop_timeout_s <= 0:
            raise ValueError("need 0 < backoff low <= high, stable_s > 0 and stop_timeout_s > 0")
        self._spawn = spawn
        self.name = name
        self.backoff_s = backoff_s
        self.stable_s = stable_s
        self.stop_timeout_s = stop_timeout_s
        self._clock = clock
        self.proc = proc
        self._started_at = clock()
        self._delay_s = low
        self._stopping = False
        #: how many times the child was started again
        self.restarts = 0

    def start(self) -> subprocess.Popen[bytes]:
        """Start the child (if ``proc`` was not given); returns it."""
        if self.proc is None:
            self.proc = self._spawn()
            self._started_at = self._clock()
        return self.proc

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def run(self) -> None:
        """Watch the child and restart it each time it exits; returns after ``stop``. A spawn
        that fails (``OSError``) is logged and tried again after the next backoff."""
        first = self.start()
        log.info("%s: pid %d, started again whenever it exits", self.name, first.pid)
        proc: subprocess.Popen[bytes] | None = first
        while not self._stopping:
            if proc is not None and proc.poll() is None:
                await asyncio.sleep(POLL_INTERVAL_S)
                continue
            if self._stopping:
                break
            delay = self._next_delay()
            if proc is not None:
                up_s = self._clock() - self._started_at
                log.warning(
                    "%s (pid %d) exited with %s after %.1f s; restarting in %.1f s",
                    self.name,
                    proc.pid,
                    describe_exit(proc.returncode),
                    up_s,
                    delay,
                )
            await asyncio.sleep(delay)
            if self._stopping:
                break
            try:
                proc = self.proc = self._spawn()
            except OSError as e:
                log.error("%s: cannot start it again: %s", self.name, e)
                proc = self.proc = None
                self._started_at = self._clock()
                continue
            self._started_at = self._clock()
            self.restarts += 1
            log.warning("%s restarted (pid %d, restart %d)", self.name, proc.pid, self.restarts)

    def _next_delay(self) -> float:
        low, high = self.backoff_s
        if self._clock() - self._started_at >= self.stable_s:
            self._delay_s = low  # it ran long enough: this exit is not part of a crash loop
        delay = self._delay_s
        self._delay_s = min(self._delay_s * 2, high)
        return delay

    def stop(self) -> int | None:
        """Stop supervising and stop the child (SIGINT, SIGKILL after ``stop_timeout_s``);
        returns its exit code (None if there was none). Blocks while it exits."""
        self._stopping = True
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        return proc.returncode


__all__ = ["ChildSupervisor", "describe_exit"]
