"""The JSON request reader that parses tensor data straight into arrays: it gives what the usual
parser gives, or leaves the document to it."""

import json

import numpy as np
import orjson
import pytest
import simdjson
from hypothesis import given
from hypothesis import strategies as st

from clockwork.frontend import json_request
from clockwork.frontend.api import FrontendError
from clockwork.frontend.json_request import _parse, loads_request
from clockwork.frontend.tensor_codec import ParsedNumbers, from_json

from support.decoding import assert_same_outcome

NUMBERS = st.one_of(
    st.integers(-300, 300),
    st.sampled_from([2**31, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 10**20]),
    st.floats(allow_nan=False, allow_infinity=False),
)
ELEMENTS = st.one_of(NUMBERS, st.booleans(), st.just("x"), st.none())
DATA = st.one_of(
    st.lists(NUMBERS, max_size=10),
    st.lists(ELEMENTS, max_size=6),
    st.lists(st.lists(NUMBERS, max_size=3), max_size=3),
    NUMBERS,
)
DATATYPES = ["FP16", "FP32", "FP64", "INT8", "INT32", "INT64", "UINT8", "UINT64", "BOOL", "BYTES"]


def _tensor(spec: dict[str, object], shape: list[int]) -> object:
    try:
        return from_json(str(spec["datatype"]), shape, spec["data"], "t")
    except FrontendError as e:
        return ("error", e.message)


@given(
    inputs=st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["a", "b"]), "datatype": st.sampled_from(DATATYPES)},
            optional={"data": DATA, "shape": st.just([2, 3])},
        ),
        max_size=3,
    ),
    extra=st.dictionaries(st.sampled_from(["id", "parameters", "outputs"]), ELEMENTS),
)
def test_it_reads_what_orjson_reads(
    inputs: list[dict[str, object]], extra: dict[str, object]
) -> None:
    body = json.dumps({"inputs": inputs, **extra}).encode()
    ours = loads_request(body)
    theirs = orjson.loads(body) if b"NaN" not in body else None
    if ours is None:
        return  # left to the usual parser (integers beyond 64 bits, say)
    assert theirs is not None
    assert ours.keys() == theirs.keys()
    assert {k: v for k, v in ours.items() if k != "inputs"} == {
        k: v for k, v in theirs.items() if k != "inputs"
    }
    assert len(ours["inputs"]) == len(theirs["inputs"])
    for mine, usual in zip(ours["inputs"], theirs["inputs"], strict=True):
        assert {k: v for k, v in mine.items() if k != "data"} == {
            k: v for k, v in usual.items() if k != "data"
        }
        if "data" not in usual:
            assert "data" not in mine
            continue
        if not isinstance(mine["data"], ParsedNumbers):
            assert mine["data"] == usual["data"]
        # as a tensor, the data decodes to the same array, or the same error
        data = usual["data"]
        shape = [len(data)] if isinstance(data, list) else [1]
        assert_same_outcome(_tensor(mine, shape), _tensor(usual, shape))


def test_numbers_are_read_into_an_array() -> None:
    body = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [3], "data": [0.5, 1, -2e3]}]}'
    req = loads_request(body)
    assert req is not None
    data = req["inputs"][0]["data"]
    assert isinstance(data, ParsedNumbers)
    np.testing.assert_array_equal(data.values, [0.5, 1.0, -2000.0])


def test_what_it_does_not_take_is_left_to_the_usual_parser() -> None:
    for body in (
        b'{"inputs": [], "inputs": [1]}',  # a key twice: orjson keeps the last
        b'{"inputs": [{"name": "x", "data": [1e400]}]}',  # beyond a double
        b'{"inputs": [{"name": "x", "data": [100000000000000000000]}]}',  # beyond 64 bits
        b'{"inputs": [NaN]}',
        b"[1, 2]",
        b"{",
    ):
        assert loads_request(body) is None, body


def test_a_document_still_held_does_not_stop_the_next_read() -> None:
    held = _parse(b'{"a": [1, 2]}')
    req = loads_request(b'{"inputs": []}')
    assert req == {"inputs": []}
    assert held is not None


def test_a_large_document_gets_a_parser_that_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # a parser's buffers are sized for the largest document it read: kept after a bomb, they
    # would hold several times its size for good
    class Spy:
        def __init__(self) -> None:
            self.parser = simdjson.Parser()
            self.sizes: list[int] = []

        def parse(self, text: bytes) -> object:
            self.sizes.append(len(text))
            return self.parser.parse(text)

    spy = Spy()
    monkeypatch.setattr(json_request._parsers, "parser", spy)
    n = json_request._KEEP_PARSER_MAX_BYTES // 4 + 1
    body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "data": [0.5] * n}]})
    req = loads_request(body.encode())
    assert req is not None and isinstance(req["inputs"][0]["data"], ParsedNumbers)
    assert loads_request(b'{"inputs": []}') == {"inputs": []}
    assert spy.sizes == [len(b'{"inputs": []}')]
    assert json_request._parsers.parser is spy
