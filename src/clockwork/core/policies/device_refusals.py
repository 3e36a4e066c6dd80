"""When each device last had to refuse queued requests, and what that says about it.

The Clockwork policy's overload rules read one history: a device that refused ``drops``
requests within ``window_ns`` is *overloaded* for ``hold_ns`` after the last of them (it then
prefers fuller batches); one that refused any within ``spread_window_ns`` is *refusing* (its
holders do not count for its models' demand, so they spread); one that refused nothing for
``spread_calm_ns`` is *calm* (a device to spread onto). BENCHMARKS.md section 1 has the figures
that chose each rule.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from clockwork.core.ids import DeviceId


class DeviceRefusals:
    __slots__ = (
        "_drops",
        "_last_ns",
        "_overloaded_until_ns",
        "drops",
        "hold_ns",
        "spread_calm_ns",
        "spread_window_ns",
        "window_ns",
    )

    def __init__(
        self,
        window_ns: int,
        drops: int,
        hold_ns: int,
        spread_window_ns: int,
        spread_calm_ns: int,
    ) -> None:
        self.window_ns = window_ns
        self.drops = drops
        self.hold_ns = hold_ns
        self.spread_window_ns = spread_window_ns
        self.spread_calm_ns = spread_calm_ns
        # refusal times within ``window_ns``, per device
        self._drops: dict[DeviceId, deque[int]] = {}
        self._last_ns: dict[DeviceId, int] = {}
        self._overloaded_until_ns: dict[DeviceId, int] = {}

    def record(self, device: DeviceId, now_ns: int) -> None:
        """``device`` refused a queued request at ``now_ns``."""
        self._last_ns[device] = now_ns
        times = self._drops.get(device)
        if times is None:
            times = self._drops[device] = deque()
        times.append(now_ns)
        while times[0] < now_ns - self.window_ns:
            times.popleft()
        if len(times) >= self.drops:
            self._overloaded_until_ns[device] = now_ns + self.hold_ns

    def overloaded(self, device: DeviceId, now_ns: int) -> bool:
        return self._overloaded_until_ns.get(device, -1) >= now_ns

    def refusing(self, device: DeviceId, now_ns: int) -> bool:
        """Whether ``device`` refused a queued request within the spread window."""
        window = self.spread_window_ns
        return window > 0 and self._last_ns.get(device, -window - 1) >= now_ns - window

    def calm(self, device: DeviceId, now_ns: int) -> bool:
        """Whether ``device`` refused nothing for ``spread_calm_ns``."""
        calm = self.spread_calm_ns
        return self._last_ns.get(device, -calm - 1) < now_ns - calm

    def any_refused(self) -> bool:
        return bool(self._last_ns)

    def next_calm_ns(self, devices: Iterable[DeviceId], now_ns: int) -> int | None:
        """The first moment after ``now_ns`` at which one of ``devices`` that is not calm now
        turns calm; None if none will."""
        calm = self.spread_calm_ns
        last = self._last_ns
        wake = None
        for device in devices:
            t = last.get(device)
            if t is not None and t + calm >= now_ns and (wake is None or t + calm + 1 < wake):
                wake = t + calm + 1
        return wake

    def forget(self, device: DeviceId) -> None:
        """``device`` left: it is no longer refusing nor a reason to wait for calm."""
        self._last_ns.pop(device, None)
