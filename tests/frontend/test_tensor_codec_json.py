"""JSON tensor data: the fast path for flat numbers and the element-by-element path agree."""

import json

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from clockwork.frontend.api import FrontendError
from clockwork.frontend.http_server import _loads, decode_infer_request
from clockwork.frontend.tensor_codec import from_json, to_json, to_json_flat

from support.decoding import assert_same_outcome

ELEMENTS = st.one_of(
    st.integers(-300, 300),
    st.sampled_from([0, 1, 2**15, 2**31, 2**32, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1]),
    st.floats(-6e4, 6e4),
    st.floats(),
    st.sampled_from([0.0, 1.0, 65504.0, 65520.0, 3.5e38, 1e300]),
    st.booleans(),
    st.just("x"),
    st.just(None),
)
DATATYPES = [
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
]


def _decode(datatype: str, shape: list[int], data: object) -> object:
    try:
        return from_json(datatype, shape, data, "t")
    except FrontendError as e:
        return ("error", e.message)


@given(
    datatype=st.sampled_from(DATATYPES),
    data=st.lists(ELEMENTS, min_size=1, max_size=12),
)
def test_flat_data_decodes_as_the_same_data_nested(datatype: str, data: list[object]) -> None:
    # nested one level deeper, the data takes the element-by-element path
    flat = _decode(datatype, [len(data)], data)
    nested = _decode(datatype, [1, len(data)], [data])
    if isinstance(flat, tuple):
        assert flat == nested
    else:
        assert isinstance(flat, np.ndarray) and isinstance(nested, np.ndarray)
        assert flat.dtype == nested.dtype
        np.testing.assert_array_equal(flat, nested.reshape(flat.shape))


@pytest.mark.parametrize(
    ("datatype", "data", "match"),
    [
        ("FP32", [1.0, True], "must be numbers"),
        ("INT64", [1, 2.5], "must be integers"),
        ("INT8", [1, 300], "out of range"),
        ("INT32", [0, False], "must be integers"),
        ("UINT16", [-1, 1], "out of range"),
        ("FP16", [7e4, 1.0], "out of range"),
        ("FP32", [1.0, 2.0, 3.0], "3 elements of data"),
    ],
)
def test_flat_data_errors(datatype: str, data: list[object], match: str) -> None:
    with pytest.raises(FrontendError, match=match):
        from_json(datatype, [2] if len(data) == 3 else [len(data)], data, "t")


@given(
    datatype=st.sampled_from(DATATYPES),
    data=st.lists(ELEMENTS, min_size=1, max_size=12),
)
def test_a_request_body_decodes_its_data_as_from_json_does(
    datatype: str, data: list[object]
) -> None:
    body = json.dumps(
        {"inputs": [{"name": "t", "shape": [len(data)], "datatype": datatype, "data": data}]}
    ).encode()
    try:
        decoded: object = decode_infer_request(body, None, "m", "1")[0].inputs[0].data
    except FrontendError as e:
        decoded = ("error", e.message)
    # against the checked decoding of the data as the server's parser read it (integers
    # beyond 64 bits, say, come back as floats)
    expected = _decode(datatype, [len(data)], _loads(body, "body")["inputs"][0]["data"])
    assert_same_outcome(decoded, expected)


ANSWER_DTYPES = st.sampled_from(
    [
        *("float16", "float32", "float64"),
        *("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"),
    ]
)


@given(
    hnp.arrays(ANSWER_DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)),
    st.booleans(),
)
def test_an_answer_array_is_written_as_its_list_is(array: np.ndarray, transpose: bool) -> None:
    """NaN and infinities (null in the list) and a view that is not contiguous included."""
    if transpose:
        array = array.T
    expected = orjson.dumps(to_json(array))
    flat = to_json_flat(array)
    assert orjson.dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY) == expected
    finite = array.dtype.kind != "f" or bool(np.isfinite(array).all())
    assert isinstance(flat, np.ndarray) == finite
