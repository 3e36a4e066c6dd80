"""Ctrl-C as a request to stop: the first SIGINT sets a flag that a long loop polls, so the loop
can end cleanly and report what it did; a second one interrupts at once, as usual."""

from __future__ import annotations

import signal
import sys
from types import FrameType, TracebackType


class StopOnInterrupt:
    """While entered, the first SIGINT sets ``requested`` (and says so on stderr) instead of
    raising ``KeyboardInterrupt``; the handler in place before comes back for the next one and on
    exit. Outside the main thread (where no handler can be set) it does nothing."""

    def __init__(self, what: str = "stopping") -> None:
        self.what = what
        self.requested = False
        self._previous: object = None
        self._installed = False

    def __call__(self) -> bool:
        """Whether a stop was asked (a loop's stop check)."""
        return self.requested

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self._restore()
        print(f"\ninterrupted: {self.what} (Ctrl-C again to quit at once)", file=sys.stderr)

    def _restore(self) -> None:
        if self._installed:
            previous = self._previous
            # None: a handler set outside Python, which cannot be put back; Python's default then
            handler = previous if previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, handler)  # type: ignore[arg-type]
            self._installed = False

    def __enter__(self) -> StopOnInterrupt:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._restore()
