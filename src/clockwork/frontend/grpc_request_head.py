"""The head of a large ``ModelInferRequest`` read from its wire form without parsing its tensors.

A large inference message is decoded in a decode process (``grpc_shared``), not on the loop; but
whether the scheduler would refuse it at arrival (``ModelServer.refuse_early``) needs only its
model, version and ``parameters`` (the timeout), and a stream's refusal names its ``id``.
Protobuf's wire form is a sequence of fields, each a tag and, for the message and byte fields
that hold the tensors, a length: the top-level fields are walked by their lengths (a handful of
steps, whatever the tensors' size), and only those four fields are parsed, with the inputs that
are small (the call's samples are the first dimension of their shape). A message that
cannot be walked is left to the decoder, which says what is wrong with it.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from clockwork.frontend.proto import inference_pb2 as pb

__all__ = ["request_head"]

# ModelInferRequest's fields that say what is asked, not the tensors: model_name,
# model_version, id and parameters (inference.proto)
_HEAD_FIELDS = frozenset((1, 2, 3, 4))
# ``inputs``: kept where an input is small (its name, datatype and shape, its data sent apart in
# ``raw_input_contents`` as tritonclient sends it): its shape tells the call's samples
_INPUTS_FIELD = 5
_SMALL_INPUT_BYTES = 4096
# wire types: varint, 64-bit, length-delimited, 32-bit
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def request_head(data: bytes) -> pb.ModelInferRequest | None:
    """A ``ModelInferRequest`` holding only the model name, version, id and parameters of the
    message ``data``, and its small inputs; None when ``data`` is not a well-formed message."""
    head = bytearray()
    i, n = 0, len(data)
    try:
        while i < n:
            start = i
            key, i = _varint(data, i)
            field, wire = key >> 3, key & 7
            if wire == _VARINT:
                _, i = _varint(data, i)
            elif wire == _I64:
                i += 8
            elif wire == _I32:
                i += 4
            elif wire == _LEN:
                size, i = _varint(data, i)
                i += size
            else:
                return None
            if i > n or field == 0:
                return None
            if field in _HEAD_FIELDS or (
                field == _INPUTS_FIELD and i - start <= _SMALL_INPUT_BYTES
            ):
                head += data[start:i]
        request = pb.ModelInferRequest()
        request.ParseFromString(bytes(head))
        return request
    except (DecodeError, ValueError, RuntimeError):
        return None
