"""A tritonclient gRPC client run as a child process, so that a test can stop it (SIGSTOP) the
way a stuck client stops: ``python grpc_stall_client.py unary|stream URL COUNT INTS``.

It asks the fake's ``ident`` model for ``COUNT`` answers of ``INTS`` INT32s each (unary
``ModelInfer`` calls, or one ``ModelStreamInfer`` stream), prints ``sent``, then one line per
answer as it comes: ``ok`` or ``error <status>``. A stream that fails ends with its one error.
"""

from __future__ import annotations

import queue
import sys

import numpy as np
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException


def main(mode: str, url: str, count: int, ints: int) -> None:
    client = tg.InferenceServerClient(url)
    x = tg.InferInput("x", [1, ints], "INT32")
    x.set_data_from_numpy(np.arange(ints, dtype=np.int32).reshape(1, ints))
    answers: queue.Queue[str] = queue.Queue()

    def done(result: tg.InferResult | None, error: InferenceServerException | None) -> None:
        if error is not None:
            answers.put(f"error {error.status()}")
        else:
            assert result is not None
            y = result.as_numpy("y")
            answers.put("ok" if y is not None and y.shape == (1, ints) else "error wrong answer")

    if mode == "unary":
        for i in range(count):
            client.async_infer("ident", [x], callback=done, request_id=str(i))
    else:
        client.start_stream(callback=done)
        for i in range(count):
            client.async_stream_infer("ident", [x], request_id=str(i))
    print("sent", flush=True)
    for _ in range(count):
        line = answers.get()
        print(line, flush=True)
        if mode == "stream" and line.startswith("error"):
            break
    # the stream's thread would wait for the server otherwise
    client.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
