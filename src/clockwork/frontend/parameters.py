"""Request parameters both protocol layers check the same way."""

from __future__ import annotations

from collections.abc import Mapping

from clockwork.frontend.api import ErrorKind, FrontendError, Parameter

#: the largest integer parameter: what protobuf's int64 and msgpack carry
MAX_INT64 = 2**63 - 1
#: timeouts above this (an hour) are refused: a deadline that far is a client mistake
MAX_TIMEOUT_US = 3600 * 10**6
# Triton's shared-memory extensions are not served: a tensor that names a region would otherwise
# be read as missing (an input) or answered in the body while the client reads its region (an
# output)
SHARED_MEMORY_KEYS = ("shared_memory_region", "shared_memory_offset", "shared_memory_byte_size")


def invalid(message: str) -> FrontendError:
    return FrontendError(ErrorKind.INVALID_ARGUMENT, message, "BAD_REQUEST")


def int_param(params: Mapping[str, Parameter], key: str, where: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_INT64:
        raise invalid(f"{where}: parameter {key!r} must be an integer in [0, 2^63), got {value!r}")
    return value


def timeout_param(params: Mapping[str, Parameter], where: str) -> int | None:
    """The ``timeout`` parameter in microseconds (0: none given, as Triton reads it). Any value
    out of [0, MAX_TIMEOUT_US], too small or too large, is the same BAD_REQUEST naming the
    bounds."""
    value = params.get("timeout")
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= MAX_TIMEOUT_US:
        raise invalid(
            f"{where}: parameter 'timeout' must be an integer number of microseconds in "
            f"[0, {MAX_TIMEOUT_US}] (at most an hour), got {value!r}"
        )
    return value


def refuse_shared_memory(params: Mapping[str, Parameter], where: str) -> None:
    """Refuse ``params`` that place a tensor in a shared-memory region."""
    for key in SHARED_MEMORY_KEYS:
        if key in params:
            raise invalid(
                f"{where}: {key}: shared memory is not supported by this server (it does not "
                "implement the shared-memory extensions); send the data in the request"
            )
