"""The controller and a torch (CPU) worker end to end, with a tiny model repository."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from clockwork.core.policies import make_policy
from clockwork.core.profile import save_profile
from clockwork.core.requests import ResponseStatus
from clockwork.models import create_repository
from clockwork.models.repository import ModelRepository
from clockwork.service import ControllerService, WorkerService
from clockwork.worker.assembly import torch_setup
from clockwork.worker.backends.torch_backend import TorchBackend
from clockwork.worker.profiler import profile_model, sample_inputs

from support.units import MS


def test_torch_cpu_worker_serves_real_outputs(tmp_path: Path) -> None:
    names = create_repository(tmp_path, "mobilenet_v2", copies=2, seed=1, params={"resolution": 32})
    repo = ModelRepository(tmp_path)
    measured = profile_model(repo, names[0], runs=3, warmup=1, loads=2)
    # generous: CPU timings on a shared machine are noisy
    generous = dataclasses.replace(
        measured,
        load_ns=measured.load_ns * 3,
        exec_ns={b: t * 3 for b, t in measured.exec_ns.items()},
    )
    for name in names:
        save_profile(
            dataclasses.replace(generous, model=name),
            tmp_path / name / f"profile-{generous.device_kind}.json",
        )
    devices, models = torch_setup("w0", tmp_path, "cpu")
    assert sorted(m.name for m in models) == names
    config = repo.load_config(names[0])
    rng = np.random.default_rng(3)
    inputs = sample_inputs(config, 4, rng)
    reference = TorchBackend(repo, "cpu", models=[names[0]])
    reference.load(names[0])
    expected = [reference.infer(names[0], 1, [x]).outputs[0] for x in inputs]

    async def main() -> None:
        worker = WorkerService("w0", devices, models)
        await worker.start("127.0.0.1", 0)
        ctrl = ControllerService(
            make_policy("clockwork"),
            [("127.0.0.1", worker.port)],
            ping_interval_s=0.05,
            silence_pings=20,
        )
        await ctrl.start()
        try:
            await ctrl.wait_workers(1)
            # the first request of each model pays for a load
            for name in names:
                response, _ = await ctrl.submit(name, inputs[0], timeout_ns=2000 * MS)
                assert response.status is ResponseStatus.SUCCESS
            answers = await asyncio.gather(
                *(
                    ctrl.submit(names[i % 2], x, deadline_ns=time.monotonic_ns() + 1000 * MS)
                    for i, x in enumerate(inputs)
                )
            )
            for i, (response, outputs) in enumerate(answers):
                assert response.status is ResponseStatus.SUCCESS
                assert outputs is not None
                np.testing.assert_allclose(
                    np.asarray(outputs["logits"], dtype=np.float32),
                    np.asarray(expected[i]["logits"], dtype=np.float32),
                    rtol=1e-4,
                    atol=1e-4,
                )
        finally:
            await ctrl.close()
            await worker.close()

    asyncio.run(main())
