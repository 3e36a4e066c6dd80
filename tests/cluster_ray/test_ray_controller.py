"""The controller and front door in a Ray actor (``clockwork serve --ray --ray-controller``), on a
multi-node Ray cluster simulated on this machine: killed while its workers run, Ray restarts it,
the same workers re-join with their models, none is loaded again, and requests are served."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clockwork.cli import serve_cmd
from clockwork.cli.security_args import security_from_args
from clockwork.cluster_ray.supervised_serve import (
    CONTROLLER_NAME,
    start_controller_actor,
    stop_controller_actor,
)
from clockwork.service.bench_cluster import free_ports

from support.http_model import infer_zeros, wait_ready
from support.ray_cluster import SECRET, ray_cluster

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

MODEL = "resnet50_v2-0000"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with ray_cluster([{"num_cpus": 1, "num_gpus": 2}]) as c:
        yield c


def serve_argv(address: str, http_port: int, state_dir: str) -> list[str]:
    """``clockwork serve --ray ADDRESS --ray-controller ...``, emulated workers, one model."""
    return [
            "serve", "--ray", address, "--ray-controller", "--ray-backend", "emulated",
            "--ray-workers-per-node", "0", "--ray-worker-host", "127.0.0.1",
            "--ray-models", "1", "--host", "127.0.0.1", "--http-port", str(http_port),
            "--grpc-port", "0", "--status-interval", "0", "--decode-processes", "0",
            "--default-slo-ms", "5000", "--state-dir", state_dir,
    ]  # fmt: skip


def serve_args(address: str, http_port: int, state_dir: str) -> argparse.Namespace:
    """``serve_argv`` as the command parses it."""
    parser = argparse.ArgumentParser()
    serve_cmd.register(parser.add_subparsers())
    args = parser.parse_args(serve_argv(address, http_port, state_dir))
    args.security = security_from_args(args)  # as the command checks it before it starts
    return args


def workers(prefix: str) -> dict[str, dict[str, Any]]:
    """What each worker actor of the serve named ``prefix`` says of itself."""
    import ray

    names = [
        n
        for n in ray.util.list_named_actors()
        if n.startswith(prefix) and n.removeprefix(prefix).startswith("ray-")
    ]
    infos = ray.get([ray.get_actor(n).describe.remote() for n in names], timeout=60)
    return {i["worker_id"]: i for i in infos}


def test_killed_controller_actor_restarts_and_relearns_its_workers(
    cluster: Any, tmp_path: Any
) -> None:
    import ray

    (port,) = free_ports(1)
    args = serve_args(cluster.address, port, str(tmp_path))
    base = f"http://127.0.0.1:{port}/v2/models/{MODEL}"
    actor = start_controller_actor(args, [], SECRET, None)
    prefix = args.ray_detached_prefix
    try:
        first = ray.get(actor.describe.remote(), timeout=60)
        assert ray.get_actor(f"{prefix}{CONTROLLER_NAME}")._actor_id == actor._actor_id
        assert not first["restarted"]
        wait_ready(base)
        for _ in range(3):
            assert infer_zeros(base)["model_name"] == MODEL
        before = workers(prefix)
        assert len(before) == 2  # one per declared GPU
        held = {w: set(i["loads"]) for w, i in before.items()}
        assert any(MODEL in models for models in held.values())  # loaded somewhere

        ray.kill(actor, no_restart=False)
        # Ray starts it again (same name, same node); its front door answers again
        deadline = time.monotonic() + 60
        while True:
            try:
                again = ray.get(actor.describe.remote(), timeout=10)
                if again["pid"] != first["pid"]:
                    break
            except Exception:  # killed, not yet back
                pass
            assert time.monotonic() < deadline, "the controller actor did not come back"
            time.sleep(0.3)
        assert again["restarted"] and again["starts"] == 2
        assert again["node_id"] == first["node_id"]
        wait_ready(base)
        for _ in range(3):
            assert infer_zeros(base)["model_name"] == MODEL
        after = workers(prefix)
        # the same worker actors (not restarted), each still with its groups' devices ...
        assert {w: i["pid"] for w, i in after.items()} == {w: i["pid"] for w, i in before.items()}
        assert all(i["starts"] == 1 for i in after.values())
        # ... and no reload storm: no worker was sent a model it held (its count stayed 1;
        # a worker that did not hold it may get it, by the warm start or as load spreads)
        for w, models in held.items():
            assert all(after[w]["loads"][m] == before[w]["loads"][m] == 1 for m in models)
        assert all(n == 1 for i in after.values() for n in i["loads"].values()), after
    finally:
        stop_controller_actor(actor, prefix)
    # everything the serve started is gone: actors and placement groups
    assert not [n for n in ray.util.list_named_actors() if n.startswith(prefix)]
    groups = ray.util.placement_group_table().values()
    assert all(g["state"] == "REMOVED" for g in groups if g["name"].startswith(prefix))


def test_serve_command_with_ray_controller_answers_and_cleans_up(
    cluster: Any, tmp_path: Any
) -> None:
    import ray

    (port,) = free_ports(1)
    argv = [
        sys.executable, "-m", "clockwork.cli.main",
        *serve_argv(cluster.address, port, str(tmp_path)),
    ]  # fmt: skip
    env = {**os.environ, "CLOCKWORK_CLUSTER_SECRET": SECRET.decode()}
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        base = f"http://127.0.0.1:{port}/v2/models/{MODEL}"
        wait_ready(base, alive=proc)
        assert infer_zeros(base)["model_name"] == MODEL
        ours = [
            a["name"]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("clockwork-")
        ]
        # the controller and its two workers, named for this serve
        assert len(ours) == 3 and sum(n.endswith(CONTROLLER_NAME) for n in ours) == 1, ours
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    # the command stopped what it started
    left = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("clockwork-")
    ]
    assert left == [], left
