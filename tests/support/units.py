"""Time units for tests, as short names: the project's constants, never redefined per file."""

from clockwork.core.units import NS_PER_MS, NS_PER_S, NS_PER_US

US = NS_PER_US
MS = NS_PER_MS
S = NS_PER_S

__all__ = ["MS", "US", "S"]
