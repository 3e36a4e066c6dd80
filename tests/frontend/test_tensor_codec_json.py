"""JSON tensor data: the fast path for flat numbers and the element-by-element path agree."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clockwork.frontend.api import FrontendError
from clockwork.frontend.tensor_codec import from_json

ELEMENTS = st.one_of(
    st.integers(-300, 300), st.floats(-6e4, 6e4), st.booleans(), st.just("x"), st.just(None)
)


def _decode(datatype: str, shape: list[int], data: object) -> object:
    try:
        return from_json(datatype, shape, data, "t")
    except FrontendError as e:
        return ("error", e.message)


@given(
    datatype=st.sampled_from(["FP32", "FP64", "INT8", "INT64", "UINT8", "FP16"]),
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
        ("FP32", [1.0, 2.0, 3.0], "3 elements of data"),
    ],
)
def test_flat_data_errors(datatype: str, data: list[object], match: str) -> None:
    with pytest.raises(FrontendError, match=match):
        from_json(datatype, [2] if len(data) == 3 else [len(data)], data, "t")
