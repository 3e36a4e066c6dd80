"""The fake model server's ``add`` inputs (``a`` and ``b``, ones of shape [1, 4]) as tritonclient's
gRPC ``InferInput``s."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as tg


def add_inputs() -> list[tg.InferInput]:
    out = []
    for name in ("a", "b"):
        t = tg.InferInput(name, [1, 4], "FP32")
        t.set_data_from_numpy(np.ones((1, 4), np.float32))
        out.append(t)
    return out
