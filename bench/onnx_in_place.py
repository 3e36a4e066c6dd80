"""CPU time of one ONNX model under ONNX Runtime's default optimizations against the in-place
setting (``TorchBackend(onnx_in_place=True)``: ORT_ENABLE_EXTENDED, pre-packing off).

Usage: ``python bench/onnx_in_place.py MODEL.onnx [--batches 1,8] [--rounds 5] [--runs 20]``.
Both sessions run one thread; rounds interleave the two settings (so the host's speed phases
hit both alike) and each run is measured in process CPU time, not wall time, to resist the
noise of a shared machine. Prints the median per setting and batch size.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort


def session(path: str, in_place: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if in_place:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", help="an .onnx file with one FP32 input, batch first")
    parser.add_argument("--batches", default="1,8", help="batch sizes, comma separated")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per round")
    args = parser.parse_args()
    sessions = {"default (ORT_ENABLE_ALL)": session(args.model, False)}
    sessions["in place (EXTENDED, no pre-pack)"] = session(args.model, True)
    first = sessions["in place (EXTENDED, no pre-pack)"].get_inputs()[0]
    shape = [d for d in first.shape[1:]]
    rng = np.random.default_rng(0)
    batches = [int(b) for b in args.batches.split(",")]
    feeds = {b: rng.standard_normal((b, *shape)).astype(np.float32) for b in batches}
    times: dict[tuple[str, int], list[int]] = {(k, b): [] for k in sessions for b in batches}
    for _ in range(args.rounds):
        for name, s in sessions.items():
            for b in batches:
                for _ in range(3):
                    s.run(None, {first.name: feeds[b]})
                for _ in range(args.runs):
                    t0 = time.process_time_ns()
                    s.run(None, {first.name: feeds[b]})
                    times[(name, b)].append(time.process_time_ns() - t0)
    for (name, b), values in times.items():
        print(f"{name:34s} batch {b:3d}: median CPU {statistics.median(values) / 1e6:.2f} ms")


if __name__ == "__main__":
    main()
