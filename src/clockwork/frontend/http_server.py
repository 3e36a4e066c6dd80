"""The HTTP/REST front door: KServe v2 (Open Inference Protocol) with Triton's extensions.

Each handler decodes a request into ``clockwork.frontend.api`` values, calls one ``ModelServer``
method and encodes what it returns. A ``FrontendError`` becomes its kind's status with
``{"error", "reason"}``; anything else a handler raises is a server bug (500, logged). No
malformed request may produce a 5xx: every malformed body, wrong type or inconsistent binary
layout is a 400 naming the field or tensor (503 and 429 are the model server's refusals).

Triton's extensions implemented here, not in the ``ModelServer``: binary tensor data (inputs and
outputs after the JSON header, ``Inference-Header-Content-Length``) and classification (top-k
of an output as ``"value:index"`` strings). Request bodies may be gzip or deflate encoded;
aiohttp decodes them before ``max_body_bytes`` is applied, so the bound holds for the decoded
size too.

The served OpenAPI document (``openapi.json`` next to this module) describes every route.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from clockwork.core.signature import TensorSignature
from clockwork.frontend.api import (
    EXTENSIONS,
    DurationStat,
    ErrorKind,
    FrontendError,
    InferenceCall,
    InferenceResult,
    ModelMetadata,
    ModelServer,
    ModelStatistics,
    Parameter,
    RequestedOutput,
    Tensor,
)
from clockwork.frontend.auth import Access, FrontDoorSecurity, http_middleware
from clockwork.frontend.decode_pool import UNKNOWN_COST, DecodePool
from clockwork.frontend.http_door import (
    FIRST_BYTE_NS,
    DoorRunner,
    door_middleware,
    refused_mid_body,
)
from clockwork.frontend.inflate import inflate, normalise_encoding
from clockwork.frontend.json_request import loads_request
from clockwork.frontend.limits import Door
from clockwork.frontend.own_timeout import END_BYTES, MAX_HEADER_BYTES, UNKNOWN
from clockwork.frontend.pacing import Pacer, on_a_thread
from clockwork.frontend.parameters import (
    MAX_INT64,
    int_param,
    invalid,
    refuse_shared_memory,
    timeout_param,
)
from clockwork.frontend.protocol_log import protocol_logger
from clockwork.frontend.reply_cost import ReplyCost
from clockwork.frontend.shared_body import AttachedBody, SharedBody, body_buffer
from clockwork.frontend.shared_inputs import SHARE_MIN_BYTES, SharedCall, open_call, share_call
from clockwork.frontend.stated_samples import stated_call
from clockwork.frontend.tensor_codec import bad, classify, from_json, from_raw, to_json_flat, to_raw
from clockwork.frontend.tls import server_ssl_context
from clockwork.transport.shared_segments import Segment

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "HEADER_LENGTH",
    "OutputPlan",
    "decode_infer_request",
    "encode_infer_response",
    "encode_model_metadata",
    "encode_statistics",
    "make_app",
    "start_http",
]

DEFAULT_MAX_BODY_BYTES = 64 * 2**20

HEADER_LENGTH = "Inference-Header-Content-Length"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Triton carries these as uint64/int64; bounding them keeps every later encoder (msgpack, protobuf)
# from failing on a client's huge integer

# what aiohttp decodes itself (br and zstd when their packages are installed, else aiohttp
# refuses them); anything else would reach the JSON parser still encoded
_ENCODINGS = frozenset({"identity", "gzip", "deflate", "br", "zstd"})

_log = logging.getLogger(__name__)

_ABSENT = object()

# one encoder for every response: json.dumps builds a new encoder per call with non-default options
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _BrokenBodyError(FrontendError):
    """The body stream failed; the connection cannot carry another request."""


# a head check that never runs (a body of this size is over every limit)
_NEVER: Final = 1 << 62


class _RefusedMidBodyError(FrontendError):
    """A refusal given before the body was all read: the rest is drained, then the connection
    closes (``http_door.refused_mid_body``)."""

    def __init__(self, refusal: FrontendError) -> None:
        super().__init__(refusal.kind, refusal.message, refusal.reason)


# a check of a body's head, once its first bytes are in: it raises the call's refusal
HeadCheck = tuple[int, Callable[[bytearray | SharedBody], None]]


def _json_response(payload: object, status: int = 200) -> web.Response:
    return web.Response(
        body=_encode(payload).encode(), status=status, content_type="application/json"
    )


def _error_response(
    status: int, message: str, reason: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    resp = _json_response({"error": message, "reason": reason}, status)
    if headers:
        resp.headers.update(headers)
    if status in (429, 503):
        # clients back off a little and retry; the scheduler's state changes within a second
        resp.headers["Retry-After"] = "1"
    return resp


# --- request decoding ------------------------------------------------------------------------


def _loads(body: bytes | bytearray | memoryview, what: str) -> Any:
    try:
        # orjson parses a JSON image 3-4x faster than the standard library; what it refuses
        # (or reads differently: NaN, integers beyond 64 bits) goes to the standard parser,
        # which decides and words the error
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body if not isinstance(body, memoryview) else bytes(body))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are both
        raise invalid(f"{what} is not valid JSON: {e}") from None


def _parameters(obj: Mapping[str, object], where: str) -> dict[str, Parameter]:
    """``obj["parameters"]``, an object whose values are all scalars; absent means empty (an
    explicit null is refused, as the schema says object)."""
    raw = obj.get("parameters", _ABSENT)
    if raw is _ABSENT:
        return {}
    if not isinstance(raw, dict):
        raise invalid(f"{where}: 'parameters' must be an object, got {type(raw).__name__}")
    for key, value in raw.items():
        if not isinstance(value, bool | int | float | str):
            raise invalid(
                f"{where}: parameter {key!r} must be a boolean, number or string, "
                f"got {type(value).__name__}"
            )
    refuse_shared_memory(raw, where)
    return raw


def _bool_param(params: Mapping[str, Parameter], key: str, where: str) -> bool | None:
    value = params.get(key)
    if value is None or type(value) is bool:
        return value
    raise invalid(f"{where}: parameter {key!r} must be true or false, got {value!r}")


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """How to encode each output: binary or JSON, and top-k classification (0: none)."""

    binary_default: bool
    binary: Mapping[str, bool]
    classification: Mapping[str, int]


def _decode_inputs(raw_inputs: object, binary: memoryview) -> tuple[Tensor, ...]:
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise invalid("'inputs' must be a non-empty list of tensors")
    tensors: list[Tensor] = []
    seen: set[str] = set()
    offset = 0
    for i, spec in enumerate(raw_inputs):
        if not isinstance(spec, dict):
            raise invalid(f"inputs[{i}] must be an object, got {type(spec).__name__}")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"inputs[{i}]: 'name' must be a non-empty string")
        if name in seen:
            raise bad(name, "appears more than once in inputs")
        seen.add(name)
        datatype = spec.get("datatype")
        if not isinstance(datatype, str):
            raise bad(name, "'datatype' must be a string")
        shape = spec.get("shape")
        if not isinstance(shape, list):
            raise bad(name, "'shape' must be a list of integers")
        params = _parameters(spec, f"input {name!r}")
        size = params.get("binary_data_size")
        try:
            if size is not None:
                if "data" in spec:
                    raise bad(name, "has both 'data' and parameters.binary_data_size")
                if type(size) is not int or not 0 <= size <= MAX_INT64:
                    raise bad(name, f"binary_data_size must be an integer >= 0, got {size!r}")
                if offset + size > len(binary):
                    raise bad(
                        name,
                        f"binary_data_size {size} runs past the end of the body "
                        f"({len(binary) - offset} bytes of binary data left)",
                    )
                data = from_raw(datatype, shape, binary[offset : offset + size], name)
                offset += size
                params = {k: v for k, v in params.items() if k != "binary_data_size"}
            elif "data" in spec:
                data = from_json(datatype, shape, spec["data"], name)
            else:
                raise bad(name, "has neither 'data' nor parameters.binary_data_size")
        except (ValueError, OverflowError, TypeError, MemoryError) as e:
            # numpy's own limits (e.g. a zero-sized shape with dimensions past intp) are the
            # client's mistake, not the server's
            raise bad(name, f"cannot be decoded: {e}") from None
        tensors.append(Tensor(name, datatype, data, params))
    if offset != len(binary):
        raise invalid(
            f"{len(binary)} bytes of binary data follow the JSON header, but the "
            f"inputs' binary_data_size add up to {offset}"
        )
    return tuple(tensors)


def _decode_outputs(
    raw_outputs: object,
) -> tuple[tuple[RequestedOutput, ...], dict[str, bool], dict[str, int]]:
    if not isinstance(raw_outputs, list):
        raise invalid("'outputs' must be a list of requested outputs")
    outputs: list[RequestedOutput] = []
    binary: dict[str, bool] = {}
    classification: dict[str, int] = {}
    for i, spec in enumerate(raw_outputs):
        if not isinstance(spec, dict):
            raise invalid(f"outputs[{i}] must be an object, got {type(spec).__name__}")
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise invalid(f"outputs[{i}]: 'name' must be a non-empty string")
        if any(o.name == name for o in outputs):
            raise invalid(f"output {name!r} is requested more than once")
        where = f"output {name!r}"
        params = _parameters(spec, where)
        as_binary = _bool_param(params, "binary_data", where)
        if as_binary is not None:
            binary[name] = as_binary
        count = int_param(params, "classification", where)
        if count:
            classification[name] = count
        outputs.append(RequestedOutput(name, params))
    return tuple(outputs), binary, classification


def decode_infer_request(
    body: bytes | bytearray | memoryview, header_length: str | None, model: str, version: str
) -> tuple[InferenceCall, OutputPlan]:
    """An inference call from an HTTP body (JSON, or a JSON header of ``header_length`` bytes
    followed by binary tensors) and how its outputs are to be encoded."""
    if header_length is None:
        json_part, binary = body, memoryview(b"")
    else:
        try:
            n = int(header_length)
        except ValueError:
            raise invalid(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        if not 0 <= n <= len(body):
            raise invalid(f"{HEADER_LENGTH} is {n}, but the body has {len(body)} bytes")
        json_part, binary = body[:n], memoryview(body)[n:]
    req = loads_request(json_part)
    if req is None:
        req = _loads(json_part, "the inference request")
    if not isinstance(req, dict):
        raise invalid("the inference request must be a JSON object")
    request_id = req.get("id", "")
    if not isinstance(request_id, str):
        raise invalid("'id' must be a string")
    params = _parameters(req, "request")
    timeout_us = timeout_param(params, "request")
    priority = int_param(params, "priority", "request") or 0
    binary_default = _bool_param(params, "binary_data_output", "request") or False
    inputs = _decode_inputs(req.get("inputs"), binary)
    outputs, binary_outputs, classification = _decode_outputs(req.get("outputs", []))
    if "binary_data_output" in params:
        # a transport detail of this protocol; the model server never needs it
        params = {k: v for k, v in params.items() if k != "binary_data_output"}
    call = InferenceCall(
        model=model,
        inputs=inputs,
        version=version,
        id=request_id,
        outputs=outputs,
        # Triton reads a timeout of 0 as "no timeout given", not as an already-past deadline
        timeout_us=timeout_us or None,
        priority=priority,
        parameters=params,
    )
    return call, OutputPlan(binary_default, binary_outputs, classification)


def _head_bytes(header_length: str | None) -> int:
    """How much of a body tells its timeout and samples, if any does (``own_timeout``,
    ``stated_samples``): a binary body's JSON header, or an all-JSON body's first KiBs."""
    if header_length is None:
        return END_BYTES
    try:
        n = int(header_length)
    except ValueError:
        return _NEVER
    return n if 0 < n <= MAX_HEADER_BYTES else _NEVER


def _decode_cost(size_bytes: int, encoding: str, header_length: str | None) -> int:
    """What decoding a body of ``size_bytes`` costs, in bytes of JSON to parse: an encoded
    body's is unknown until inflated (so it counts as large), a binary body's is its JSON
    header's."""
    if encoding != "identity":
        return UNKNOWN_COST
    if header_length is not None:
        try:
            return max(0, min(size_bytes, int(header_length)))
        except ValueError:
            return 0  # refused by the decoder, in place, at once
    return size_bytes


def decode_http_infer(
    body: bytes | bytearray | memoryview,
    encoding: str,
    header_length: str | None,
    model: str,
    version: str,
    max_body_bytes: int,
    max_input_elements: int | None = None,
) -> tuple[InferenceCall, OutputPlan]:
    """``decode_infer_request`` of ``body`` as sent (inflated first, with the bound): what the
    decode pool runs. An input of more than ``max_input_elements`` is a 400 here, before its
    array is sent back."""
    call, plan = decode_infer_request(
        inflate(body, encoding, max_body_bytes), header_length, model, version
    )
    if max_input_elements is not None:
        for t in call.inputs:
            if t.data.size > max_input_elements:
                raise invalid(
                    f"input {t.name!r} has {t.data.size} elements; model {model!r} takes at "
                    f"most {max_input_elements} (its largest input, times its max_batch_size)"
                )
    return call, plan


def decode_shared_http_infer(
    name: str,
    size: int,
    encoding: str,
    header_length: str | None,
    model: str,
    version: str,
    max_body_bytes: int,
    max_input_elements: int | None,
) -> tuple[InferenceCall | SharedCall, OutputPlan]:
    """``decode_http_infer`` of a body in shared memory (``SharedBody``), read in place; the
    inputs come back in a segment of their own (``share_call``: the body's goes away after
    this)."""
    body = AttachedBody(name, size)
    try:
        # the decoded call (views of the body) is gone with the callee's frame before the
        # mapping is let go
        return decode_http_infer_shared(
            body.view, encoding, header_length, model, version, max_body_bytes, max_input_elements
        )
    finally:
        body.close()


def decode_http_infer_shared(
    body: bytes | bytearray | memoryview,
    encoding: str,
    header_length: str | None,
    model: str,
    version: str,
    max_body_bytes: int,
    max_input_elements: int | None,
) -> tuple[InferenceCall | SharedCall, OutputPlan]:
    """``decode_http_infer`` in a decode process, its inputs coming back in a shared segment
    (``share_call``)."""
    call, plan = decode_http_infer(
        body, encoding, header_length, model, version, max_body_bytes, max_input_elements
    )
    return share_call(call), plan


def decode_json_object(
    body: bytes | bytearray, encoding: str, max_body_bytes: int, what: str
) -> Any:
    """An optional JSON object body (empty means ``{}``), inflated first."""
    text = bytes(inflate(body, encoding, max_body_bytes))
    if not text.strip():
        return {}
    obj = _loads(text, what)
    if not isinstance(obj, dict):
        raise invalid(f"{what} must be a JSON object")
    return obj


# --- response encoding -----------------------------------------------------------------------


def encode_infer_response(result: InferenceResult, plan: OutputPlan) -> web.Response:
    return _infer_response(*encode_infer_body(result, plan))


def _infer_response(body: bytes, header_length: int | None) -> web.Response:
    if header_length is None:
        return web.Response(body=body, content_type="application/json")
    return web.Response(
        body=body,
        headers={HEADER_LENGTH: str(header_length), "Content-Type": "application/octet-stream"},
    )


def encoding_cost(result: InferenceResult, plan: OutputPlan) -> int:
    """Bytes of output data that encoding ``result`` turns into JSON text (binary outputs are
    copied, not encoded: they cost next to nothing)."""
    return sum(
        int(t.data.nbytes)
        for t in result.outputs
        if t.name in plan.classification or not plan.binary.get(t.name, plan.binary_default)
    )


def encode_infer_body(result: InferenceResult, plan: OutputPlan) -> tuple[bytes, int | None]:
    """The answer's body and, when binary outputs follow its JSON header, that header's
    length (what the decode pool runs for a large answer)."""
    outputs: list[dict[str, object]] = []
    chunks: list[bytes] = []
    for t in result.outputs:
        data, datatype = t.data, t.datatype
        count = plan.classification.get(t.name)
        if count:
            data, datatype = classify(t, count), "BYTES"
        entry: dict[str, object] = {
            "name": t.name,
            "datatype": datatype,
            "shape": [int(d) for d in data.shape],
        }
        if plan.binary.get(t.name, plan.binary_default):
            raw = to_raw(data)
            chunks.append(raw)
            entry["parameters"] = {**t.parameters, "binary_data_size": len(raw)}
        else:
            if t.parameters:
                entry["parameters"] = dict(t.parameters)
            entry["data"] = to_json_flat(data)
        outputs.append(entry)
    payload: dict[str, object] = {
        "model_name": result.model,
        "model_version": result.version,
        "id": result.id,
    }
    if result.parameters:
        payload["parameters"] = dict(result.parameters)
    payload["outputs"] = outputs
    # orjson writes the answer's floats several times faster than the standard encoder, and
    # numeric data straight from its array (``to_json_flat``)
    header = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _tensor_metadata(t: TensorSignature, batched: bool) -> dict[str, object]:
    return {
        "name": t.name,
        "datatype": t.datatype,
        "shape": [-1, *t.shape] if batched else list(t.shape),
    }


def encode_model_metadata(meta: ModelMetadata) -> dict[str, object]:
    batched = meta.max_batch_size >= 1
    return {
        "name": meta.name,
        "versions": list(meta.versions),
        "platform": meta.platform,
        "inputs": [_tensor_metadata(t, batched) for t in meta.inputs],
        "outputs": [_tensor_metadata(t, batched) for t in meta.outputs],
    }


def _duration(d: DurationStat) -> dict[str, int]:
    return {"count": d.count, "ns": d.ns}


_NOT_MEASURED = {"count": 0, "ns": 0}


def encode_statistics(stats: Sequence[ModelStatistics]) -> dict[str, object]:
    # compute_input/compute_output per batch size and the response cache are not measured
    # separately by this server; Triton's clients expect the fields, so they read zero
    return {
        "model_stats": [
            {
                "name": s.name,
                "version": s.version,
                "last_inference": s.last_inference_ms,
                "inference_count": s.inference_count,
                "execution_count": s.execution_count,
                "inference_stats": {
                    "success": _duration(s.success),
                    "fail": _duration(s.fail),
                    "queue": _duration(s.queue),
                    "compute_input": _duration(s.compute_input),
                    "compute_infer": _duration(s.compute_infer),
                    "compute_output": _duration(s.compute_output),
                    "cache_hit": _NOT_MEASURED,
                    "cache_miss": _NOT_MEASURED,
                },
                "batch_stats": [
                    {
                        "batch_size": size,
                        "compute_input": _NOT_MEASURED,
                        "compute_infer": _duration(d),
                        "compute_output": _NOT_MEASURED,
                    }
                    for size, d in sorted(s.batch_stats.items())
                ],
            }
            for s in stats
        ]
    }


# --- the application -------------------------------------------------------------------------


def _load_openapi() -> bytes:
    return resources.files("clockwork.frontend").joinpath("openapi.json").read_bytes()


class _Routes:
    """The handlers, bound to one model server."""

    def __init__(
        self, server: ModelServer, max_body_bytes: int, decoder: DecodePool, inflate_bodies: bool
    ) -> None:
        self.server = server
        self.max_body_bytes = max_body_bytes
        self.decoder = decoder
        # whether bodies arrive as sent (aiohttp's own decompression off: ``start_http``), to
        # be inflated, with a bound, where the decoder runs
        self.inflate_bodies = inflate_bodies
        self.openapi = _load_openapi()
        self._reply_cost = ReplyCost()

    async def _body(
        self,
        request: web.Request,
        header_length: str | None = None,
        shareable: bool = False,
        head: HeadCheck | None = None,
    ) -> tuple[bytearray | SharedBody, str]:
        """The body as sent and its encoding ("identity" once aiohttp has decoded it). With
        ``shareable``, a body the decode pool will decode (its length, encoding and
        ``header_length`` say so) is read into shared memory: the caller releases it. ``head``:
        (n, check) to run ``check`` on the body once its first n bytes are in, where its length
        is known and it arrives as sent; a refusal it raises is given before the rest is read."""
        header = request.headers.get("Content-Encoding")
        if self.inflate_bodies:
            encoding = normalise_encoding(header)
        elif header is not None and header.lower() not in _ENCODINGS:
            raise FrontendError(
                ErrorKind.INVALID_ARGUMENT,
                f"Content-Encoding {header!r} is not supported; send gzip, deflate or none",
                "UNSUPPORTED_ENCODING",
            )
        else:
            encoding = "identity"  # aiohttp inflates it while reading
        size = request.content_length
        if size is not None and size > self.max_body_bytes:
            raise FrontendError(
                ErrorKind.PAYLOAD_TOO_LARGE,
                f"request body of {size} bytes is over the limit of {self.max_body_bytes}",
                "PAYLOAD_TOO_LARGE",
            )
        try:
            # aiohttp inflates what it was not told to leave alone: its length is unknown
            known = size if self.inflate_bodies or header is None else None
            # a large body goes to shared memory: a decode process reads it there, or its
            # inputs, decoded in place, are views of it that a local worker maps
            shared = shareable and known is not None and known >= SHARE_MIN_BYTES
            if encoding != "identity":
                head = None  # what arrives is compressed: its head says nothing yet
            return await self._read(request, known, shared, head), encoding
        except (web.RequestPayloadError, HttpProcessingError, ConnectionError) as e:
            # a body that cannot be decoded (bad gzip, truncated chunks) or a client gone
            # mid-body: the stream is broken, so it is marked finished (aiohttp would otherwise
            # try to drain it after the answer and log the same error again) and the connection
            # closes after this answer
            request.content.feed_eof()
            detail = " ".join(str(e).split())
            raise _BrokenBodyError(
                ErrorKind.INVALID_ARGUMENT, f"request body cannot be read: {detail}", "BAD_BODY"
            ) from None

    async def _read(
        self,
        request: web.Request,
        size: int | None,
        shared: bool = False,
        head: HeadCheck | None = None,
    ) -> bytearray | SharedBody:
        """The body, read into one buffer as it arrives (aiohttp's ``read`` copies a large body
        once more at its end, on the loop), shared memory if ``shared``; at most
        ``max_body_bytes``. ``head``: as ``_body``'s."""
        limit = self.max_body_bytes
        if size is not None:
            body = body_buffer(size, shared)
            view = body.view if isinstance(body, SharedBody) else memoryview(body)
            pacer = Pacer()
            check_at, check = head if head is not None else (0, None)
            try:
                got = 0
                while chunk := await request.content.readany():
                    end = got + len(chunk)
                    if end > size:
                        raise invalid(f"the body is longer than its Content-Length of {size} bytes")
                    await pacer.copy(view, got, chunk)
                    got = end
                    if check is not None and check_at <= got < size:
                        try:
                            check(body)
                        except FrontendError as e:
                            refused_mid_body(request)
                            raise _RefusedMidBodyError(e) from None
                        check = None
                if got < size:
                    raise _BrokenBodyError(
                        ErrorKind.INVALID_ARGUMENT,
                        f"request body cannot be read: {got} of {size} bytes came",
                        "BAD_BODY",
                    )
            except BaseException:
                if isinstance(body, SharedBody):
                    body.release()
                raise
            return body
        body = bytearray()
        pacer = Pacer()
        while chunk := await request.content.readany():
            body += chunk
            await pacer.copied(len(chunk))
            if len(body) > limit:
                raise FrontendError(
                    ErrorKind.PAYLOAD_TOO_LARGE,
                    f"request body (decoded) is over the limit of {limit} bytes",
                    "PAYLOAD_TOO_LARGE",
                )
        return body

    def _input_bound(self, model: str, version: str) -> int | None:
        """The most elements any input of ``model`` may hold (None: no bound known): a body
        decoded elsewhere is checked against it there, so that what comes back to this loop is
        in proportion to what the model can use."""
        try:
            meta = self.server.model_metadata(model, version)
        except FrontendError:
            return None  # the model server answers for an unknown model
        per_sample = 0
        for t in meta.inputs:
            if any(d < 0 for d in t.shape):
                return None
            per_sample = max(per_sample, math.prod(t.shape))
        return per_sample * max(1, meta.max_batch_size) if per_sample else None

    async def _json_object(self, request: web.Request, what: str) -> dict[str, Any]:
        """An optional JSON object body: empty means ``{}``."""
        body, encoding = await self._body(request)
        assert not isinstance(body, SharedBody)
        return await self.decoder.run(
            _decode_cost(len(body), encoding, None),
            decode_json_object,
            body,
            encoding,
            self.max_body_bytes,
            what,
        )

    @staticmethod
    def _model(request: web.Request) -> tuple[str, str]:
        info = request.match_info
        return info["model"], info.get("version", "")

    async def live(self, request: web.Request) -> web.Response:
        if self.server.live():
            return _json_response({})
        return _error_response(503, "server is not live", "UNAVAILABLE")

    async def ready(self, request: web.Request) -> web.Response:
        if self.server.ready():
            return _json_response({})
        return _error_response(503, "server is not ready", "UNAVAILABLE")

    async def server_metadata(self, request: web.Request) -> web.Response:
        return _json_response(
            {
                "name": self.server.name,
                "version": self.server.version,
                "extensions": list(EXTENSIONS),
            }
        )

    async def model_metadata(self, request: web.Request) -> web.Response:
        return _json_response(
            encode_model_metadata(self.server.model_metadata(*self._model(request)))
        )

    async def model_ready(self, request: web.Request) -> web.Response:
        model, version = self._model(request)
        if self.server.model_ready(model, version):
            return _json_response({})
        # Triton answers 400 for a model that exists but cannot serve now
        return _error_response(400, f"model {model!r} is not ready", "MODEL_NOT_READY")

    async def model_config(self, request: web.Request) -> web.Response:
        return _json_response(self.server.model_config(*self._model(request)))

    async def infer(self, request: web.Request) -> web.Response:
        # the client's timeout runs from when it sent the request: a wait before this handler
        # ran (behind other requests on the loop) is spent of it too
        t0 = request.get(FIRST_BYTE_NS) or time.perf_counter_ns()
        model, version = self._model(request)
        header_length = request.headers.get(HEADER_LENGTH)

        asked = False

        def refuse_early(body: bytearray | SharedBody, complete: bool = False) -> None:
            """Raise the refusal the call would get at arrival, where its body (its head, once
            ``complete`` the whole of it) says its timeout: given without decoding its inputs.
            Asked once: the scheduler judges the call again when it arrives."""
            nonlocal asked
            timeout_us, samples = stated_call(body, header_length, complete)
            if timeout_us != UNKNOWN:
                asked = True
                spent_ns = time.perf_counter_ns() - t0 + self._reply_cost.margin_ns
                self.server.refuse_early(model, version, timeout_us, spent_ns, samples)

        # a large body's head is judged as soon as it is in, before the rest is read
        head = _head_bytes(header_length)
        body, encoding = await self._body(
            request, header_length, shareable=True, head=(head, refuse_early)
        )
        # the shared segments the request's inputs lie in: released once it is answered
        segments: list[Segment] = [body] if isinstance(body, SharedBody) else []
        try:
            if encoding == "identity" and not asked:
                refuse_early(body, complete=True)
            call, plan = await self._decode_infer(body, encoding, header_length, model, version)
            if isinstance(call, SharedCall):
                call, segment = open_call(call)
                if segment is not None:
                    segments.append(segment)
            reply = self._reply_cost
            call = replace(call, overhead_ns=time.perf_counter_ns() - t0 + reply.margin_ns)
            result = await self.server.infer(call)
        finally:
            call = None  # type: ignore[assignment]
            for segment in segments:
                segment.release()
        t1 = time.perf_counter_ns()
        answer, answer_header_length = await self.decoder.run(
            encoding_cost(result, plan), encode_infer_body, result, plan
        )
        reply.observe(time.perf_counter_ns() - t1)
        return _infer_response(answer, answer_header_length)

    async def _decode_infer(
        self,
        body: bytearray | SharedBody,
        encoding: str,
        header_length: str | None,
        model: str,
        version: str,
    ) -> tuple[InferenceCall | SharedCall, OutputPlan]:
        """The request in ``body``: decoded in place when cheap (a binary body's inputs then
        view it), else in a decode process, whose inputs come back in shared memory."""
        cost = _decode_cost(len(body), encoding, header_length)
        if self.decoder.in_place(cost):
            view = body.view if isinstance(body, SharedBody) else body
            return await self.decoder.run(
                cost,
                decode_http_infer,
                view,
                encoding,
                header_length,
                model,
                version,
                self.max_body_bytes,
            )
        bound = self._input_bound(model, version)
        if isinstance(body, SharedBody):
            try:
                return await self.decoder.run_elsewhere(
                    decode_shared_http_infer,
                    body.name,
                    body.size,
                    encoding,
                    header_length,
                    model,
                    version,
                    self.max_body_bytes,
                    bound,
                )
            finally:
                body.release()  # decoded: its inputs came back in a segment of their own
        return await self.decoder.run_elsewhere(
            decode_http_infer_shared,
            body,
            encoding,
            header_length,
            model,
            version,
            self.max_body_bytes,
            bound,
        )

    async def repository_index(self, request: web.Request) -> web.Response:
        ready_only = False
        if request.method == "POST":
            ready = (await self._json_object(request, "the index request")).get("ready", False)
            if type(ready) is not bool:
                raise invalid(f"'ready' must be true or false, got {ready!r}")
            ready_only = ready
        return _json_response(
            [
                {"name": e.name, "version": e.version, "state": e.state.value, "reason": e.reason}
                for e in self.server.repository_index(ready_only)
            ]
        )

    async def _load_request(self, request: web.Request) -> str:
        body = await self._json_object(request, "the load/unload request")
        # unknown parameters (config overrides, unload_dependents, files) are accepted and
        # ignored, whatever their values
        raw = body.get("parameters", _ABSENT)
        if raw is not _ABSENT and not isinstance(raw, dict):
            raise invalid(f"'parameters' must be an object, got {type(raw).__name__}")
        return request.match_info["model"]

    async def load(self, request: web.Request) -> web.Response:
        await self.server.load_model(await self._load_request(request))
        return _json_response({})

    async def unload(self, request: web.Request) -> web.Response:
        await self.server.unload_model(await self._load_request(request))
        return _json_response({})

    async def statistics(self, request: web.Request) -> web.Response:
        info = request.match_info
        return _json_response(
            encode_statistics(
                self.server.statistics(info.get("model", ""), info.get("version", ""))
            )
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=await on_a_thread(self.server.metrics_text),
            headers={"Content-Type": METRICS_CONTENT_TYPE},
        )

    async def openapi_document(self, request: web.Request) -> web.Response:
        return web.Response(body=self.openapi, content_type="application/json")


def _http_error(request: web.Request, e: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (no route, wrong method, body too large) as JSON errors."""
    headers: dict[str, str] = {}
    if isinstance(e, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(e.allowed_methods))
        headers["Allow"] = allowed
        message = f"method {request.method} is not allowed on {request.path}; use {allowed}"
    elif isinstance(e, web.HTTPNotFound):
        message = f"no route {request.method} {request.path}"
    else:
        message = e.text or e.reason
    reason = e.reason.upper().replace(" ", "_") if e.reason else "HTTP_ERROR"
    return _error_response(e.status, message, reason, headers)


@web.middleware
async def _errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FrontendError as e:
        resp = _error_response(e.kind.http_status, e.message, e.reason)
        if isinstance(e, (_BrokenBodyError, _RefusedMidBodyError)):
            resp.force_close()
        return resp
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return _http_error(request, e)
    except Exception:
        _log.exception("unexpected error answering %s %s", request.method, request.path)
        return _error_response(500, "internal server error", "INTERNAL")


def make_app(
    server: ModelServer,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    decoder: DecodePool | None = None,
    inflate_bodies: bool = False,
    door: Door | None = None,
    security: FrontDoorSecurity | None = None,
) -> web.Application:
    """The aiohttp application of the HTTP/REST front door over ``server``. Request bodies over
    ``max_body_bytes`` (after decoding gzip/deflate) are refused with 413. Bodies are decoded
    by ``decoder`` (default: in place); with ``inflate_bodies`` the server must hand them over
    as sent (aiohttp's ``auto_decompress`` off), and they are inflated where they are
    decoded. ``security``: tokens and model control (``clockwork.frontend.auth``; None: model
    control refused, the rest open), checked first; then ``door`` (default: one with the
    default limits) admits requests before their bodies are read (``http_door``)."""
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    door = door or Door()
    app = web.Application(
        middlewares=[http_middleware(security), door_middleware(door, server), _errors],
        client_max_size=max_body_bytes,
    )
    r = _Routes(server, max_body_bytes, decoder or DecodePool(0), inflate_bodies)
    model_paths = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
    add = app.router.add_route

    def get(path: str, handler: _Handler) -> None:
        # HEAD as well: the headers of the GET's answer (curl -I, load balancers' checks)
        app.router.add_get(path, handler, allow_head=True)

    # the inference routes first: aiohttp tries routes under one prefix in registration order
    for base in model_paths:
        add("POST", base + "/infer", r.infer)
    get("/v2/health/live", r.live)
    get("/v2/health/ready", r.ready)
    get("/v2", r.server_metadata)
    get("/v2/models/stats", r.statistics)
    for base in model_paths:
        get(base, r.model_metadata)
        get(base + "/ready", r.model_ready)
        get(base + "/config", r.model_config)
        get(base + "/stats", r.statistics)
    get("/v2/repository/index", r.repository_index)
    add("POST", "/v2/repository/index", r.repository_index)
    add("POST", "/v2/repository/models/{model}/load", r.load)
    add("POST", "/v2/repository/models/{model}/unload", r.unload)
    get("/metrics", r.metrics)
    get("/v2/openapi.json", r.openapi_document)
    get("/openapi.json", r.openapi_document)
    return app


async def start_http(
    server: ModelServer,
    host: str,
    port: int,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    access_log: bool = False,
    decoder: DecodePool | None = None,
    door: Door | None = None,
    security: FrontDoorSecurity | None = None,
) -> web.AppRunner:
    """Serve ``make_app(server)`` on ``host:port`` (port 0: any free port; see
    ``runner.addresses``), over TLS when ``security.tls`` is set. The caller stops it with
    ``await runner.cleanup()``. The access log is off by default: one log line per request costs
    more than the request on the hot path. ``door``'s limits (default: a door of its own) hold
    on every connection; large bodies are decoded by ``decoder`` (default: in place)."""
    door = door or Door()
    app = make_app(
        server,
        max_body_bytes=max_body_bytes,
        decoder=decoder,
        inflate_bodies=True,
        door=door,
        security=security,
    )
    ssl_context = server_ssl_context(security.tls) if security and security.tls else None
    runner = DoorRunner(
        app,
        door,
        # refusals for the in-flight limit before aiohttp parses them, where no token is due
        fast_refusals=(security or FrontDoorSecurity()).check(Access.GUARDED, None) is None,
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
        # bodies as sent: inflated with a bound by the decoder, off the loop (aiohttp would
        # inflate a gzip bomb whole, on the loop)
        auto_decompress=False,
        logger=protocol_logger(),  # a malformed request: one line, not a traceback
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
