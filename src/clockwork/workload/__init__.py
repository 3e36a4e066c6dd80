"""Arrival generators and trace replay (DESIGN.md s.6)."""

from clockwork.workload.azure import DEFAULT_AZURE_TRACE, AzureReplay, AzureTrace
from clockwork.workload.base import Arrival, Workload
from clockwork.workload.bursty import Bursty
from clockwork.workload.closed_loop import ClosedLoop
from clockwork.workload.poisson import FixedRate, PoissonOpenLoop
from clockwork.workload.slo_sweep import SloSweep

__all__ = [
    "DEFAULT_AZURE_TRACE",
    "Arrival",
    "AzureReplay",
    "AzureTrace",
    "Bursty",
    "ClosedLoop",
    "FixedRate",
    "PoissonOpenLoop",
    "SloSweep",
    "Workload",
]
