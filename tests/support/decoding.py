"""Decoding in tests: comparing two ways of decoding a tensor (the same array, or the same
error), and a decode slow enough to be abandoned."""

import time
from typing import Any

import numpy as np


def assert_same_outcome(got: object, expected: object) -> None:
    """``got`` and ``expected`` are each an array or an ``("error", message)`` tuple."""
    if isinstance(expected, tuple):
        assert got == expected
    else:
        assert isinstance(got, np.ndarray) and isinstance(expected, np.ndarray)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def decode_shared_after(delay_s: float, *args: Any) -> Any:
    """``decode_http_infer_shared(*args)`` after ``delay_s``: a decode that is still at it when
    its caller gives up (run in a decode process, which imports this module)."""
    from clockwork.frontend.http_server import decode_http_infer_shared

    time.sleep(delay_s)
    return decode_http_infer_shared(*args)
