"""How a driver in real time (``clockwork bench``, ``clockwork bench-cluster``) paces a
workload's arrivals.

It sleeps only when the next arrival is more than ``EARLY_NS`` away, so an arrival may go up to
that much early (more with uvloop, whose timers count whole milliseconds and may fire up to
1.5 ms early); one submitted more than ``LATE_SUBMIT_NS`` after its time counts as a late submit
(the driver, or what shares its loop, could not keep up).
"""

from __future__ import annotations

from clockwork.core.units import NS_PER_MS, NS_PER_US

LATE_SUBMIT_NS = NS_PER_MS
EARLY_NS = 250 * NS_PER_US
