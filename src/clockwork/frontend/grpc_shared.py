"""Large gRPC inference requests decoded in a decode process by way of shared memory.

A ``ModelInferRequest`` too large to parse on the loop reaches the front door as its wire bytes
(``grpc_server._Encoded``). Pickled to a decode process, those bytes would be copied into the
pipe by a thread of this process, holding the interpreter the loop needs, and the decoded inputs
copied back the same way. Instead the bytes are copied into a shared segment in bounded steps
(``Pacer``), the decode process parses them there, and its inputs come back in a segment of
their own (``shared_inputs``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from clockwork.frontend.decode_pool import DecodePool
from clockwork.frontend.pacing import Pacer
from clockwork.frontend.shared_body import AttachedBody, SharedBody
from clockwork.frontend.shared_inputs import SharedCall, open_call, share_call

if TYPE_CHECKING:
    from clockwork.frontend.grpc_server import DecodedInfer


@dataclass(frozen=True, slots=True)
class SharedDecoded:
    """A ``DecodedInfer`` whose call (``decoded.call`` is None) lies in shared memory."""

    decoded: DecodedInfer
    shared: SharedCall


async def decode_elsewhere(decoder: DecodePool, data: bytes) -> DecodedInfer:
    """``decode_encoded_infer(data)`` in a decode process (``decoder.pooled`` must be True),
    its inputs mapped from shared memory."""
    try:
        body = SharedBody(len(data))
    except OSError:  # no room in shared memory: pickled through the pipe
        from clockwork.frontend.grpc_server import decode_encoded_infer

        return await decoder.run_elsewhere(decode_encoded_infer, data)
    try:
        await Pacer().copy(body.view, 0, data)
        result = await decoder.run_elsewhere(decode_shared_encoded_infer, body.name, body.size)
    finally:
        body.release()  # parsed: the inputs came back in a segment of their own
    if isinstance(result, SharedDecoded):
        call, _ = open_call(result.shared)  # the arrays keep their segment while they live
        return replace(result.decoded, call=call)
    return result


def decode_shared_encoded_infer(name: str, size: int) -> DecodedInfer | SharedDecoded:
    """In a decode process: the request in shared body ``name``, parsed there."""
    from clockwork.frontend.grpc_server import decode_encoded_infer

    body = AttachedBody(name, size)
    try:
        decoded = decode_encoded_infer(bytes(body.view))
    finally:
        body.close()
    if decoded.call is None:
        return decoded
    shared = share_call(decoded.call)
    if isinstance(shared, SharedCall):
        return SharedDecoded(replace(decoded, call=None), shared)
    return replace(decoded, call=shared)
