"""A decoded request's input arrays handed from a decode process to the loop in shared memory.

A decode process returns what it decoded to the controller's process through its pipe, pickled:
the loop's process then reads and copies every byte of every input (a 9 MiB batch: milliseconds
of interpreter time that the timed loop waits out). Instead, ``share_call`` (in the decode
process) writes the inputs into one new shared segment and returns a ``SharedCall``: the call
without its arrays, and each array's dtype, shape and offset in the segment. ``open_call`` (on
the loop) maps the segment, whose owner the loop's process becomes: the arrays are views of it,
and the segment's name is removed once the request is answered or refused and its handler has
released it (``transport.shared_segments``). A worker on the same host maps the same segment.

A result nobody awaits any more (its client left while it was decoded) is discarded by
``discard``: its segment is removed, not leaked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from clockwork.frontend.api import InferenceCall
from clockwork.transport.shared_segments import NAME_RE, Segment, unlink

#: inputs of fewer bytes than this come back pickled: a segment costs more than their copy
SHARE_MIN_BYTES = 64 * 1024
# each array starts at a multiple of this in its segment (aligned for any dtype and for SIMD)
_ALIGN = 64


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one input's array lies in its segment."""

    dtype: str
    shape: tuple[int, ...]
    offset: int


@dataclass(frozen=True, slots=True)
class SharedCall:
    """An ``InferenceCall`` whose inputs' arrays lie in the shared segment ``segment`` (its
    inputs here hold empty arrays); ``slots`` says where, one per input, in order."""

    call: InferenceCall
    segment: str
    size: int
    slots: tuple[Slot, ...]


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def share_call(call: InferenceCall) -> InferenceCall | SharedCall:
    """In a decode process: ``call`` with its inputs moved into a new segment that the caller's
    process will own, or, for small inputs and those of strings (``BYTES``), ``call`` as it
    is, its arrays copied where they view memory that goes away with the decoding."""
    arrays = [t.data for t in call.inputs]
    total = sum(int(a.nbytes) for a in arrays)
    if total < SHARE_MIN_BYTES or any(a.dtype.kind in "OSUV" for a in arrays):
        return _owned(call)
    slots = []
    offset = 0
    for a in arrays:
        slots.append(Slot(a.dtype.str, tuple(int(d) for d in a.shape), offset))
        offset = _aligned(offset + int(a.nbytes))
    try:
        segment = Segment.create(max(offset, 1))
    except OSError:
        return _owned(call)  # no room for it: back through the pipe
    try:
        for a, slot in zip(arrays, slots, strict=True):
            dest = np.frombuffer(segment.view, a.dtype, a.size, slot.offset).reshape(a.shape)
            dest[...] = a
        del dest
    except BaseException:
        segment.release()
        raise
    segment.handed_over()
    bare = tuple(replace(t, data=np.empty((0,), t.data.dtype)) for t in call.inputs)
    return SharedCall(replace(call, inputs=bare), segment.name, segment.size, tuple(slots))


def _owned(call: InferenceCall) -> InferenceCall:
    """``call`` with arrays that own their memory (not views of a body that goes away)."""
    owned = tuple(
        t if t.data.flags.owndata else replace(t, data=t.data.copy()) for t in call.inputs
    )
    return replace(call, inputs=owned)


def open_call(decoded: InferenceCall | SharedCall) -> tuple[InferenceCall, Segment | None]:
    """On the loop: the call, its arrays mapped from their segment, and that segment, which the
    caller releases once the request is answered or refused (None: nothing shared)."""
    if isinstance(decoded, InferenceCall):
        return decoded, None
    try:
        segment = Segment.adopt(decoded.segment, decoded.size)
    except BaseException:
        discard(decoded)
        raise
    inputs = []
    for t, slot in zip(decoded.call.inputs, decoded.slots, strict=True):
        dtype = np.dtype(slot.dtype)
        count = math.prod(slot.shape)
        data = np.frombuffer(segment.view, dtype, count, slot.offset).reshape(slot.shape)
        inputs.append(replace(t, data=data))
    return replace(decoded.call, inputs=tuple(inputs)), segment


def discard(result: object) -> None:
    """Remove the segment of every ``SharedCall`` in ``result`` (itself, the items of a tuple,
    or their ``shared``): a result that will not be opened."""
    items = result if isinstance(result, tuple) else (result,)
    for item in items:
        shared = getattr(item, "shared", item)  # ``grpc_shared.SharedDecoded`` holds one
        if isinstance(shared, SharedCall) and NAME_RE.fullmatch(shared.segment):
            unlink(shared.segment)
