"""One model of a running server over plain HTTP (urllib): wait until it is ready, run it once
on zeros at batch 1 (the shape from its metadata). For tests of whole servers started by a
command, where no client library is wanted."""

from __future__ import annotations

import json
import math
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import pytest


def wait_ready(
    base: str, timeout_s: float = 90.0, alive: subprocess.Popen[str] | None = None
) -> None:
    """Until ``base``/ready (``base``: ``http://host:port/v2/models/NAME``) answers 200; fails
    after ``timeout_s``, or at once if ``alive`` (the server's process) has exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        if alive is not None:
            assert alive.poll() is None, alive.communicate()[1][-3000:]
        try:
            with urllib.request.urlopen(f"{base}/ready", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, "the model never became ready"
        time.sleep(0.3)


def infer_zeros(base: str) -> dict[str, Any]:
    """The answer to one inference on zeros, a batch of one (the metadata's shape is batch
    first, -1 for the batch); an HTTP error fails the test with its body."""
    with urllib.request.urlopen(base, timeout=10) as r:
        meta = json.load(r)
    [tensor] = meta["inputs"]
    shape = [d if d > 0 else 1 for d in tensor["shape"]]
    body = {"inputs": [{**tensor, "shape": shape, "data": [0.0] * math.prod(shape)}]}
    request = urllib.request.Request(
        f"{base}/infer", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            answer: dict[str, Any] = json.load(r)
            return answer
    except urllib.error.HTTPError as e:
        pytest.fail(f"{e}: {e.read()[:2000]!r}")
