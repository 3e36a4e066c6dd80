"""Compact msgpack encoding of the protocol's messages.

A message is one msgpack array: ``[tag, sent_ns, field...]`` with a small integer ``tag`` per
message type (``TAGS``). Nested values are arrays too, in field order; enums travel by value;
a ``DeviceId`` is ``[worker, index]``; a tensor is ``[dtype, [dim...], raw bytes]`` (msgpack bin,
never JSON or pickle); a model profile is its ``to_json()`` map. Optional ints are nil or an int.

``decode`` checks every field's type and count and raises ``ProtocolError`` naming the first thing
that is wrong (unknown tag, wrong field count or type, bad enum value, truncated or trailing
bytes, a tensor whose bytes do not match its dtype and shape); it never raises anything else.
It decodes within limits (array and map lengths, string sizes, and for long frames the number of
objects built; see ``MAX_ELEMENTS``), so that a frame costs memory in proportion to its content.
"""

from __future__ import annotations

import math
import re
import struct
import threading
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from clockwork.core.actions import ActionResult, ActionStatus, EvictWeights, Infer, LoadWeights
from clockwork.core.errors import ClockworkError
from clockwork.core.events import DeviceInfo, ModelInfo
from clockwork.core.ids import DeviceId
from clockwork.core.profile import DeviceKind, ModelProfile
from clockwork.core.signature import ModelSignature, TensorSignature
from clockwork.transport.errors import ProtocolError
from clockwork.transport.messages import (
    TENSOR_DTYPE_KINDS,
    ActionResultMsg,
    EvictWeightsMsg,
    GetWorkerState,
    Hello,
    InferInputs,
    InferMsg,
    InferOutputs,
    LoadWeightsMsg,
    Message,
    Ping,
    Pong,
    RescanRepository,
    Role,
    Tensor,
    WorkerState,
)
from clockwork.transport.shared_segments import NAME_RE

__all__ = ["TAGS", "decode", "encode"]

#: the wire tag of each message type (never reuse a retired number)
TAGS: dict[type[Any], int] = {
    Hello: 1,
    GetWorkerState: 2,
    WorkerState: 3,
    Ping: 4,
    Pong: 5,
    RescanRepository: 6,
    LoadWeightsMsg: 10,
    InferMsg: 11,
    EvictWeightsMsg: 12,
    ActionResultMsg: 20,
}

_MAX_NDIM = 32

# Decoding limits: what one frame may make us build, whoever sent it. A msgpack byte can become
# a Python object of 30-60 bytes (an empty array, a small negative int), so a frame of nested
# empty arrays would cost 50x its length in memory and seconds of CPU. A frame longer than
# COUNT_ABOVE_BYTES is decoded with every array and map capped in length, strings in size,
# extension types refused, and what it builds (arrays and maps with their elements) counted
# against MAX_ELEMENTS as it is decoded, failing as soon as it is over. Shorter frames decode
# as they are (the hot messages without tensors are a few dozen bytes; counting would cost them
# a function call per array): msgpack caps each length at the frame's, and such a frame builds
# at most COUNT_ABOVE_BYTES objects, a few MB. Bins (tensor data) are bounded by the frame
# length only: they are the useful content.

#: the longest array or map in any message but WorkerState (batches, shapes, tensor maps)
MAX_ARRAY_LEN = 4096
#: WorkerState lists every model of a worker
MAX_LONG_ARRAY_LEN = 1 << 16
#: the longest string (model names, details, profile keys are far shorter)
MAX_STR_BYTES = 1 << 20
#: frames longer than this count the arrays, maps and elements they build
COUNT_ABOVE_BYTES = 256 * 1024
#: at most this many per frame: a few tens of MB of Python objects at worst
MAX_ELEMENTS = 1 << 18
_DTYPE_RE = re.compile(r"[<>|=][biufcSU][0-9]{1,6}")

# The hot messages (Infer, ActionResult) are decoded on a fast path that checks every field's
# type without building any error text, and falls back to the checked path (which names the
# problem) as soon as anything is off. Both accept exactly the same inputs.

#: ActionStatus by wire value (an Enum call costs about ten times a dict lookup)
_STATUSES: dict[str, ActionStatus] = {s.value: s for s in ActionStatus}
#: DeviceIds already decoded, by (worker, index): a cluster has few, and each DeviceId built
#: costs a frozen dataclass init and a hash; the ids are immutable, so sharing them is safe
_DEVICES: dict[tuple[str, int], DeviceId] = {}
_DEVICES_MAX = 4096
#: itemsize of each dtype string the checked path has accepted
_ITEMSIZES: dict[str, int] = {}
_ITEMSIZES_MAX = 256


# ---- encoding ----------------------------------------------------------------------------------


def _dev(d: DeviceId) -> list[Any]:
    return [d.worker, d.index]


def _tensor_map(tensors: Any) -> dict[str, list[Any]]:
    oob: list[bytes | memoryview] | None = getattr(_local, "oob", None)
    share: bool = getattr(_local, "share", False)
    if oob is None and not share:
        return {name: [t.dtype, list(t.shape), t.data] for name, t in tensors.items()}
    out = {}
    for name, t in tensors.items():
        if share and t.shared is not None:
            # the receiver maps the segment: [dtype, shape, segment name, offset]
            out[name] = [t.dtype, list(t.shape), *t.shared]
            continue
        if oob is None:
            out[name] = [t.dtype, list(t.shape), t.data]
            continue
        oob.append(t.data)
        out[name] = [t.dtype, list(t.shape), msgpack.ExtType(_OOB_EXT, _OOB_LEN.pack(len(t.data)))]
    return out


def _tensor_bytes(msg: Message, share: bool = False) -> int:
    if isinstance(msg, InferMsg):
        return sum(
            len(t.data)
            for i in msg.inputs
            for t in i.tensors.values()
            if not (share and t.shared is not None)
        )
    if isinstance(msg, ActionResultMsg):
        return sum(len(t.data) for o in msg.outputs for t in o.tensors.values())
    return 0


def _fields(msg: Message) -> list[Any]:
    if isinstance(msg, InferMsg):
        a = msg.action
        return [
            a.action_id,
            _dev(a.device),
            a.model,
            a.batch_size,
            list(a.request_ids),
            a.earliest_ns,
            a.latest_ns,
            a.expected_duration_ns,
            [_tensor_map(i.tensors) for i in msg.inputs],
        ]
    if isinstance(msg, ActionResultMsg):
        r = msg.result
        return [
            r.action_id,
            _dev(r.device),
            r.model,
            r.status.value,
            r.received_ns,
            r.began_ns,
            r.ended_ns,
            r.exec_ns,
            r.input_copy_ns,
            r.output_copy_ns,
            r.detail,
            [_tensor_map(o.tensors) for o in msg.outputs],
        ]
    if isinstance(msg, LoadWeightsMsg):
        lw = msg.action
        return [
            lw.action_id,
            _dev(lw.device),
            lw.model,
            lw.earliest_ns,
            lw.latest_ns,
            lw.expected_duration_ns,
        ]
    if isinstance(msg, EvictWeightsMsg):
        ev = msg.action
        return [ev.action_id, _dev(ev.device), ev.model]
    if isinstance(msg, Ping):
        return [msg.seq, msg.min_delta_ns]
    if isinstance(msg, Pong):
        return [msg.seq, msg.ping_sent_ns, msg.min_delta_ns]
    if isinstance(msg, Hello):
        return [msg.protocol_version, msg.role.value, msg.sender_id]
    if isinstance(msg, GetWorkerState | RescanRepository):
        return []
    if isinstance(msg, WorkerState):
        return [
            msg.worker,
            [
                [
                    _dev(d.device),
                    [d.kind.name, d.kind.page_size_bytes, d.kind.cache_pages],
                    list(d.resident_models),
                ]
                for d in msg.devices
            ],
            [
                [
                    m.name,
                    [p.to_json() for p in m.profiles],
                    m.default_slo_ns,
                    _enc_signature(m.signature),
                ]
                for m in msg.models
            ],
        ]
    raise ProtocolError(f"cannot encode {type(msg).__name__}: not a protocol message")


#: the first byte of a payload whose tensors' data follow the message (msgpack never starts
#: anything with 0xc1): [OOB_MARK][u32 message length][message][data of each tensor, in order]
OOB_MARK = 0xC1
#: messages with at least this much tensor data send it that way (``encode_parts``)
OOB_MIN_BYTES = 64 * 1024
#: the extension type standing for the next tensor's data, with its length
_OOB_EXT = 7
_OOB_HEAD = struct.Struct(">BI")
_OOB_LEN = struct.Struct(">Q")

# one Packer per thread (a Packer is not thread-safe): building one per message, as
# ``msgpack.packb`` does, costs as much as packing a small message
_local = threading.local()


def _packer() -> msgpack.Packer:
    packer: msgpack.Packer | None = getattr(_local, "packer", None)
    if packer is None:
        packer = _local.packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    return packer


def encode_parts(
    msg: Message, sent_ns: int | None = None, *, share: bool = False
) -> list[bytes | memoryview]:
    """The payload of ``msg`` as buffers to write one after the other: ``[encode(msg)]``, or,
    for a message with at least ``OOB_MIN_BYTES`` of tensor data, the message without that data
    (``OOB_MARK``, its length, the message) and then each tensor's data as it is, not copied: a
    large input would otherwise be copied into the frame on the controller's loop. With
    ``share`` (a worker on this host), a tensor lying in a shared segment is sent as the
    segment's name and offset instead of its data."""
    _local.share = share
    try:
        if _tensor_bytes(msg, share) < OOB_MIN_BYTES:
            return [encode(msg, sent_ns)]
        oob: list[bytes | memoryview] = []
        _local.oob = oob
        try:
            head = encode(msg, sent_ns)
        finally:
            _local.oob = None
    finally:
        _local.share = False
    return [_OOB_HEAD.pack(OOB_MARK, len(head)), head, *oob]


def encode(msg: Message, sent_ns: int | None = None) -> bytes:
    """The bytes of ``msg``; ``sent_ns``, if given, replaces the message's own ``sent_ns``."""
    tag = TAGS.get(type(msg))
    if tag is None:
        raise ProtocolError(f"cannot encode {type(msg).__name__}: not a protocol message")
    stamp = msg.sent_ns if sent_ns is None else sent_ns
    packer = _packer()
    try:
        out: bytes = packer.pack([tag, stamp, *_fields(msg)])
    except ProtocolError:
        raise
    except (TypeError, ValueError, OverflowError, AttributeError) as e:
        raise ProtocolError(f"cannot encode {type(msg).__name__}: {type(e).__name__}: {e}") from e
    return out


# ---- decoding ----------------------------------------------------------------------------------


def _int(v: Any, what: str) -> int:
    if type(v) is not int:
        raise ProtocolError(f"{what}: expected an int, got {type(v).__name__}")
    return v


def _opt_int(v: Any, what: str) -> int | None:
    return None if v is None else _int(v, what)


def _str(v: Any, what: str) -> str:
    if type(v) is not str:
        raise ProtocolError(f"{what}: expected a string, got {type(v).__name__}")
    return v


def _list(v: Any, what: str, n: int | None = None) -> list[Any]:
    if type(v) is not list:
        raise ProtocolError(f"{what}: expected an array, got {type(v).__name__}")
    if n is not None and len(v) != n:
        raise ProtocolError(f"{what}: expected {n} fields, got {len(v)}")
    return v


def _dict(v: Any, what: str) -> dict[str, Any]:
    if type(v) is not dict:
        raise ProtocolError(f"{what}: expected a map, got {type(v).__name__}")
    for k in v:
        if type(k) is not str:
            raise ProtocolError(f"{what}: map key {k!r} is not a string")
    return v


def _fast_device(v: Any) -> DeviceId | None:
    """``v`` as a DeviceId, or None if it is not a valid one (the checked path says why)."""
    if type(v) is not list or len(v) != 2:
        return None
    worker, index = v
    if type(worker) is not str or type(index) is not int:
        return None
    key = (worker, index)
    device = _DEVICES.get(key)
    if device is None:
        if len(_DEVICES) >= _DEVICES_MAX:
            _DEVICES.clear()
        device = _DEVICES[key] = DeviceId(worker, index)
    return device


def _device(v: Any, what: str) -> DeviceId:
    device = _fast_device(v)
    if device is not None:
        return device
    worker, index = _list(v, what, 2)
    return DeviceId(_str(worker, f"{what}.worker"), _int(index, f"{what}.index"))


def _fast_tensor(v: Any) -> Tensor | None:
    """``v`` as a Tensor if it is valid and of a dtype accepted before, else None."""
    if type(v) is not list or len(v) != 3:
        return None
    dtype_s, shape_v, data = v
    if (
        type(shape_v) is not list
        or (type(data) is not bytes and type(data) is not memoryview)
        or len(shape_v) > _MAX_NDIM
    ):
        return None
    size = _ITEMSIZES.get(dtype_s) if type(dtype_s) is str else None
    if size is None:
        return None
    for d in shape_v:
        if type(d) is not int or d < 0:
            return None
        size *= d
    if size != len(data):
        return None
    return Tensor(dtype_s, tuple(shape_v), data)


def _tensor(v: Any, what: str) -> Tensor:
    fast = _fast_tensor(v)
    if fast is not None:
        return fast
    if type(v) is list and len(v) == 4:
        return _shared_tensor(v, what)
    dtype_v, shape_v, data = _list(v, what, 3)
    dtype_s, dtype, shape = _tensor_head(dtype_v, shape_v, what)
    if type(data) is not bytes and type(data) is not memoryview:
        raise ProtocolError(f"{what}.data: expected bytes, got {type(data).__name__}")
    expected = math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        raise ProtocolError(
            f"{what}: {len(data)} bytes of data, but dtype {dtype_s} and shape "
            f"{shape} need {expected}"
        )
    if len(_ITEMSIZES) < _ITEMSIZES_MAX:
        _ITEMSIZES[dtype_s] = dtype.itemsize
    return Tensor(dtype_s, shape, data)


def _tensor_head(
    dtype_s: Any, shape_v: Any, what: str
) -> tuple[str, np.dtype[Any], tuple[int, ...]]:
    dtype_s = _str(dtype_s, f"{what}.dtype")
    if not _DTYPE_RE.fullmatch(dtype_s):
        raise ProtocolError(f"{what}.dtype: {dtype_s!r} is not a plain numpy dtype string")
    try:
        dtype = np.dtype(dtype_s)
    except (TypeError, ValueError) as e:
        raise ProtocolError(f"{what}.dtype: {dtype_s!r} is not a numpy dtype ({e})") from e
    if dtype.kind not in TENSOR_DTYPE_KINDS or dtype.itemsize <= 0:
        raise ProtocolError(f"{what}.dtype: {dtype_s!r} is not a plain numeric or string type")
    shape_l = _list(shape_v, f"{what}.shape")
    if len(shape_l) > _MAX_NDIM:
        raise ProtocolError(f"{what}.shape: {len(shape_l)} dimensions (at most {_MAX_NDIM})")
    shape = tuple(_int(d, f"{what}.shape") for d in shape_l)
    if any(d < 0 for d in shape):
        raise ProtocolError(f"{what}.shape: negative dimension in {shape}")
    return dtype_s, dtype, shape


def _shared_tensor(v: list[Any], what: str) -> Tensor:
    """``[dtype, shape, segment name, offset]``: a tensor in a shared segment (mapped, and
    checked against the segment's size, only when the receiver reads it)."""
    dtype_s, dtype, shape = _tensor_head(v[0], v[1], what)
    name = _str(v[2], f"{what}.segment")
    if not NAME_RE.fullmatch(name):
        raise ProtocolError(f"{what}.segment: {name[:40]!r} is not an input segment's name")
    offset = _int(v[3], f"{what}.offset")
    if offset < 0:
        raise ProtocolError(f"{what}.offset: negative ({offset})")
    if math.prod(shape) * dtype.itemsize > MAX_SHARED_TENSOR_BYTES:
        raise ProtocolError(f"{what}: shape {shape} is over {MAX_SHARED_TENSOR_BYTES} bytes")
    return Tensor(dtype_s, shape, b"", (name, offset))


#: the largest tensor a shared segment may hold (a worker maps no more for one tensor)
MAX_SHARED_TENSOR_BYTES = 1 << 32


def _fast_tensors(v: Any) -> dict[str, Tensor] | None:
    if type(v) is not dict:
        return None
    out = {}
    for name, t in v.items():
        tensor = _fast_tensor(t)
        if tensor is None or type(name) is not str:
            return None
        out[name] = tensor
    return out


def _tensors(v: Any, what: str) -> dict[str, Tensor]:
    fast = _fast_tensors(v)
    if fast is not None:
        return fast
    return {name: _tensor(t, f"{what}[{name!r}]") for name, t in _dict(v, what).items()}


def _dec_hello(f: list[Any]) -> Hello:
    version, role, sender = f[2:]
    try:
        role_e = Role(role)
    except ValueError as e:
        raise ProtocolError(f"Hello.role: bad role value {role!r}") from e
    return Hello(
        f[1], _int(version, "Hello.protocol_version"), role_e, _str(sender, "Hello.sender_id")
    )


def _dec_get_state(f: list[Any]) -> GetWorkerState:
    return GetWorkerState(f[1])


def _dec_rescan(f: list[Any]) -> RescanRepository:
    return RescanRepository(f[1])


def _dec_device_info(v: Any, what: str) -> DeviceInfo:
    dev, kind, resident = _list(v, what, 3)
    kname, page, pages = _list(kind, f"{what}.kind", 3)
    try:
        kind_v = DeviceKind(
            _str(kname, f"{what}.kind.name"),
            _int(page, f"{what}.kind.page_size_bytes"),
            _int(pages, f"{what}.kind.cache_pages"),
        )
    except ProtocolError:
        raise
    except ClockworkError as e:
        raise ProtocolError(f"{what}.kind: {e}") from e
    return DeviceInfo(
        _device(dev, f"{what}.device"),
        kind_v,
        tuple(
            _str(m, f"{what}.resident_models") for m in _list(resident, f"{what}.resident_models")
        ),
    )


def _enc_tensor_sigs(ts: tuple[TensorSignature, ...]) -> list[Any]:
    # the value range, where there is one, as a 4th element (older peers send 3)
    return [
        [t.name, t.datatype, list(t.shape)]
        + ([list(t.value_range)] if t.value_range is not None else [])
        for t in ts
    ]


def _enc_signature(sig: ModelSignature | None) -> list[Any] | None:
    if sig is None:
        return None
    return [
        _enc_tensor_sigs(sig.inputs),
        _enc_tensor_sigs(sig.outputs),
        sig.max_batch_size,
        list(sig.versions),
        sig.platform,
    ]


def _dec_tensor_sigs(v: Any, what: str) -> tuple[TensorSignature, ...]:
    out = []
    for i, t in enumerate(_list(v, what)):
        fields = _list(t, f"{what}[{i}]")
        if len(fields) not in (3, 4):
            raise ProtocolError(f"{what}[{i}]: expected 3 or 4 items, got {len(fields)}")
        name, datatype, shape = fields[:3]
        value_range = None
        if len(fields) == 4:
            low, high = _list(fields[3], f"{what}[{i}].value_range", 2)
            value_range = (
                _int(low, f"{what}[{i}].value_range"),
                _int(high, f"{what}[{i}].value_range"),
            )
        out.append(
            TensorSignature(
                _str(name, f"{what}[{i}].name"),
                _str(datatype, f"{what}[{i}].datatype"),
                tuple(_int(d, f"{what}[{i}].shape") for d in _list(shape, f"{what}[{i}].shape")),
                value_range,
            )
        )
    return tuple(out)


def _dec_signature(v: Any, what: str) -> ModelSignature | None:
    if v is None:
        return None
    inputs, outputs, max_batch, versions, platform = _list(v, what, 5)
    try:
        return ModelSignature(
            _dec_tensor_sigs(inputs, f"{what}.inputs"),
            _dec_tensor_sigs(outputs, f"{what}.outputs"),
            _int(max_batch, f"{what}.max_batch_size"),
            tuple(_int(x, f"{what}.versions") for x in _list(versions, f"{what}.versions")),
            _str(platform, f"{what}.platform"),
        )
    except ProtocolError:
        raise
    except ClockworkError as e:
        raise ProtocolError(f"{what}: {e}") from e


def _dec_model_info(v: Any, what: str) -> ModelInfo:
    name, profiles, slo, signature = _list(v, what, 4)
    profs = []
    for i, p in enumerate(_list(profiles, f"{what}.profiles")):
        try:
            profs.append(
                ModelProfile.from_json(
                    _dict(p, f"{what}.profiles[{i}]"), source=f"{what}.profiles[{i}]"
                )
            )
        except ProtocolError:
            raise
        except (ClockworkError, OverflowError) as e:
            raise ProtocolError(f"{what}.profiles[{i}]: {e}") from e
    return ModelInfo(
        _str(name, f"{what}.name"),
        tuple(profs),
        _opt_int(slo, f"{what}.default_slo_ns"),
        _dec_signature(signature, f"{what}.signature"),
    )


def _dec_worker_state(f: list[Any]) -> WorkerState:
    worker, devices, models = f[2:]
    return WorkerState(
        f[1],
        _str(worker, "WorkerState.worker"),
        tuple(
            _dec_device_info(d, f"WorkerState.devices[{i}]")
            for i, d in enumerate(_list(devices, "WorkerState.devices"))
        ),
        tuple(
            _dec_model_info(m, f"WorkerState.models[{i}]")
            for i, m in enumerate(_list(models, "WorkerState.models"))
        ),
    )


def _dec_ping(f: list[Any]) -> Ping:
    seq, delta = f[2:]
    return Ping(f[1], _int(seq, "Ping.seq"), _opt_int(delta, "Ping.min_delta_ns"))


def _dec_pong(f: list[Any]) -> Pong:
    seq, ping_sent, delta = f[2:]
    return Pong(
        f[1],
        _int(seq, "Pong.seq"),
        _int(ping_sent, "Pong.ping_sent_ns"),
        _opt_int(delta, "Pong.min_delta_ns"),
    )


def _dec_load(f: list[Any]) -> LoadWeightsMsg:
    aid, dev, model, earliest, latest, expected = f[2:]
    w = "LoadWeights"
    return LoadWeightsMsg(
        f[1],
        LoadWeights(
            _int(aid, f"{w}.action_id"),
            _device(dev, f"{w}.device"),
            _str(model, f"{w}.model"),
            _int(earliest, f"{w}.earliest_ns"),
            _int(latest, f"{w}.latest_ns"),
            _int(expected, f"{w}.expected_duration_ns"),
        ),
    )


def _dec_infer(f: list[Any]) -> InferMsg:
    sent, aid, dev, model, batch, req_ids, earliest, latest, expected, inputs = f[1:]
    device = _fast_device(dev)
    if (
        device is not None
        and type(aid) is int
        and type(model) is str
        and type(batch) is int
        and type(req_ids) is list
        and type(earliest) is int
        and type(latest) is int
        and type(expected) is int
        and type(inputs) is list
        and all(type(r) is int for r in req_ids)
    ):
        ins = []
        for i in inputs:
            tensors = _fast_tensors(i)
            if tensors is None:
                return _dec_infer_checked(f)
            ins.append(InferInputs(tensors))
        return InferMsg(
            sent,
            Infer(aid, device, model, batch, tuple(req_ids), earliest, latest, expected),
            tuple(ins),
        )
    return _dec_infer_checked(f)


def _dec_infer_checked(f: list[Any]) -> InferMsg:
    aid, dev, model, batch, req_ids, earliest, latest, expected, inputs = f[2:]
    w = "Infer"
    action = Infer(
        _int(aid, f"{w}.action_id"),
        _device(dev, f"{w}.device"),
        _str(model, f"{w}.model"),
        _int(batch, f"{w}.batch_size"),
        tuple(_int(r, f"{w}.request_ids") for r in _list(req_ids, f"{w}.request_ids")),
        _int(earliest, f"{w}.earliest_ns"),
        _int(latest, f"{w}.latest_ns"),
        _int(expected, f"{w}.expected_duration_ns"),
    )
    return InferMsg(
        f[1],
        action,
        tuple(
            InferInputs(_tensors(i, f"{w}.inputs[{n}]"))
            for n, i in enumerate(_list(inputs, f"{w}.inputs"))
        ),
    )


def _dec_evict(f: list[Any]) -> EvictWeightsMsg:
    aid, dev, model = f[2:]
    w = "EvictWeights"
    return EvictWeightsMsg(
        f[1],
        EvictWeights(
            _int(aid, f"{w}.action_id"), _device(dev, f"{w}.device"), _str(model, f"{w}.model")
        ),
    )


def _dec_result(f: list[Any]) -> ActionResultMsg:
    (
        sent,
        aid,
        dev,
        model,
        status,
        received,
        began,
        ended,
        exec_ns,
        in_copy,
        out_copy,
        detail,
        outputs,
    ) = f[1:]
    device = _fast_device(dev)
    status_e = _STATUSES.get(status) if type(status) is str else None
    if (
        device is not None
        and status_e is not None
        and type(aid) is int
        and type(model) is str
        and type(received) is int
        and type(began) is int
        and type(ended) is int
        and type(exec_ns) is int
        and type(in_copy) is int
        and type(out_copy) is int
        and type(detail) is str
        and type(outputs) is list
    ):
        outs = []
        for o in outputs:
            tensors = _fast_tensors(o)
            if tensors is None:
                return _dec_result_checked(f)
            outs.append(InferOutputs(tensors))
        return ActionResultMsg(
            sent,
            ActionResult(
                aid,
                device,
                model,
                status_e,
                received,
                began,
                ended,
                exec_ns,
                in_copy,
                out_copy,
                detail,
            ),
            tuple(outs),
        )
    return _dec_result_checked(f)


def _dec_result_checked(f: list[Any]) -> ActionResultMsg:
    (
        aid,
        dev,
        model,
        status,
        received,
        began,
        ended,
        exec_ns,
        in_copy,
        out_copy,
        detail,
        outputs,
    ) = f[2:]
    w = "ActionResult"
    try:
        status_e = ActionStatus(status)
    except ValueError as e:
        raise ProtocolError(f"{w}.status: bad status value {status!r}") from e
    result = ActionResult(
        _int(aid, f"{w}.action_id"),
        _device(dev, f"{w}.device"),
        _str(model, f"{w}.model"),
        status_e,
        _int(received, f"{w}.received_ns"),
        _int(began, f"{w}.began_ns"),
        _int(ended, f"{w}.ended_ns"),
        _int(exec_ns, f"{w}.exec_ns"),
        _int(in_copy, f"{w}.input_copy_ns"),
        _int(out_copy, f"{w}.output_copy_ns"),
        _str(detail, f"{w}.detail"),
    )
    return ActionResultMsg(
        f[1],
        result,
        tuple(
            InferOutputs(_tensors(o, f"{w}.outputs[{n}]"))
            for n, o in enumerate(_list(outputs, f"{w}.outputs"))
        ),
    )


# tag -> (name, number of fields after tag and sent_ns, decoder)
_DECODERS: dict[int, tuple[str, int, Callable[[list[Any]], Message]]] = {
    1: ("Hello", 3, _dec_hello),
    2: ("GetWorkerState", 0, _dec_get_state),
    3: ("WorkerState", 3, _dec_worker_state),
    4: ("Ping", 2, _dec_ping),
    5: ("Pong", 3, _dec_pong),
    6: ("RescanRepository", 0, _dec_rescan),
    10: ("LoadWeights", 6, _dec_load),
    11: ("Infer", 9, _dec_infer),
    12: ("EvictWeights", 3, _dec_evict),
    20: ("ActionResult", 12, _dec_result),
}
assert {TAGS[t] for t in TAGS} == set(_DECODERS)
_WORKER_STATE_TAG = TAGS[WorkerState]


class _Budget:
    """The elements a large frame may still build (``list_hook``/``object_hook`` count them)."""

    __slots__ = ("left",)

    def __init__(self, left: int) -> None:
        self.left = left

    def list_hook(self, v: list[Any]) -> list[Any]:
        self.left -= len(v) + 1
        if self.left < 0:
            raise _OverBudgetError
        return v

    def map_hook(self, v: dict[str, Any]) -> dict[str, Any]:
        self.left -= len(v) + 1
        if self.left < 0:
            raise _OverBudgetError
        return v


class _OverBudgetError(Exception):
    pass


def _unpack_counted(data: bytes | bytearray | memoryview) -> Any:
    """The msgpack object in a long frame, within the limits (see ``MAX_ELEMENTS``)."""
    # the tag is the second byte of every message ([tag, ...] as a fixarray): only WorkerState
    # has a long array (its models)
    max_len = MAX_LONG_ARRAY_LEN if data[1] == _WORKER_STATE_TAG else MAX_ARRAY_LEN
    budget = _Budget(MAX_ELEMENTS)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=MAX_STR_BYTES,
            max_array_len=max_len,
            max_map_len=max_len,
            max_ext_len=0,
            list_hook=budget.list_hook,
            object_hook=budget.map_hook,
        )
    except _OverBudgetError:
        raise ProtocolError(
            f"message of {len(data)} bytes builds over {MAX_ELEMENTS} arrays, maps and "
            "elements; refused (no valid message needs that many)"
        ) from None


def _unpack_oob(data: bytes | bytearray | memoryview) -> Any:
    """The message of an ``encode_parts`` payload, its tensors' data views of ``data``."""
    if len(data) < _OOB_HEAD.size:
        raise ProtocolError(f"undecodable out-of-band frame: {len(data)} bytes, no head")
    _, n = _OOB_HEAD.unpack_from(data, 0)
    view = memoryview(data)
    end = _OOB_HEAD.size + n
    if n > COUNT_ABOVE_BYTES or end > len(data):
        raise ProtocolError(f"undecodable out-of-band frame: a message of {n} bytes in {len(data)}")
    offset = end

    def data_of(code: int, payload: bytes) -> memoryview:
        nonlocal offset
        if code != _OOB_EXT or len(payload) != _OOB_LEN.size:
            raise ProtocolError(f"extension type {code} is not part of the protocol")
        (length,) = _OOB_LEN.unpack(payload)
        if offset + length > len(view):
            raise ProtocolError(
                f"undecodable out-of-band frame: {length} bytes of data past its end"
            )
        out = view[offset : offset + length]
        offset += length
        return out

    obj = msgpack.unpackb(
        view[_OOB_HEAD.size : end],
        raw=False,
        use_list=True,
        strict_map_key=True,
        ext_hook=data_of,
    )
    if offset != len(view):
        raise ProtocolError(f"undecodable out-of-band frame: {len(view) - offset} bytes left over")
    return obj


def decode(data: bytes | bytearray | memoryview) -> Message:
    """The message in ``data``; ``ProtocolError`` (naming the problem) if there is none."""
    try:
        if len(data) and data[0] == OOB_MARK:
            obj = _unpack_oob(data)
        elif len(data) > COUNT_ABOVE_BYTES:
            obj = _unpack_counted(data)
        else:
            # msgpack caps every length at the frame's: a few MB of objects at most
            obj = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except ProtocolError:
        raise
    except Exception as e:  # msgpack raises several types for malformed input
        raise ProtocolError(
            f"undecodable message ({len(data)} bytes): {type(e).__name__}: {e}"
        ) from e
    if type(obj) is not list or len(obj) < 2:
        raise ProtocolError(
            f"a message is an array [tag, sent_ns, ...], got {type(obj).__name__}"
            + (f" of {len(obj)}" if isinstance(obj, list) else "")
        )
    tag = _int(obj[0], "message tag")
    entry = _DECODERS.get(tag)
    if entry is None:
        raise ProtocolError(f"unknown message tag {tag}")
    name, n_fields, dec = entry
    if len(obj) != n_fields + 2:
        raise ProtocolError(
            f"{name}: expected {n_fields} fields after tag and sent_ns, got {len(obj) - 2}"
        )
    if type(obj[1]) is not int:
        _int(obj[1], f"{name}.sent_ns")
    try:
        return dec(obj)
    except ProtocolError:
        raise
    except (
        ClockworkError,
        KeyError,
        IndexError,
        TypeError,
        ValueError,
        AttributeError,
        OverflowError,
    ) as e:  # pragma: no cover - backstop; the checks above should see all
        raise ProtocolError(f"malformed {name}: {type(e).__name__}: {e}") from e
