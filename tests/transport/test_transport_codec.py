"""The msgpack codec: every message type round-trips, and malformed bytes of any kind give a
ProtocolError that names the problem (never another exception)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clockwork.core.actions import ActionResult, ActionStatus, EvictWeights, Infer, LoadWeights
from clockwork.core.errors import ClockworkError
from clockwork.core.events import DeviceInfo, ModelInfo
from clockwork.core.ids import DeviceId
from clockwork.core.profile import DeviceKind, Measurement, ModelProfile
from clockwork.core.signature import OIP_DATATYPES, ModelSignature, TensorSignature
from clockwork.transport import (
    TAGS,
    ActionResultMsg,
    EvictWeightsMsg,
    GetWorkerState,
    Hello,
    InferInputs,
    InferMsg,
    InferOutputs,
    LoadWeightsMsg,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Role,
    Tensor,
    WorkerState,
    action_message,
    decode,
    encode,
)
from clockwork.transport.codec import OOB_MARK, encode_parts
from clockwork.transport.messages import RescanRepository

I64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
NS = st.integers(min_value=0, max_value=2**62)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
NAMES = st.text("abcdefghij_-0123456789", min_size=1, max_size=12)

devices = st.builds(DeviceId, NAMES, st.integers(0, 64))

DTYPES = ["<f4", "<f8", "<f2", "|u1", "|i1", "<i4", "<i8", ">i4", "|b1", "<c8", "|S3", "<U2"]


@st.composite
def tensors(draw: st.DrawFn) -> Tensor:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = draw(st.binary(min_size=n, max_size=n))
    return Tensor(dtype.str, shape, data)


tensor_maps = st.dictionaries(NAMES, tensors(), max_size=3)
infer_inputs = st.builds(InferInputs, tensor_maps)
infer_outputs = st.builds(InferOutputs, tensor_maps)

load_weights = st.builds(LoadWeights, I64, devices, TEXT, I64, I64, I64)
evict_weights = st.builds(EvictWeights, I64, devices, TEXT)
infers = st.builds(
    Infer,
    I64,
    devices,
    TEXT,
    st.integers(0, 64),
    st.lists(I64, max_size=8).map(tuple),
    I64,
    I64,
    I64,
)
results = st.builds(
    ActionResult,
    I64,
    devices,
    TEXT,
    st.sampled_from(ActionStatus),
    I64,
    I64,
    I64,
    I64,
    I64,
    I64,
    TEXT,
)

kinds = st.builds(DeviceKind, TEXT, st.integers(1, 2**40), st.integers(1, 10_000))
device_infos = st.builds(DeviceInfo, devices, kinds, st.lists(TEXT, max_size=3).map(tuple))


@st.composite
def profiles(draw: st.DrawFn) -> ModelProfile:
    page = draw(st.integers(1, 2**30))
    weights = draw(st.integers(0, 2**36))
    pages = -(-weights // page) + draw(st.integers(0, 3))
    return ModelProfile(
        model=draw(TEXT),
        device_kind=draw(TEXT),
        weights_bytes=weights,
        page_size_bytes=page,
        weights_pages=pages,
        load_ns=draw(st.integers(1, 2**40)),
        exec_ns=draw(
            st.dictionaries(st.integers(1, 256), st.integers(1, 2**40), min_size=1, max_size=4)
        ),
        input_bytes=draw(st.integers(0, 2**30)),
        output_bytes=draw(st.integers(0, 2**30)),
        measured=Measurement(draw(TEXT), draw(TEXT), draw(TEXT)),
        extra=draw(st.dictionaries(NAMES, st.one_of(TEXT, st.integers(-1000, 1000)), max_size=2)),
    )


tensor_sigs = st.lists(
    st.builds(
        TensorSignature,
        NAMES,
        st.sampled_from(OIP_DATATYPES),
        st.lists(st.integers(-1, 4096).filter(lambda d: d >= -1), max_size=4).map(tuple),
        # an integer input's value range (least, greatest), or none
        st.one_of(
            st.none(),
            st.tuples(st.integers(-(2**63), 2**64 - 1), st.integers(-(2**63), 2**64 - 1)).map(
                lambda t: (min(t), max(t))
            ),
        ),
    ),
    min_size=1,
    max_size=3,
    unique_by=lambda t: t.name,
).map(tuple)
signatures = st.builds(
    ModelSignature,
    tensor_sigs,
    tensor_sigs,
    st.integers(1, 64),
    st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple),
    TEXT,
)
model_infos = st.builds(
    ModelInfo,
    TEXT,
    st.lists(profiles(), max_size=2).map(tuple),
    st.one_of(st.none(), NS),
    st.one_of(st.none(), signatures),
)
opt_i64 = st.one_of(st.none(), I64)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Hello, I64, st.integers(0, 1000), st.sampled_from(Role), TEXT),
    st.builds(GetWorkerState, I64),
    st.builds(RescanRepository, I64),
    st.builds(
        WorkerState,
        I64,
        TEXT,
        st.lists(device_infos, max_size=3).map(tuple),
        st.lists(model_infos, max_size=2).map(tuple),
    ),
    st.builds(Ping, I64, I64, opt_i64),
    st.builds(Pong, I64, I64, I64, opt_i64),
    st.builds(LoadWeightsMsg, I64, load_weights),
    st.builds(InferMsg, I64, infers, st.lists(infer_inputs, max_size=3).map(tuple)),
    st.builds(EvictWeightsMsg, I64, evict_weights),
    st.builds(ActionResultMsg, I64, results, st.lists(infer_outputs, max_size=3).map(tuple)),
)


def test_every_message_type_has_a_strategy_and_a_tag() -> None:
    assert set(TAGS) == {
        Hello,
        GetWorkerState,
        WorkerState,
        RescanRepository,
        Ping,
        Pong,
        LoadWeightsMsg,
        InferMsg,
        EvictWeightsMsg,
        ActionResultMsg,
    }
    assert len(set(TAGS.values())) == len(TAGS)


@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_round_trip(msg: Message) -> None:
    data = encode(msg)
    back = decode(data)
    assert type(back) is type(msg)
    assert back == msg
    assert encode(back) == data


@given(messages, I64)
def test_sent_ns_override(msg: Message, stamp: int) -> None:
    back = decode(encode(msg, sent_ns=stamp))
    assert back.sent_ns == stamp
    assert back == dataclasses.replace(msg, sent_ns=stamp)


def test_tensor_arrays_round_trip() -> None:
    arrays = {
        "x": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "ids": np.array([[1, -2]], dtype=">i8"),
        "mask": np.array([True, False]),
        "t": np.arange(6, dtype=np.int16).reshape(2, 3).T,
    }  # not C-contiguous
    msg = InferMsg(
        7, Infer(1, DeviceId("w", 0), "m", 1, (9,), 0, 10, 5), (InferInputs.from_arrays(arrays),)
    )
    back = decode(encode(msg))
    assert isinstance(back, InferMsg)
    (got,) = back.input_arrays()
    assert got.keys() == arrays.keys()
    for name, arr in arrays.items():
        assert got[name].dtype == arr.dtype
        np.testing.assert_array_equal(got[name], arr)


def test_resnet_sized_input_is_raw_bytes() -> None:
    x = np.zeros((1, 3, 224, 224), dtype=np.float32)  # 602,112 bytes
    msg = action_message(
        Infer(1, DeviceId("w", 0), "resnet50", 1, (1,), 0, 10, 5),
        (InferInputs.from_arrays({"input": x}),),
    )
    data = encode(msg)
    assert x.nbytes == 602_112
    assert x.nbytes < len(data) < x.nbytes + 200  # no JSON, no base64
    assert decode(data) == msg


def test_action_message_picks_the_type() -> None:
    d = DeviceId("w", 1)
    assert isinstance(action_message(LoadWeights(1, d, "m", 0, 1, 1)), LoadWeightsMsg)
    assert isinstance(action_message(EvictWeights(1, d, "m")), EvictWeightsMsg)
    assert isinstance(action_message(Infer(1, d, "m", 1, (1,), 0, 1, 1)), InferMsg)
    with pytest.raises(ValueError, match="takes no inputs"):
        action_message(EvictWeights(1, d, "m"), (InferInputs(),))


def test_enums_travel_by_value_and_device_ids_as_pairs() -> None:
    r = ActionResult(3, DeviceId("w7", 2), "m", ActionStatus.TOO_LATE, 1, 2, 2)
    raw = msgpack.unpackb(encode(ActionResultMsg(5, r)))
    assert raw[0] == TAGS[ActionResultMsg]
    assert raw[1] == 5
    assert raw[3] == ["w7", 2]
    assert raw[5] == "TOO_LATE"


def test_encode_refuses_non_messages() -> None:
    with pytest.raises(ProtocolError, match="not a protocol message"):
        encode("hello")  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="cannot encode"):
        encode(Ping(0, 2**70))


# ---- malformed input ---------------------------------------------------------------------------

D_RAW = ["w", 0]
INFER_RAW: list[Any] = [11, 0, 1, D_RAW, "m", 1, [1], 0, 10, 5, []]
RESULT_RAW: list[Any] = [20, 0, 1, D_RAW, "m", "SUCCESS", 1, 2, 3, 4, 0, 0, "", []]


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def with_inputs(tensor: Any) -> list[Any]:
    return [*INFER_RAW[:-1], [{"x": tensor}]]


def test_the_raw_samples_are_valid() -> None:
    assert isinstance(decode(pack(INFER_RAW)), InferMsg)
    assert isinstance(decode(pack(RESULT_RAW)), ActionResultMsg)
    assert isinstance(decode(pack(with_inputs(["<f4", [2], b"\0" * 8]))), InferMsg)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "undecodable"),
        (b"\xc1", "undecodable"),
        (pack(INFER_RAW)[:-3], "undecodable"),  # truncated
        (pack(INFER_RAW) + b"\x00", "undecodable"),  # trailing bytes
        (pack({"tag": 1}), "array"),
        (pack(7), "array"),
        (pack([1]), "array"),
        (pack([99, 0]), "unknown message tag 99"),
        (pack(["1", 0, 1, "controller", "x"]), "message tag: expected an int"),
        (pack([True, 0]), "message tag: expected an int"),
        (pack([1, 0, 1, "controller"]), "Hello: expected 3 fields"),
        (pack([1, 0, 1, "controller", "x", 5]), "Hello: expected 3 fields"),
        (pack([1, 0, 1, "boss", "x"]), "bad role value 'boss'"),
        (pack([1, 1.5, 1, "controller", "x"]), "Hello.sent_ns: expected an int, got float"),
        (pack([4, 0, "one", None]), "Ping.seq"),
        (pack([6, 0, 1]), "RescanRepository: expected 0 fields"),
        (pack([6, "0"]), "RescanRepository.sent_ns: expected an int, got str"),
        (pack([4, 0, 1, "x"]), "Ping.min_delta_ns"),
        (pack([12, 0, 1, ["w"], "m"]), "EvictWeights.device: expected 2 fields"),
        (pack([12, 0, 1, "w/0", "m"]), "EvictWeights.device: expected an array"),
        (pack([12, 0, 1, D_RAW, b"m"]), "EvictWeights.model: expected a string, got bytes"),
        (pack([*RESULT_RAW[:5], "FINE", *RESULT_RAW[6:]]), "bad status value 'FINE'"),
        (pack([*RESULT_RAW[:5], 0, *RESULT_RAW[6:]]), "bad status value 0"),
        (pack([*INFER_RAW[:6], [1, "2"], *INFER_RAW[7:]]), "Infer.request_ids"),
        (pack([*INFER_RAW[:10], {"x": 1}]), "Infer.inputs: expected an array"),
        (pack(with_inputs(["<f4", [3], b"\0" * 8])), "8 bytes of data, but dtype <f4 and shape"),
        (pack(with_inputs(["|O8", [1], b"\0" * 8])), "not a plain numpy dtype"),
        (pack(with_inputs(["f4,i4", [1], b"\0" * 8])), "not a plain numpy dtype"),
        (pack(with_inputs(["<i3", [1], b"\0" * 3])), "is not a numpy dtype"),
        (pack(with_inputs(["|S0", [1], b""])), "not a plain numeric or string type"),
        (pack(with_inputs(["<f4", [-1], b""])), "negative dimension"),
        (pack(with_inputs(["<f4", [1] * 40, b"\0" * 4])), "dimensions"),
        (pack(with_inputs(["<f4", [1], "abcd"])), "expected bytes, got str"),
        (pack([*INFER_RAW[:10], [{1: ["<f4", [1], b"\0" * 4]}]]), "undecodable"),  # non-str key
        (pack([3, 0, "w", [[D_RAW, ["k", 0, 5], []]], []]), "kind: device kind"),
        (pack([3, 0, "w", [], [["m", [{"format": "nope"}], None, None]]]), "profiles\\[0\\]"),
        (
            pack([3, 0, "w", [], [["m", [{"format": "clockwork-profile/1"}], None, None]]]),
            "profiles\\[0\\]",
        ),
        (
            pack(
                [
                    3,
                    0,
                    "w",
                    [],
                    [["m", [], None, [[["x", "FP99", [1]]], [["y", "FP32", [1]]], 1, [1], "p"]]],
                ]
            ),
            "unknown datatype 'FP99'",
        ),
        (
            pack([3, 0, "w", [], [["m", [], None, [[], [["y", "FP32", [1]]], 1, [1], "p"]]]]),
            "signature",
        ),
    ],
)
def test_malformed_input_names_the_problem(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode(data)


def test_the_fast_path_refuses_what_the_checked_path_refuses() -> None:
    # Infer and ActionResult are decoded on a fast path once a dtype has been seen; with every
    # cache warm, malformed input still gets the checked path's error
    decode(pack(with_inputs(["<f4", [2], b"\0" * 8])))
    decode(pack([*RESULT_RAW[:-1], [{"y": ["<f4", [1], b"\0" * 4]}]]))
    for tensor, match in [
        (["<f4", [3], b"\0" * 8], "8 bytes of data, but dtype <f4"),
        (["<f4", [-2], b""], "negative dimension"),
        (["<f4", [True], b"\0" * 4], "shape: expected an int"),
        (["<f4", [1] * 40, b"\0" * 4], "dimensions"),
        (["<f4", [1], "abcd"], "expected bytes, got str"),
    ]:
        with pytest.raises(ProtocolError, match=match):
            decode(pack(with_inputs(tensor)))
        with pytest.raises(ProtocolError, match=match):
            decode(pack([*RESULT_RAW[:-1], [{"y": tensor}]]))
    for i, value, match in [
        (2, True, "action_id: expected an int"),
        (3, ["w", "0"], "device.index"),
        (5, "FINE", "bad status value"),
        (6, 1.5, "received_ns"),
        (12, None, "detail: expected a string"),
    ]:
        with pytest.raises(ProtocolError, match=match):
            decode(pack([*RESULT_RAW[:i], value, *RESULT_RAW[i + 1 :]]))


def test_decoded_device_ids_are_shared_and_equal() -> None:
    a = decode(pack(RESULT_RAW))
    b = decode(pack(INFER_RAW))
    assert isinstance(a, ActionResultMsg)
    assert isinstance(b, InferMsg)
    assert a.result.device == b.action.device == DeviceId("w", 0)
    assert hash(a.result.device) == hash(DeviceId("w", 0))


def test_a_failed_encode_leaves_the_encoder_clean() -> None:
    with pytest.raises(ProtocolError):
        encode(Ping(0, 1, 2**70))
    assert decode(encode(Ping(0, 1, 2))) == Ping(0, 1, 2)


def test_protocol_error_is_a_clockwork_error() -> None:
    assert issubclass(ProtocolError, ClockworkError)


def decode_or_protocol_error(data: bytes) -> None:
    try:
        decode(data)
    except ProtocolError as e:
        assert str(e)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_else(data: bytes) -> None:
    decode_or_protocol_error(data)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.randoms(use_true_random=False))
def test_mutated_encodings_never_raise_anything_else(msg: Message, rnd: random.Random) -> None:
    data = bytearray(encode(msg))
    decode_or_protocol_error(bytes(data[: rnd.randrange(len(data) + 1)]))  # truncated
    for _ in range(rnd.randint(1, 4)):  # a few bytes changed
        data[rnd.randrange(len(data))] = rnd.randrange(256)
    decode_or_protocol_error(bytes(data))


msgpack_values = st.recursive(
    st.one_of(st.none(), st.booleans(), I64, st.floats(), TEXT, st.binary(max_size=8)),
    lambda children: st.one_of(
        st.lists(children, max_size=6), st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=8,
)


# fields after tag and sent_ns, per tag
FIELD_COUNTS = {1: 3, 2: 0, 3: 3, 4: 2, 5: 3, 6: 0, 10: 6, 11: 9, 12: 3, 20: 12}


def test_field_counts_cover_every_tag() -> None:
    assert set(FIELD_COUNTS) == set(TAGS.values())


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(FIELD_COUNTS)), st.data())
def test_random_structures_with_valid_tags_never_raise_anything_else(
    tag: int, data: st.DataObject
) -> None:
    n = FIELD_COUNTS[tag] + data.draw(st.sampled_from([0, 0, 0, -1, 1]))
    fields = data.draw(st.lists(msgpack_values, min_size=max(0, n), max_size=max(0, n)))
    decode_or_protocol_error(pack([tag, 0, *fields]))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.data())
def test_one_field_replaced_never_raises_anything_else(msg: Message, data: st.DataObject) -> None:
    raw = msgpack.unpackb(encode(msg), raw=False)
    i = data.draw(st.integers(1, len(raw) - 1))
    raw[i] = data.draw(msgpack_values)
    decode_or_protocol_error(pack(raw))


def _large_infer(n_inputs: int = 3) -> InferMsg:
    arrays: list[dict[str, np.ndarray]] = [
        {"x": np.full((1, 3, 64, 64), i, dtype=np.float32), "ids": np.arange(5, dtype=np.int64)}
        for i in range(n_inputs)
    ]  # 49 KB and 40 B each: over OOB_MIN_BYTES together
    return InferMsg(
        3,
        Infer(1, DeviceId("w", 0), "m", n_inputs, tuple(range(n_inputs)), 0, 10, 5),
        tuple(InferInputs.from_arrays(a) for a in arrays),
    )


def test_large_tensors_follow_the_message_uncopied_and_come_back_the_same() -> None:
    msg = _large_infer()
    parts = encode_parts(msg)
    head, message, *data = parts
    assert head[0] == OOB_MARK and len(data) == 6  # every tensor's data, in order
    # the buffers written are the tensors' own memory, not copies of it
    sources = [t.data for i in msg.inputs for t in i.tensors.values()]
    for part, source in zip(data, sources, strict=True):
        assert part is source
    assert len(message) < 1000
    back = decode(b"".join(parts))
    assert back == msg
    for got, want in zip(back.input_arrays(), (i.to_arrays() for i in msg.inputs), strict=True):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])
    # small messages are one plain buffer, as before
    small = InferMsg(3, msg.action, (InferInputs.from_arrays({"x": np.zeros(4)}),))
    assert encode_parts(small) == [encode(small)]
    outputs = ActionResultMsg(
        4,
        ActionResult(1, DeviceId("w", 0), "m", ActionStatus.SUCCESS, 0, 1, 2, 1),
        tuple(InferOutputs.from_arrays({"y": np.ones((1, 20_000), np.float32)}) for _ in range(2)),
    )
    parts = encode_parts(outputs)
    assert len(parts) == 4 and decode(b"".join(parts)) == outputs


@pytest.mark.parametrize(
    ("cut", "match"),
    [
        (lambda p: p[:3], "no head"),
        (lambda p: p[:-1], "past its end"),
        (lambda p: p + b"x", "left over"),
        (lambda p: p[:1] + (10**9).to_bytes(4, "big") + p[5:], "a message of"),
    ],
)
def test_a_broken_out_of_band_frame_names_the_problem(cut: Any, match: str) -> None:
    payload = b"".join(encode_parts(_large_infer()))
    with pytest.raises(ProtocolError, match=match):
        decode(cut(payload))
