"""The samples an HTTP inference body carries, read without decoding its inputs: never more than
its first input's batch (1 where it cannot be told), and found where clients put the shape."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.frontend.own_timeout import END_BYTES, UNKNOWN
from clockwork.frontend.stated_samples import stated_call, stated_samples


def tensor(batch: int, order: list[str], data_items: int = 8) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": "x",
        "datatype": "FP32",
        "shape": [batch, 2],
        "data": [0.5] * data_items,
        "parameters": {"shape": [99]},
    }
    return {k: fields[k] for k in order}


@settings(max_examples=200, deadline=None)
@given(
    batch=st.integers(1, 64),
    order=st.permutations(["name", "datatype", "shape", "data", "parameters"]),
    top=st.permutations(["id", "inputs", "outputs", "parameters"]),
    id_bytes=st.integers(0, 2 * END_BYTES),
    spaces=st.booleans(),
)
def test_an_all_json_body_tells_its_batch_or_one(
    batch: int, order: list[str], top: list[str], id_bytes: int, spaces: bool
) -> None:
    members: dict[str, Any] = {
        "id": "i" * id_bytes,
        "inputs": [tensor(batch, order), tensor(batch + 1, order)],
        "outputs": [{"name": "y"}],
        "parameters": {"timeout": 5, "shape": [77]},
    }
    body = {k: members[k] for k in top}
    raw = json.dumps(body, indent=1 if spaces else None).encode()
    got = stated_samples(bytearray(raw), None)
    assert got in (1, batch)
    # read where the first input's shape comes before its data, and nothing bulky before it
    reachable = top.index("inputs") < top.index("outputs") and order.index("shape") < order.index(
        "data"
    )
    # (the first input's members before its data take under 200 bytes, indented)
    if reachable and raw.index(b'"inputs"') + 200 < END_BYTES:
        assert got == batch


def test_a_binary_header_tells_its_batch() -> None:
    header = json.dumps(
        {"inputs": [{"name": "x", "shape": [16, 3], "datatype": "FP32"}], "parameters": {}}
    ).encode()
    body = bytearray(header + bytes(16 * 12))
    assert stated_samples(body, str(len(header))) == 16
    # a header that does not tell: one sample
    for bad in (b'{"inputs": []}', b'{"inputs": [{"shape": "16"}]}', b"[1, 2]", b"{nope"):
        assert stated_samples(bytearray(bad + bytes(8)), str(len(bad))) == 1
    assert stated_samples(body, "abc") == 1
    assert stated_samples(body, str(len(body) + 1)) == 1


def test_a_body_that_does_not_tell_counts_as_one() -> None:
    for raw in (b"", b"[]", b'{"inputs": 5}', b'{"inputs": [{"data": [1], "shape": [4]}]}'):
        assert stated_samples(bytearray(raw), None) == 1
    # a negative or zero batch is the decoder's to refuse
    raw = json.dumps({"inputs": [{"shape": [0, 2], "data": []}]}).encode()
    assert stated_samples(bytearray(raw), None) == 1


def test_a_call_s_timeout_and_samples_are_read_together() -> None:
    header = json.dumps(
        {
            "inputs": [{"name": "x", "shape": [4, 3], "datatype": "FP32"}],
            "parameters": {"timeout": 9},
        }
    ).encode()
    body = bytearray(header + bytes(4 * 12))
    assert stated_call(body, str(len(header))) == (9, 4)
    # where no timeout is told the samples are not looked for (nothing is asked)
    bad = json.dumps({"inputs": [{"shape": [4, 3]}], "parameters": {"timeout": -1}}).encode()
    assert stated_call(bytearray(bad + bytes(8)), str(len(bad))) == (UNKNOWN, 1)
    raw = json.dumps({"inputs": [{"name": "x", "shape": [5, 2], "data": [1.0] * 10}]}).encode()
    assert stated_call(bytearray(raw), None) == (0, 5)
