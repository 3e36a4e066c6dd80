"""Decode (and encode) cost of the hot messages: ``InferMsg`` and ``ActionResultMsg``.

Each case is decoded ``--number`` times per repeat; the best of ``--repeat`` repeats is printed
(microseconds per message), so that noise from other processes on a shared machine only ever
adds. Compare rows of one run, or runs made on the same machine back to back.

``--baseline FILE`` also loads another version of ``codec.py`` (say, from git) and times its
``decode`` on the same bytes, alternating repeat by repeat with ours, so that both see the same
machine load:

    git show REV:src/clockwork/transport/codec.py > /tmp/codec_before.py
    .venv/bin/python bench/codec_hot.py --baseline /tmp/codec_before.py
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from clockwork.core.actions import ActionResult, ActionStatus, Infer
from clockwork.core.ids import DeviceId
from clockwork.transport import (
    ActionResultMsg,
    InferInputs,
    InferMsg,
    InferOutputs,
    Message,
    decode,
    encode,
)

DEV = DeviceId("w0", 0)


def infer(batch: int, shape: tuple[int, ...] | None) -> InferMsg:
    inputs: tuple[InferInputs, ...] = ()
    if shape is not None:
        x = np.zeros(shape, dtype=np.float32)
        inputs = tuple(InferInputs.from_arrays({"input": x}) for _ in range(batch))
    action = Infer(7, DEV, "resnet50_v2-0001", batch, tuple(range(batch)), 1, 2, 3)
    return InferMsg(123, action, inputs)


def result(batch: int, shape: tuple[int, ...] | None) -> ActionResultMsg:
    outputs: tuple[InferOutputs, ...] = ()
    if shape is not None:
        y = np.zeros(shape, dtype=np.float32)
        outputs = tuple(InferOutputs.from_arrays({"output": y}) for _ in range(batch))
    r = ActionResult(7, DEV, "resnet50_v2-0001", ActionStatus.SUCCESS, 1, 2, 3, 4, 5, 6, "")
    return ActionResultMsg(123, r, outputs)


CASES: list[tuple[str, Message]] = [
    ("Infer b1, no inputs", infer(1, None)),
    ("Infer b16, no inputs", infer(16, None)),
    ("Infer b1, 1x3x64x64 f32", infer(1, (1, 3, 64, 64))),
    ("Infer b16, 1x3x64x64 f32", infer(16, (1, 3, 64, 64))),
    ("Infer b1, 1x3x224x224 f32", infer(1, (1, 3, 224, 224))),
    ("Result b1, no outputs", result(1, None)),
    ("Result b16, 1x1000 f32", result(16, (1, 1000))),
]


def best_us(fns: list[Callable[[], object]], number: int, repeat: int) -> list[float]:
    """Best time per call of each of ``fns`` (microseconds), their repeats interleaved."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t0) / number)
    return [b * 1e6 for b in best]


def load_codec(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("codec_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--number", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--baseline", type=Path, default=None, help="another codec.py to compare")
    args = p.parse_args()
    base = load_codec(args.baseline) if args.baseline is not None else None
    if base is None:
        print("| message | bytes | decode (us) | encode (us) |")
        print("|---|---:|---:|---:|")
    else:
        print("| message | bytes | decode, baseline (us) | decode, this tree (us) | change |")
        print("|---|---:|---:|---:|---:|")
    for name, msg in CASES:
        data = encode(msg)
        assert decode(data) == msg
        number = max(20, args.number * 1000 // max(1000, len(data) // 100))
        if base is None:
            fns = [lambda: decode(data), lambda: encode(msg)]  # noqa: B023
            dec, enc = best_us(fns, number, args.repeat)
            print(f"| {name} | {len(data):,} | {dec:.2f} | {enc:.2f} |")
        else:
            before, after = best_us(
                [lambda: base.decode(data), lambda: decode(data)],  # noqa: B023
                number,
                args.repeat,
            )
            change = 100 * (after - before) / before
            print(f"| {name} | {len(data):,} | {before:.2f} | {after:.2f} | {change:+.1f}% |")


if __name__ == "__main__":
    main()
