"""Check the torch backend on a CUDA device: profiles, correctness, load bandwidth, spread.

On ``--device`` (default ``cuda:0``), for each built-in model at its standard size (written into
a temporary model repository with ``clockwork.models.create_repository``):

1. profile it with the real backend (``clockwork.worker.profiler.profile_model``) and print the
   table (``--out DIR`` also writes the profiles there);
2. check the paged path against the plain module: the same 3 requests in a batch of 4 through
   ``TorchBackend`` (weights as views into the one cache tensor, ``functional_call``) and
   through ``repo.build_module(...).to(device)``; outputs must be allclose (rtol 1e-3, atol
   1e-4: cuDNN may pick different algorithms, and TF32 convolutions are on by default);
3. report host-to-device load bandwidth (weights bytes / load time, from pinned host memory on
   the backend's load stream);
4. run ``--runs`` batch-1 inferences and report p50 / p99 / p99.99 / max and the spreads of the
   execution phase (CUDA events) and of the whole action (input copy + exec + output copy).

Exit status: 0 all good; 1 a correctness check failed; 2 CUDA is missing.

usage: .venv/bin/python scripts/gpu_check.py [--device cuda:0] [--runs 5000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ARCHS = ("resnet50", "resnet18", "mobilenet_v2", "transformer")


def pct(values: list[int], q: float) -> int:
    ordered = sorted(values)
    rank = max(1, int(np.ceil(q / 100 * len(ordered))))
    return ordered[min(rank, len(ordered)) - 1]


def distribution(values: list[int]) -> dict[str, Any]:
    p50 = pct(values, 50)
    return {"runs": len(values), "p50_ms": p50 / 1e6, "p99_ms": pct(values, 99) / 1e6,
            "p9999_ms": pct(values, 99.99) / 1e6, "max_ms": max(values) / 1e6,
            "p99_over_p50": pct(values, 99) / p50, "p9999_over_p50": pct(values, 99.99) / p50}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--runs", type=int, default=5000,
                        help="batch-1 runs per model for the spread (default 5000)")
    parser.add_argument("--profile-runs", type=int, default=100,
                        help="timed runs per batch size in the profiles (default 100)")
    parser.add_argument("--loads", type=int, default=20, help="timed loads (default 20)")
    parser.add_argument("--models", default=",".join(ARCHS), help="architectures (a,b)")
    parser.add_argument("--cache-pages", type=int, default=256,
                        help="weights cache size in 16 MiB pages (default 256 = 4 GiB)")
    parser.add_argument("--out", type=Path, default=None, help="write profiles + JSON here")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        why = ("this torch build has no CUDA support" if torch.version.cuda is None
               else "torch sees no CUDA device (driver? CUDA_VISIBLE_DEVICES?)")
        print(f"gpu-check: CUDA is missing: {why} (torch {torch.__version__}). Run this on a "
              "machine with an NVIDIA GPU and a CUDA build of torch in .venv.", file=sys.stderr)
        return 2

    from clockwork.core.profile import save_profile
    from clockwork.models.create import create_repository
    from clockwork.models.profile_files import kind_file_name
    from clockwork.models.repository import ModelRepository
    from clockwork.worker.backends.torch_backend import TorchBackend, default_kind
    from clockwork.worker.profiler import profile_model, profile_table, sample_inputs

    device = args.device
    kind = default_kind(device, cache_pages=args.cache_pages)
    print(f"gpu-check on {device}: {kind.name}, torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, cache {kind.cache_pages} pages of 16 MiB", flush=True)
    failures: list[str] = []
    report: dict[str, Any] = {"device": device, "kind": kind.name, "torch": torch.__version__,
                              "models": {}}
    with tempfile.TemporaryDirectory(prefix="clockwork-gpu-check-") as tmp:
        root = Path(tmp) / "repo"
        names = []
        for arch in args.models.split(","):
            names += create_repository(root, arch, 1, seed=0)
        repo = ModelRepository(root)
        for name in names:
            t0 = time.perf_counter()
            profile = profile_model(repo, name, device, runs=args.profile_runs, warmup=10,
                                    loads=args.loads, kind=kind)
            print(profile_table(profile), flush=True)
            if args.out is not None:
                path = args.out / name / f"profile-{kind_file_name(kind.name)}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                save_profile(profile, path)

            backend = TorchBackend(repo, device, kind=kind, models=[name])
            backend.load(name)
            config = backend.config(name)
            requests = sample_inputs(config, 3, np.random.default_rng(1))
            got = np.stack([o[config.outputs[0].name]
                            for o in backend.infer(name, 4, requests).outputs])
            module = repo.build_module(name, 1, copy=True).to(device)
            spec = config.inputs[0]
            batch = np.zeros((4, *spec.shape), dtype=requests[0][spec.name].dtype)
            for i, r in enumerate(requests):
                batch[i] = r[spec.name]
            with torch.inference_mode():
                ref = module(torch.from_numpy(batch).to(device)).cpu().numpy()[:3]
            diff = float(np.abs(got - ref).max())
            ok = bool(np.allclose(got, ref, rtol=1e-3, atol=1e-4))
            if not ok:
                failures.append(f"{name}: paged outputs differ from the plain module "
                                f"(max abs diff {diff:.3g})")
            del module

            one = sample_inputs(config, 1, np.random.default_rng(2))
            for _ in range(20):
                backend.infer(name, 1, one)
            exec_ns, total_ns = [], []
            for _ in range(args.runs):
                t = backend.infer(name, 1, one).times
                exec_ns.append(t.exec_ns)
                total_ns.append(t.input_copy_ns + t.exec_ns + t.output_copy_ns)
            backend.evict(name)
            del backend
            torch.cuda.empty_cache()

            load = profile.extra["load"]
            gbps_p50 = profile.weights_bytes / load["p50_ns"]
            row = {"weights_bytes": profile.weights_bytes, "pages": profile.weights_pages,
                   "load_p50_ms": load["p50_ns"] / 1e6, "load_p99_ms": load["p99_ns"] / 1e6,
                   "load_gbps_p50": gbps_p50,
                   "paged_matches_plain": ok, "max_abs_diff": diff,
                   "exec_batch1": distribution(exec_ns), "action_batch1": distribution(total_ns),
                   "profile": profile.to_json()}
            report["models"][name] = row
            e, a = row["exec_batch1"], row["action_batch1"]
            print(f"  paged == plain: {'OK' if ok else 'FAIL'} (max abs diff {diff:.2e})\n"
                  f"  load: {profile.weights_bytes / 1e6:.1f} MB, p50 {load['p50_ns'] / 1e6:.3f} "
                  f"ms = {gbps_p50:.1f} GB/s host-to-device\n"
                  f"  batch 1 exec   ({e['runs']} runs): p50 {e['p50_ms']:.3f}  p99 "
                  f"{e['p99_ms']:.3f}  p99.99 {e['p9999_ms']:.3f}  max {e['max_ms']:.3f} ms; "
                  f"p99/p50 {e['p99_over_p50']:.3f}, p99.99/p50 {e['p9999_over_p50']:.3f}\n"
                  f"  batch 1 action (copies+exec): p50 {a['p50_ms']:.3f}  p99 {a['p99_ms']:.3f}"
                  f"  p99.99 {a['p9999_ms']:.3f} ms; p99/p50 {a['p99_over_p50']:.3f}\n"
                  f"  ({time.perf_counter() - t0:.0f} s)\n", flush=True)

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'model':<20} {'MB':>7} {'load GB/s':>9} {'exec p50':>9} {'p99':>8} {'p99.99':>8} "
          f"{'p99/p50':>7} ok")
    for name, row in report["models"].items():
        e = row["exec_batch1"]
        print(f"{name:<20} {row['weights_bytes'] / 1e6:7.1f} {row['load_gbps_p50']:9.1f} "
              f"{e['p50_ms']:9.3f} {e['p99_ms']:8.3f} {e['p9999_ms']:8.3f} "
              f"{e['p99_over_p50']:7.3f} {'yes' if row['paged_matches_plain'] else 'NO'}")
    for f in failures:
        print(f"FAIL: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
