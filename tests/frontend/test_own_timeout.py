"""The timeout an all-JSON inference body names, read from its two ends: never a wrong value
(an answer is the one the decoder would find, or UNKNOWN), and found where clients put it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from clockwork.frontend.own_timeout import END_BYTES, SEARCH_MAX_BYTES, UNKNOWN, stated_timeout_us

# what might confuse a reader of the ends: the key inside strings, nested objects, escapes
TRICKY = [
    "parameters",
    '"parameters": {"timeout": 5}}',
    '\\"parameters\\": {"timeout": 5}}',
    '{"timeout": 9}',
    "}",
    "]}",
    "é",
]

params_st = st.dictionaries(
    st.sampled_from(["timeout", "priority", "x", "parameters"]),
    st.one_of(st.integers(0, 10**7), st.sampled_from(TRICKY), st.booleans()),
    max_size=3,
)
input_st = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["a", "parameters", "timeout"]),
        "datatype": st.just("BYTES"),
        "shape": st.just([1]),
        "data": st.lists(st.sampled_from(TRICKY), min_size=1, max_size=1),
    },
    optional={"parameters": params_st},
)


def _truth(body: dict[str, Any]) -> int | None:
    """What decoding the whole body gives: the timeout in microseconds (0 for none), or None
    where the decoder refuses it (then any early answer is allowed: the request is refused)."""
    params = body.get("parameters", {})
    if not isinstance(params, dict):
        return None
    t = params.get("timeout")
    if t is None:
        return 0
    return t if type(t) is int else None


@settings(max_examples=300, deadline=None)
@given(
    order=st.permutations(["id", "inputs", "outputs", "parameters"]),
    ident=st.sampled_from(["", "r1", '"parameters": {"timeout": 3}}']),
    inputs=st.lists(input_st, min_size=1, max_size=2),
    params=st.one_of(st.none(), params_st),
    padding=st.integers(0, 3 * END_BYTES),
    spaces=st.booleans(),
)
def test_a_timeout_read_from_the_ends_is_the_one_decoding_finds(
    order: list[str],
    ident: str,
    inputs: list[dict[str, Any]],
    params: dict[str, Any] | None,
    padding: int,
    spaces: bool,
) -> None:
    if padding:  # a bulky tensor between the ends
        inputs = [
            *inputs,
            {"name": "pad", "datatype": "BYTES", "shape": [1], "data": ["x" * padding]},
        ]
    members = {"id": ident, "inputs": inputs, "outputs": [{"name": "o"}], "parameters": params}
    body = {k: members[k] for k in order if members[k] is not None}
    raw = json.dumps(body, indent=1 if spaces else None).encode()
    got = stated_timeout_us(bytearray(raw), None)
    truth = _truth(body)
    if truth is None:
        return
    assert got in (UNKNOWN, truth)
    # where a client puts it, it is found: the last member, or before the bulky ones
    if params is not None and (
        order[-1] == "parameters"
        or order.index("parameters") < min(order.index("inputs"), order.index("outputs"))
    ):
        fits = order[-1] == "parameters" or len(json.dumps({"id": ident})) < END_BYTES // 2
        if fits and len(json.dumps(params)) < END_BYTES // 2:
            assert got == truth


def test_the_bench_client_s_and_tritonclient_s_layouts() -> None:
    data = ",".join(["0.5"] * 20_000)
    ours = (
        b'{"id":"7","inputs":[{"name":"x","shape":[1,20000],"datatype":"FP32","data":[%s]}],'
        b'"parameters":{"priority":0,"timeout":100000}}' % data.encode()
    )
    assert stated_timeout_us(bytearray(ours), None) == 100_000
    triton = json.dumps(
        {
            "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": False}}],
            "parameters": {"timeout": 25_000},
        }
    ).encode()
    assert stated_timeout_us(bytearray(triton), None) == 25_000
    # no parameters at all: the whole body is searched, and names no timeout
    bare = json.dumps({"inputs": [{"name": "x", "data": [1]}]}).encode()
    assert stated_timeout_us(bytearray(bare), None) == 0
    # a nested input's parameters are not the request's
    nested = json.dumps(
        {"inputs": [{"name": "x", "data": [1], "parameters": {"timeout": 5}}]}
    ).encode()
    assert stated_timeout_us(bytearray(nested), None) == UNKNOWN
    # parameters first, after an id: read from the head
    head = json.dumps({"id": "a", "parameters": {"timeout": 42}, "inputs": []}).encode()
    assert stated_timeout_us(bytearray(head), None) == 42
    # a bad timeout is the decoder's to refuse
    bad = json.dumps({"inputs": [], "parameters": {"timeout": -1}}).encode()
    assert stated_timeout_us(bytearray(bad), None) == UNKNOWN


def test_a_body_whose_ends_do_not_tell_is_searched_whole_once_complete() -> None:
    bare = json.dumps({"inputs": [{"name": "x", "data": [1]}]}).encode()
    # no "parameters" and no backslash anywhere: it names no timeout
    assert stated_timeout_us(bytearray(bare), None) == 0
    # its first bytes only (the rest of the buffer not read yet): only the rest could tell
    assert stated_timeout_us(bytearray(bare), None, complete=False) == UNKNOWN
    # the key anywhere (here an input's parameters), or a backslash (which could spell it as
    # "\u0070arameters"): only decoding can tell
    nested = json.dumps({"inputs": [{"name": "x", "parameters": {"a": 1}, "data": [1]}]})
    assert stated_timeout_us(bytearray(nested.encode()), None) == UNKNOWN
    escaped = json.dumps({"inputs": [{"name": "\n", "data": [1]}]}).encode()
    assert b"\\" in escaped and stated_timeout_us(bytearray(escaped), None) == UNKNOWN
    # over the size bound: not searched
    big = json.dumps({"inputs": [{"name": "x", "data": [1] * (SEARCH_MAX_BYTES // 2)}]})
    assert stated_timeout_us(bytearray(big.encode()), None) == UNKNOWN
