"""Clock synchronisation between two peers, sans-IO (DESIGN.md s.4, as NTP does it).

Nothing here reads a clock: every time is an argument, in integer nanoseconds.

Let ``theta`` be the remote clock minus the local clock. A message the peer sent at remote time
``s`` and that we received at local time ``r`` gives the *one-way delta* ``r - s = delay_in -
theta``. Its minimum over a sliding window, ``d_in`` (``local_min_delta_ns``), is the least delay
seen minus ``theta``. The peer keeps the same minimum for our messages (``delay_out + theta``) and
sends it back now and then (``Ping.min_delta_ns``/``Pong.min_delta_ns``); that is our ``d_out``
(``observe_peer_report``). Then::

    offset_ns = (d_out - d_in) / 2 = theta + (min delay_out - min delay_in) / 2
    rtt_ns    =  d_out + d_in      = min delay_out + min delay_in

so the offset estimate is off by at most half the difference of the two minimum one-way delays
(hence by at most ``rtt_ns / 2``, ``error_bound_ns``), however large the skew, and jitter only
ever makes a delta larger, never smaller, so the minima filter it out.

Windows. Each side keeps the minimum over the samples received in the last ``window_ns`` of its
own time (and/or the last ``max_samples`` samples), so that when one clock drifts or steps, the
estimate follows within one window. The newest sample is never dropped, so an idle connection
keeps its last estimate. The peer's report is taken as it comes (it is already a windowed minimum
on the peer's side); the newest report wins.
"""

from __future__ import annotations

from collections import deque

from clockwork.core.errors import ClockworkError

#: default sliding window: long enough to see a quiet moment on the network, short enough to
#: follow a drifting clock (100 ppm of drift moves the offset by 1 ms in 10 s)
DEFAULT_WINDOW_NS = 10_000_000_000


class ClockNotSyncedError(ClockworkError):
    """An offset was asked for before both one-way minima were known."""


class ClockSync:
    """One side's estimate of the clock offset to one peer (see the module doc)."""

    __slots__ = (
        "_max_samples",
        "_n",
        "_now_ns",
        "_peer_delta_ns",
        "_peer_report_ns",
        "_samples",
        "_window_ns",
    )

    def __init__(
        self, window_ns: int | None = DEFAULT_WINDOW_NS, max_samples: int | None = None
    ) -> None:
        if window_ns is not None and window_ns <= 0:
            raise ValueError(f"window_ns must be positive or None, got {window_ns}")
        if max_samples is not None and max_samples <= 0:
            raise ValueError(f"max_samples must be positive or None, got {max_samples}")
        self._window_ns = window_ns
        self._max_samples = max_samples
        # monotonic deque for the sliding minimum: (sample number, local_recv_ns, delta),
        # deltas strictly increasing from front to back; the front is the window's minimum
        self._samples: deque[tuple[int, int, int]] = deque()
        self._n = 0  # samples observed so far
        self._now_ns: int | None = None  # latest local time seen
        self._peer_delta_ns: int | None = None
        self._peer_report_ns: int | None = None

    # ---- observations ----------------------------------------------------------------------

    def observe_received(self, remote_sent_ns: int, local_recv_ns: int) -> None:
        """A message the peer stamped ``remote_sent_ns`` arrived at our ``local_recv_ns``."""
        delta = local_recv_ns - remote_sent_ns
        samples = self._samples
        while samples and samples[-1][2] >= delta:
            samples.pop()
        samples.append((self._n, local_recv_ns, delta))
        self._n += 1
        self.advance(local_recv_ns)

    def observe_peer_report(self, peer_min_delta_ns: int, local_now_ns: int) -> None:
        """The peer's minimum one-way delta for *our* messages (its ``local_min_delta_ns``),
        received at ``local_now_ns``."""
        self._peer_delta_ns = peer_min_delta_ns
        self._peer_report_ns = local_now_ns
        self.advance(local_now_ns)

    def advance(self, local_now_ns: int) -> None:
        """Let local time pass: drop samples that fell out of the window (never the newest)."""
        if self._now_ns is None or local_now_ns > self._now_ns:
            self._now_ns = local_now_ns
        samples = self._samples
        if self._window_ns is not None:
            cutoff = self._now_ns - self._window_ns
            while len(samples) > 1 and samples[0][1] < cutoff:
                samples.popleft()
        if self._max_samples is not None:
            first_kept = self._n - self._max_samples
            while len(samples) > 1 and samples[0][0] < first_kept:
                samples.popleft()

    # ---- estimates -------------------------------------------------------------------------

    @property
    def local_min_delta_ns(self) -> int | None:
        """``d_in``: min over the window of (our receive time - the peer's send time); this is
        what we report to the peer (``Ping.min_delta_ns``)."""
        return self._samples[0][2] if self._samples else None

    @property
    def peer_min_delta_ns(self) -> int | None:
        """``d_out``: the peer's latest report of its minimum delta for our messages."""
        return self._peer_delta_ns

    @property
    def samples(self) -> int:
        """How many messages were observed in all."""
        return self._n

    @property
    def ready(self) -> bool:
        return bool(self._samples) and self._peer_delta_ns is not None

    def _minima(self) -> tuple[int, int]:
        d_in = self.local_min_delta_ns
        d_out = self._peer_delta_ns
        if d_in is None or d_out is None:
            missing = "no message received" if d_in is None else "no report from the peer"
            raise ClockNotSyncedError(f"clock offset not known yet: {missing}")
        return d_in, d_out

    @property
    def offset_ns(self) -> int:
        """Estimate of the remote clock minus the local clock."""
        d_in, d_out = self._minima()
        return (d_out - d_in) // 2

    @property
    def rtt_ns(self) -> int:
        """Minimum round trip: the least one-way delay seen each way, added."""
        d_in, d_out = self._minima()
        return d_in + d_out

    @property
    def error_bound_ns(self) -> int:
        """The most by which ``offset_ns`` can be wrong: half the minimum round trip (+1)."""
        return max(0, self.rtt_ns) // 2 + 1

    def to_local(self, remote_ns: int) -> int:
        """A time on the peer's clock, on ours."""
        return remote_ns - self.offset_ns

    def to_remote(self, local_ns: int) -> int:
        """A time on our clock, on the peer's."""
        return local_ns + self.offset_ns
