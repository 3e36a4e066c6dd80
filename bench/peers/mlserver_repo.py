"""Write MLServer's configuration for the models of a Clockwork model repository.

Usage::

    python bench/peers/mlserver_repo.py REPO OUTDIR [--http-port 8080] [--grpc-port 8081]
        [--metrics-port 8082] [--max-batch-time-s 0.005] [--parallel-workers 1]

Writes ``OUTDIR/settings.json`` (the server) and ``OUTDIR/<model>/model-settings.json`` (one per
model of REPO, its ``config.json`` or Triton-style ``config.pbtxt`` read by Clockwork's own
``ModelRepository``: run it with the MLServer venv's python); then ``mlserver start OUTDIR`` serves
them with ``mlserver_runtime.ClockworkRuntime``, which loads the models from REPO itself (nothing is
copied).

The settings, and why (README.md has the whole comparison):

- ``parallel_workers`` 1 (MLServer's default): one inference worker process holding every model,
  one torch thread in it, beside the main process that speaks HTTP. That is the shape of
  Clockwork's server (a front-door process and one worker process with one torch thread). More
  workers would compute several batches at once on these 2 cores; 0 would run inference on the
  HTTP event loop.
- Adaptive batching on: ``max_batch_size`` = the model's ``max_batch_size`` from its config,
  ``max_batch_time`` = ``--max-batch-time-s`` (default 0.005 s, Ray Serve's
  ``batch_wait_timeout_s`` in ``ray_app.py`` too): a batch goes when full or 5 ms after its first
  request.
- ``gzip_enabled`` false: MLServer compresses answers by default. ``clockwork bench`` reads
  answers without decompressing them (its aiohttp session has ``auto_decompress=False``) while
  still advertising gzip, so MLServer would spend CPU on gzip that no other server spends and the
  client would count compressed bodies; Clockwork's and Ray's answers are not compressed.
- ``debug`` false: no per-request access log (MLServer's default writes one line per request;
  Clockwork and the Ray app write none).
- Metrics stay on (MLServer's default, as Clockwork's Prometheus counters are), on their own port;
  MLServer's gRPC server cannot be turned off and listens on ``--grpc-port``.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clockwork.models.config import ModelConfig
    from clockwork.models.tensors import TensorSpec

RUNTIME = "mlserver_runtime.ClockworkRuntime"
DEFAULT_MAX_BATCH_TIME_S = 0.005


def tensor(spec: "TensorSpec") -> dict[str, object]:
    return {"name": spec.name, "datatype": spec.dtype, "shape": [-1, *spec.shape]}


def model_settings(repo: Path, config: "ModelConfig", max_batch_time_s: float) -> dict:
    version = max(config.versions)
    return {
        "name": config.name,
        "implementation": RUNTIME,
        "platform": "pytorch" if config.format.value == "builtin" else config.format.value,
        "versions": [str(version)],
        "inputs": [tensor(t) for t in config.inputs],
        "outputs": [tensor(t) for t in config.outputs],
        "max_batch_size": config.max_batch_size,
        "max_batch_time": max_batch_time_s,
        "parameters": {
            "version": str(version),
            "extra": {"repository": str(repo), "model": config.name},
        },
    }


def server_settings(args: argparse.Namespace) -> dict[str, object]:
    return {
        "host": args.host,
        "http_port": args.http_port,
        "grpc_port": args.grpc_port,
        "metrics_port": args.metrics_port,
        "parallel_workers": args.parallel_workers,
        "gzip_enabled": False,
        "debug": False,
        "load_models_at_startup": True,
        "server_name": "mlserver",
    }


def write(repo: Path, out: Path, args: argparse.Namespace) -> list[str]:
    names = []
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(server_settings(args), indent=2) + "\n")
    from clockwork.models.repository import ModelRepository

    models = ModelRepository(repo)
    for name in sorted(models.scan()):
        settings = model_settings(repo, models.load_config(name), args.max_batch_time_s)
        (out / name).mkdir(exist_ok=True)
        (out / name / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")
        names.append(name)
    return names


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("repo", type=Path, help="Clockwork model repository")
    p.add_argument("out", type=Path, help="MLServer model repository to write")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--grpc-port", type=int, default=8081)
    p.add_argument("--metrics-port", type=int, default=8082)
    p.add_argument("--parallel-workers", type=int, default=1)
    p.add_argument("--max-batch-time-s", type=float, default=DEFAULT_MAX_BATCH_TIME_S)
    args = p.parse_args()
    repo = args.repo.resolve()
    if not repo.is_dir():
        print(f"mlserver_repo: {repo} is not a directory", file=sys.stderr)
        return 2
    names = write(repo, args.out.resolve(), args)
    if not names:
        print(f"mlserver_repo: no valid model in {repo}", file=sys.stderr)
        return 2
    print(f"mlserver_repo: {len(names)} model(s) of {repo} -> {args.out}/ (HTTP {args.http_port})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
