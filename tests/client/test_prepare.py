"""``OIPClient.prepare``: a load generator encodes each model's inputs before its clock starts,
not on the first request of each model."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from clockwork.client import oip_client
from clockwork.client.oip_client import (
    HttpClient,
    InferInputs,
    InputTensor,
    parse_endpoint,
)
from clockwork.frontend.tensor_codec import to_json


@pytest.mark.parametrize("binary", [False, True])
def test_http_prepare_encodes_what_the_requests_will_send(
    binary: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def counting(data: np.ndarray) -> list[object]:
        calls.append(data.size)
        return to_json(data)

    monkeypatch.setattr(oip_client, "to_json", counting)
    inputs = InferInputs([InputTensor("x", "FP32", np.zeros((1, 3, 4), np.float32))])

    async def go() -> None:
        client = HttpClient(parse_endpoint("http://127.0.0.1:9"), binary=binary)
        client.prepare(inputs)
        # JSON tensors are encoded once, now; binary ones need no JSON of their data
        assert calls == ([] if binary else [12])
        if not binary:
            inputs.json_inputs()
        assert calls == ([] if binary else [12])  # not again on use
        await client.close()

    asyncio.run(go())
