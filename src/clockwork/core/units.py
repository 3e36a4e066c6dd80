"""Unit constants. Time inside the system is an ``int`` of nanoseconds."""

NS_PER_US = 1_000
NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000
MIB = 1 << 20

# A window end that never closes: reactive policies do not care about lateness.
NEVER_NS = 1 << 62

# The deadline after arrival of a request that names none and whose model names none (the
# paper's SLO); every command's default SLO option reads it
DEFAULT_SLO_MS = 100.0


def ms_to_ns(ms: float) -> int:
    return round(ms * NS_PER_MS)


def s_to_ns(s: float) -> int:
    return round(s * NS_PER_S)


def ns_to_ms(ns: int) -> float:
    return ns / NS_PER_MS


def us_to_ns(us: float) -> int:
    return round(us * NS_PER_US)
