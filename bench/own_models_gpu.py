"""One network in its three forms on a device: profile each, check paged equals eager.

Prepared for a GPU session (issue 14 item 5); runs on the CPU as well (``--device cpu``), which
is how it was checked on a machine without a GPU. Steps, all under ``--out``:

1. ``repo/``: the built-in model (``--arch``, ``--params`` JSON, batch sizes 1-16), exported and
   imported back as ``<name>-pt2`` and ``<name>-onnx`` (``clockwork models export --into``);
2. ``clockwork profile`` of the three on ``--device`` (p50/p99 per batch size, load time), and
   the load bandwidth (weights bytes / load p50);
3. paged equals unpaged: each form served by the paged backend against the eager module on the
   same device, max absolute difference at batch 4;
4. which form ``clockwork serve``'s demo repository takes on ``--device`` (all three forms
   timed at batch 1, as at a first start; ``--no-demo`` skips it).

Prints a table and writes ``results.json``. Usage on a GPU machine:
``python bench/own_models_gpu.py --device cuda:0 --arch resnet50 --out /tmp/own-gpu``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clockwork.models.create import create_repository
from clockwork.models.model_export import export_model
from clockwork.models.repository import ModelRepository
from clockwork.worker.backends.torch_backend import TorchBackend
from clockwork.worker.profiler import profile_repository, profile_table, sample_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda:0", help="cuda:N or cpu")
    parser.add_argument("--arch", default="resnet50", help="built-in architecture")
    parser.add_argument("--params", default="{}", help="architecture parameters, JSON")
    parser.add_argument("--out", type=Path, required=True, help="working directory")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per batch size")
    parser.add_argument("--loads", type=int, default=10, help="timed loads")
    parser.add_argument(
        "--forms",
        default="builtin,pt2,onnx",
        help="which forms (onnx on CUDA needs onnxruntime-gpu installed in place of onnxruntime)",
    )
    parser.add_argument("--no-demo", action="store_true", help="skip the demo form choice")
    args = parser.parse_args()
    root = args.out / "repo"
    (name,) = create_repository(
        root,
        args.arch,
        1,
        0,
        params=json.loads(args.params),
        batch_sizes=(1, 2, 4, 8, 16),
        overwrite=True,
    )
    repo = ModelRepository(root)
    t0 = time.perf_counter()
    export_model(repo, name, args.out / "files", into=root, overwrite=True)
    print(f"exported {name} in {time.perf_counter() - t0:.1f} s")
    wanted = args.forms.split(",")
    forms = [name if f == "builtin" else f"{name}-{f}" for f in wanted]
    results: dict[str, Any] = {"device": args.device, "arch": args.arch, "forms": {}}
    profiles = profile_repository(
        repo, args.device, models=forms, runs=args.runs, warmup=5, loads=args.loads
    )
    eager = repo.build_module(name, 1, copy=True).to(args.device).eval()
    requests = sample_inputs(repo.load_config(name), 4, np.random.default_rng(1))
    with torch.inference_mode():
        batch = [
            torch.from_numpy(np.stack([r[spec.name] for r in requests])).to(args.device)
            for spec in repo.load_config(name).inputs
        ]
        expected = eager(*batch).float().cpu().numpy()
    for form in forms:
        profile, _ = profiles[form]
        print(profile_table(profile))
        load_p50_ns = int(profile.extra.get("load", {}).get("p50_ns", profile.load_ns))
        bandwidth = profile.weights_bytes / max(1, load_p50_ns)  # bytes per ns = GB/s
        backend = TorchBackend(repo, args.device, models=[form])
        backend.load(form)
        out = backend.infer(form, 4, requests).outputs
        output = backend.config(form).outputs[0].name
        got = np.stack([o[output] for o in out]).astype(np.float32)
        diff = float(np.abs(got - expected).max())
        print(f"  load bandwidth {bandwidth:.2f} GB/s at p50; paged vs eager max |diff| {diff:.3g}")
        results["forms"][form] = {
            "profile": profile.to_json(),
            "load_gb_per_s_p50": bandwidth,
            "paged_vs_eager_max_abs_diff": diff,
        }
        backend.evict(form)
    if not args.no_demo:
        from clockwork.cli.demo_repository import ALL_FORMS, ensure_demo_repository

        choice = ensure_demo_repository(args.out / "demo-repo", args.device, forms=ALL_FORMS)
        if choice is not None:
            print(f"demo repository: {choice.describe()}")
            results["demo_choice"] = choice.to_json()
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"-> {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
