"""Comparing two ways of decoding a tensor: the same array, or the same error."""

import numpy as np


def assert_same_outcome(got: object, expected: object) -> None:
    """``got`` and ``expected`` are each an array or an ``("error", message)`` tuple."""
    if isinstance(expected, tuple):
        assert got == expected
    else:
        assert isinstance(got, np.ndarray) and isinstance(expected, np.ndarray)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
