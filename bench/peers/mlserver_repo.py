"""Write MLServer's configuration for the models of a Clockwork model repository.

Usage::

    python bench/peers/mlserver_repo.py REPO OUTDIR [--http-port 8080] [--grpc-port 8081]
        [--metrics-port 8082] [--max-batch-time-s 0.005] [--parallel-workers 1]

Writes ``OUTDIR/settings.json`` (the server) and ``OUTDIR/<model>/model-settings.json`` (one per
model of REPO, read from its ``config.json``); then ``mlserver start OUTDIR`` serves them with
``mlserver_runtime.ClockworkRuntime``, which loads the weights from REPO itself (nothing is
copied). Needs only the standard library: it reads the configs as JSON (the runtime checks them).

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

RUNTIME = "mlserver_runtime.ClockworkRuntime"
DEFAULT_MAX_BATCH_TIME_S = 0.005


def model_dirs(repo: Path) -> list[Path]:
    """The repository's model directories (as ``ModelRepository.model_dirs``: not ``_`` or
    ``.`` first), those with a ``config.json``, sorted."""
    return sorted(
        d
        for d in repo.iterdir()
        if d.is_dir() and not d.name.startswith(("_", ".")) and (d / "config.json").is_file()
    )


def tensor(spec: dict[str, object]) -> dict[str, object]:
    shape = spec["shape"]
    assert isinstance(shape, list)
    return {"name": spec["name"], "datatype": spec["dtype"], "shape": [-1, *shape]}


def model_settings(repo: Path, config: dict[str, object], max_batch_time_s: float) -> dict:
    versions = config["versions"]
    assert isinstance(versions, list)
    inputs = config["inputs"]
    outputs = config["outputs"]
    assert isinstance(inputs, list) and isinstance(outputs, list)
    return {
        "name": config["name"],
        "implementation": RUNTIME,
        "platform": "pytorch",
        "versions": [str(max(versions))],
        "inputs": [tensor(t) for t in inputs],
        "outputs": [tensor(t) for t in outputs],
        "max_batch_size": config["max_batch_size"],
        "max_batch_time": max_batch_time_s,
        "parameters": {
            "version": str(max(versions)),
            "extra": {"repository": str(repo), "model": config["name"]},
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
    for d in model_dirs(repo):
        config = json.loads((d / "config.json").read_text())
        settings = model_settings(repo, config, args.max_batch_time_s)
        (out / d.name).mkdir(exist_ok=True)
        (out / d.name / "model-settings.json").write_text(json.dumps(settings, indent=2) + "\n")
        names.append(d.name)
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
        print(f"mlserver_repo: no model (no <model>/config.json) in {repo}", file=sys.stderr)
        return 2
    print(f"mlserver_repo: {len(names)} model(s) of {repo} -> {args.out}/ (HTTP {args.http_port})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
