"""The timed loop reports its lateness: a loop held by anything shows in the histogram."""

from __future__ import annotations

import asyncio
import time

from prometheus_client.parser import text_string_to_metric_families

from clockwork.core.policies import make_policy
from clockwork.frontend.metrics import ServingMetrics
from clockwork.service import ControllerService
from clockwork.service.memory_network import MemoryNetwork


def lateness_buckets(metrics: ServingMetrics) -> dict[float, float]:
    text = metrics.metrics_text().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "clockwork_loop_lateness_seconds":
            return {
                float(s.labels["le"]): s.value for s in family.samples if s.name.endswith("_bucket")
            }
    raise AssertionError("no clockwork_loop_lateness_seconds in /metrics")


def test_a_held_loop_shows_in_the_lateness_histogram() -> None:
    async def main() -> None:
        ctrl = ControllerService(make_policy("clockwork"), [], connector=MemoryNetwork().connect)
        metrics = ServingMetrics()
        metrics.attach(ctrl)
        await ctrl.start()
        try:
            await asyncio.sleep(0.1)  # idle: ten heartbeats or so, none held
            idle = lateness_buckets(metrics)
            assert idle[float("inf")] >= 3
            assert idle[0.025] == idle[float("inf")]  # nothing late by 25 ms yet
            time.sleep(0.06)  # what a 60 ms decode on the loop would do
            await asyncio.sleep(0.05)
            held = lateness_buckets(metrics)
            assert held[float("inf")] > idle[float("inf")]
            assert held[0.025] < held[float("inf")]  # the held beat is counted past 25 ms
        finally:
            await ctrl.close()

    asyncio.run(main())
