"""The model repository reaching a Ray node without its directory: a torch worker actor on
another (simulated) node copies it from the controller's node, checked by sha256, and serves
from its own copy; a model added while serving reaches it at the next rescan."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support.ray_cluster import ray_cluster, ray_served

pytest.importorskip("torch")

from clockwork.cluster_ray.config import RayPoolConfig, RayWorkerConfig
from clockwork.core.profile import ModelProfile, save_profile
from clockwork.core.requests import ResponseStatus
from clockwork.models import create_repository
from clockwork.models.repository import ModelRepository
from clockwork.service import ControllerService
from clockwork.worker.profiler import profile_model, sample_inputs

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

MS = 1_000_000
PARAMS = {"resolution": 32}
#: the simulated node without the directory carries this label; only it gets a worker
LABEL = "clockwork_far_node"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with ray_cluster([{"num_cpus": 1, "resources": {LABEL: 1}}]) as c:
        yield c


def add_model(root: Path, prefix: str, profile: ModelProfile | None) -> ModelProfile:
    """A new model in the repository, with a generous profile (measured once, on this CPU)."""
    [name] = create_repository(
        root, "mobilenet_v2", 1, seed=1, params=PARAMS, batch_sizes=(1, 2), name_prefix=prefix
    )
    if profile is None:
        measured = profile_model(ModelRepository(root), name, runs=3, warmup=1, loads=2)
        profile = dataclasses.replace(
            measured,
            load_ns=measured.load_ns * 3,
            exec_ns={b: t * 3 for b, t in measured.exec_ns.items()},
        )
    profile = dataclasses.replace(profile, model=name)
    save_profile(profile, root / name / f"profile-{profile.device_kind}.json")
    return profile


def digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


async def infer_ok(ctrl: ControllerService, repo: ModelRepository, name: str) -> None:
    [sample] = sample_inputs(repo.load_config(name), 1, np.random.default_rng(1))
    response, outputs = await ctrl.submit(name, sample, timeout_ns=5000 * MS)
    assert response.status is ResponseStatus.SUCCESS, response
    assert outputs is not None and outputs["logits"].shape == (1000,)


def test_repository_reaches_a_node_without_the_directory(cluster: Any, tmp_path: Path) -> None:
    import ray

    source = tmp_path / "repo"
    profile = add_model(source, "first", None)
    repo = ModelRepository(source)
    pool = RayPoolConfig(workers_per_node=1, node_resource=LABEL, poll_interval_s=0.3)
    worker = RayWorkerConfig(backend="torch", host="127.0.0.1")

    async def main() -> None:
        async with ray_served(pool, worker, repository=source) as (ctrl, ray_pool):
            await ctrl.wait_workers(1, timeout_s=150)
            [w] = ray_pool.workers.values()
            info = await asyncio.to_thread(ray.get, w.actor.describe.remote(), timeout=60)
            far = ray.nodes()
            head = next(n["NodeID"] for n in far if LABEL not in n["Resources"])
            assert info["node_id"] != head  # not the controller's node, where the source is
            copy = Path(info["repository"])
            assert not copy.is_relative_to(source)
            # every source file, byte for byte (the worker may add its own, e.g. profiles)
            assert digests(copy).items() >= digests(source).items()
            await infer_ok(ctrl, repo, "first-0000")

            # a model added at the source while serving reaches the worker at the rescan
            add_model(source, "late", profile)
            assert await ctrl.rescan_models(timeout_s=120) == ["late-0000"]
            assert digests(copy).items() >= digests(source).items()
            await infer_ok(ctrl, repo, "late-0000")

    async def bounded() -> None:
        async with asyncio.timeout(300):
            await main()

    asyncio.run(bounded())
