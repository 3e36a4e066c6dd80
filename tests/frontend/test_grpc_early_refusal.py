"""A large gRPC inference request that the scheduler would refuse at arrival is refused before
its inputs are decoded: its head (model, version, id, parameters) is read from the wire form."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from clockwork.frontend.api import ErrorKind, FrontendError
from clockwork.frontend.decode_pool import DecodePool
from clockwork.frontend.grpc_request_head import request_head
from clockwork.frontend.grpc_server import InferenceServicer, _Encoded
from clockwork.frontend.proto import inference_pb2 as pb

from support.fake_model_server import FakeModelServer

N = 50_000  # 200 KB of INT32: over the 64 KiB a message is parsed on the loop up to


def ident_request(**params: int) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="ident", model_version="1", id="r7")
    req.inputs.add(name="x", datatype="INT32", shape=[1, N])
    req.raw_input_contents.append(np.arange(N, dtype=np.int32).tobytes())
    for key, value in params.items():
        req.parameters[key].int64_param = value
    return req


def test_the_head_is_read_without_the_tensors() -> None:
    data = ident_request(timeout=5_000, priority=2).SerializeToString()
    head = request_head(data)
    assert head is not None
    assert (head.model_name, head.model_version, head.id) == ("ident", "1", "r7")
    assert head.parameters["timeout"].int64_param == 5_000
    # the input is small (its data comes apart): kept, its shape tells the samples
    assert [list(i.shape) for i in head.inputs] == [[1, N]] and not head.raw_input_contents
    # an input holding its data is not
    inline = pb.ModelInferRequest(model_name="ident")
    tensor = inline.inputs.add(name="x", datatype="INT32", shape=[1, N])
    tensor.contents.int_contents.extend(range(N))
    head = request_head(inline.SerializeToString())
    assert head is not None and head.model_name == "ident" and not head.inputs
    # fields may come in any order (a message is also its concatenated parts)
    later = pb.ModelInferRequest(model_name="ident")
    later.parameters["timeout"].int64_param = 9
    tail_first = ident_request().SerializeToString() + later.SerializeToString()
    head = request_head(tail_first)
    assert head is not None and head.parameters["timeout"].int64_param == 9


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"\x0a\x40abc", b"\x0f", b"\x00\x01"])
def test_a_message_that_cannot_be_walked_has_no_head(data: bytes) -> None:
    assert request_head(data) is None
    assert request_head(ident_request().SerializeToString()[:-3]) is None


def servicer_call(fake: FakeModelServer, method: str, request: Any) -> Any:
    async def main() -> Any:
        pool = DecodePool(0)  # in place: what a refusal spares is not in question here
        return await getattr(InferenceServicer(fake, pool), method)(request)

    return asyncio.run(main())


def test_a_refusal_known_at_arrival_is_given_before_decoding() -> None:
    fake = FakeModelServer()
    fake.early_refusal = FrontendError(ErrorKind.OVERLOADED, "OVERLOADED: queued", "OVERLOADED")
    encoded = _Encoded(ident_request(timeout=5_000).SerializeToString())
    with pytest.raises(FrontendError) as info:
        servicer_call(fake, "model_infer", encoded)
    assert info.value.reason == "OVERLOADED"
    assert fake.asked_early == [("ident", 5_000)] and not fake.calls
    # in a stream, the refusal names the request it answers
    answer = servicer_call(fake, "_stream_answer", encoded)
    assert "OVERLOADED" in answer.error_message and answer.infer_response.id == "r7"
    assert not fake.calls
    # taken: decoded and served, with no timeout of its own asked as 0
    fake.early_refusal = None
    result = servicer_call(fake, "model_infer", _Encoded(ident_request().SerializeToString()))
    assert result.id == "r7" and len(fake.calls) == 1 and fake.asked_early[-1] == ("ident", 0)


def test_a_call_is_asked_about_with_the_samples_its_small_input_names() -> None:
    fake = FakeModelServer()
    fake.early_refusal = FrontendError(ErrorKind.OVERLOADED, "OVERLOADED: queued", "OVERLOADED")
    req = pb.ModelInferRequest(model_name="ident", model_version="1")
    req.inputs.add(name="x", datatype="INT32", shape=[4, N // 4])
    req.raw_input_contents.append(np.arange(N, dtype=np.int32).tobytes())
    with pytest.raises(FrontendError):
        servicer_call(fake, "model_infer", _Encoded(req.SerializeToString()))
    assert fake.asked_samples == [4]
