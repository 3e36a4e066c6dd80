"""Ray Serve serving every model of a Clockwork model repository over the Open Inference Protocol.

Run it (what ``serve_peer.sh ray REPO PORT`` does, in the environment of ``setup_ray.sh``)::

    PYTHONPATH=bench/peers bench/peers/.venv-ray/bin/python bench/peers/ray_app.py \\
        --repository REPO --port 8000

It starts a local Ray cluster, Ray Serve's HTTP proxy on ``--host:--port`` and one application
with the KServe v2 / Open Inference Protocol HTTP subset that ``clockwork bench --url`` uses:
``GET /v2`` (server metadata with ``extensions``), ``GET /v2/health/live|ready``,
``GET /v2/models/{name}[/versions/{v}]`` (metadata, ``-1`` for the batch dimension),
``GET /v2/models/{name}/ready``, ``POST /v2/repository/index`` and
``POST /v2/models/{name}[/versions/{v}]/infer`` with JSON tensors (answered as JSON; Triton's
binary tensor extension is not supported). Triton's ``timeout`` and ``priority`` parameters are
ignored: Ray Serve has no deadlines, a late answer is a miss for the client.

Design (see README.md for what is fair about it):

- **One deployment, one replica, every model in it** (not one deployment per model, and not
  ``@serve.multiplexed``). Clockwork serves all models from one worker process with one torch
  thread running one batch at a time; the same here is one replica process holding every model,
  whose torch work goes through one thread (a one-thread executor, ``torch.set_num_threads(1)``).
  One deployment per model would give N replica processes computing at once on 2 cores;
  ``@serve.multiplexed`` exists to load and evict models in a replica on demand, and its
  ``@serve.batch`` queues do not group by model, whereas here every model is resident (as in
  Clockwork's cache, which holds them all) and batches are per model. ``--layout split`` puts
  the models in a second replica behind a deployment handle (JSON parsing then no longer shares
  the models' GIL, but every request takes one more Ray hop): slower on 2 cores, kept to compare.
- **Batching**: one ``serve.batch`` queue per model (``max_batch_size`` = the model's
  ``max_batch_size`` from its config; ``batch_wait_timeout_s`` = ``--batch-wait-s``, default
  0.005 s: a batch runs when full or 5 ms after its first request). Batches of all models queue
  for the one torch thread; the replica's event loop keeps reading requests meanwhile.
- ``max_ongoing_requests`` 256 (Ray's default, 5, would cap batches across models at 5 requests
  and queue the rest in the proxy); the client's default concurrency is 256 too.
- No per-request access log (Clockwork writes none by default either), no dashboard.
- Ray starts its workers at nice 15 (``RAY_worker_niceness``): the driver sets it to 0 and
  ``serve_peer.sh`` renices every Ray process to 0 besides.

No ``from __future__ import annotations`` in this file: it breaks Ray Serve's FastAPI request
parsing (every call answers 422).
"""

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import peer_models
from fastapi import FastAPI, Request
from fastapi.responses import Response
from ray import serve

HERE = Path(__file__).resolve().parent
DEFAULT_BATCH_WAIT_S = 0.005
MAX_ONGOING_REQUESTS = 256
PLATFORM = "pytorch"
APP_NAME = "clockwork-peers"

app = FastAPI()


def _json(body: object, status: int = 200) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json"
    )


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def _run_and_split(
    model: peer_models.PeerModel, requests: list[list[np.ndarray]]
) -> list[tuple[list[np.ndarray], int]]:
    """Run the requests of one batch together (in the torch thread); each request's outputs."""
    if len(requests) == 1:
        stacked = requests[0]
    else:
        stacked = [np.concatenate([r[i] for r in requests]) for i in range(len(requests[0]))]
    outputs = peer_models.run_batch(model, stacked)
    rows = len(stacked[0])
    answers = []
    start = 0
    for r in requests:
        n = len(r[0])
        answers.append(([o[start : start + n] for o in outputs], rows))
        start += n
    return answers


class ModelRunner:
    """Every model of the repository, batched per model, computed by one torch thread."""

    def __init__(self, repository: str, batch_wait_s: float) -> None:
        peer_models.use_one_thread()
        self.models = peer_models.load_all(Path(repository))
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torch")
        self.batched = {name: self._batcher(m, batch_wait_s) for name, m in self.models.items()}

    def _batcher(self, model: peer_models.PeerModel, wait_s: float):
        executor = self.executor

        async def infer_batch(requests: list[list[np.ndarray]]):
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(executor, _run_and_split, model, requests)

        return serve.batch(max_batch_size=model.config.max_batch_size, batch_wait_timeout_s=wait_s)(
            infer_batch
        )

    async def infer(self, name: str, arrays: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
        return await self.batched[name](arrays)


@serve.deployment(
    num_replicas=1,
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    ray_actor_options={"num_cpus": 0},
    logging_config={"enable_access_log": False, "log_level": "WARNING"},
)
class Models(ModelRunner):
    """``--layout split``: the models in a replica of their own, called by the ingress."""


@serve.deployment(
    num_replicas=1,
    max_ongoing_requests=MAX_ONGOING_REQUESTS,
    ray_actor_options={"num_cpus": 0},
    logging_config={"enable_access_log": False, "log_level": "WARNING"},
)
@serve.ingress(app)
class OIPModels:
    """The HTTP front: every route; the models in this replica (``single``) or behind a
    handle to the ``Models`` deployment (``split``)."""

    def __init__(self, repository: str, batch_wait_s: float, runner=None) -> None:
        if runner is None:
            self.runner = ModelRunner(repository, batch_wait_s)
            self.models = self.runner.models
            self.remote = None
        else:
            self.remote = runner
            self.models = peer_models.load_all(Path(repository), build=False)

    async def _run(self, name: str, arrays: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
        if self.remote is None:
            return await self.runner.infer(name, arrays)
        return await self.remote.infer.remote(name, arrays)

    # -- metadata

    @app.get("/v2")
    async def server_metadata(self) -> Response:
        import ray

        return _json(
            {"name": "ray-serve", "version": ray.__version__, "extensions": ["model_repository"]}
        )

    @app.get("/v2/health/live")
    async def live(self) -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    async def ready(self) -> Response:
        return _json({"ready": True})

    @app.api_route("/v2/repository/index", methods=["GET", "POST"])
    async def repository_index(self) -> Response:
        return _json(
            [
                {"name": n, "version": str(m.version), "state": "READY", "reason": ""}
                for n, m in sorted(self.models.items())
            ]
        )

    @app.get("/v2/models/{name}")
    async def model_metadata(self, name: str) -> Response:
        model = self.models.get(name)
        if model is None:
            return _error(404, f"MODEL_NOT_FOUND: unknown model {name!r}")
        return _json(model.metadata(PLATFORM))

    @app.get("/v2/models/{name}/versions/{version}")
    async def model_version_metadata(self, name: str, version: str) -> Response:
        model = self.models.get(name)
        if model is None or version != str(model.version):
            return _error(404, f"MODEL_NOT_FOUND: unknown model {name!r} version {version!r}")
        return _json(model.metadata(PLATFORM))

    @app.get("/v2/models/{name}/ready")
    async def model_ready(self, name: str) -> Response:
        if name not in self.models:
            return _error(404, f"MODEL_NOT_FOUND: unknown model {name!r}")
        return _json({"name": name, "ready": True})

    # -- inference

    @app.post("/v2/models/{name}/infer")
    async def infer(self, name: str, request: Request) -> Response:
        return await self._infer(name, None, request)

    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer_version(self, name: str, version: str, request: Request) -> Response:
        return await self._infer(name, version, request)

    async def _infer(self, name: str, version: str | None, request: Request) -> Response:
        model = self.models.get(name)
        if model is None or (version is not None and version != str(model.version)):
            return _error(404, f"MODEL_NOT_FOUND: unknown model {name!r}")
        try:
            body = json.loads(await request.body())
            if not isinstance(body, dict):
                raise ValueError("the request must be a JSON object")
            arrays = peer_models.decode_json_input(model, body.get("inputs"))
        except (ValueError, TypeError) as e:
            return _error(400, f"INVALID_INPUT: {e}")
        if len(arrays[0]) > model.config.max_batch_size:
            return _error(
                400,
                f"INVALID_INPUT: batch {len(arrays[0])} > max_batch_size "
                f"{model.config.max_batch_size}",
            )
        outputs, batch = await self._run(name, arrays)
        answer: dict[str, object] = {
            "model_name": name,
            "model_version": str(model.version),
            "outputs": [
                {
                    "name": spec.name,
                    "datatype": spec.dtype,
                    "shape": list(o.shape),
                    "data": o.reshape(-1).tolist(),
                }
                for spec, o in zip(model.config.outputs, outputs, strict=True)
            ],
            "parameters": {"batch_size": batch},
        }
        if "id" in body:
            answer["id"] = body["id"]
        return _json(answer)


def build_app(repository: str, batch_wait_s: float = DEFAULT_BATCH_WAIT_S, layout: str = "single"):
    """The Serve application (``serve run ray_app:build_app`` style builder)."""
    root = str(peer_models.repository_root(repository))
    if layout == "split":
        return OIPModels.bind(root, batch_wait_s, Models.bind(root, batch_wait_s))
    return OIPModels.bind(root, batch_wait_s)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--repository", default=None, help="model repository (default: $PEER_REPOSITORY)"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--batch-wait-s",
        type=float,
        default=DEFAULT_BATCH_WAIT_S,
        help="serve.batch's batch_wait_timeout_s",
    )
    p.add_argument(
        "--layout",
        choices=("single", "split"),
        default="single",
        help="single: one replica reads HTTP and runs the models; split: an ingress replica "
        "calls a models replica",
    )
    args = p.parse_args()
    root = peer_models.repository_root(args.repository)
    # Ray's processes inherit this environment: they import this module and peer_models by name
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(HERE), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )
    os.environ.setdefault("RAY_worker_niceness", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    # imported by name (not as __main__) so that Ray's workers import it rather than unpickle it
    sys.path.insert(0, str(HERE))
    import ray_app

    ray.init(include_dashboard=False, log_to_driver=False)
    serve.start(
        http_options={"host": args.host, "port": args.port},
        logging_config={"enable_access_log": False, "log_level": "WARNING"},
    )
    serve.run(
        ray_app.build_app(str(root), args.batch_wait_s, args.layout),
        name=APP_NAME,
        route_prefix="/",
        blocking=False,
    )
    print(
        f"ray_app: serving {root} on http://{args.host}:{args.port} (pid {os.getpid()})", flush=True
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    print("ray_app: shutting down", flush=True)
    serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
