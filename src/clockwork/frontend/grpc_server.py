"""The gRPC front door: KServe v2 / Triton's ``inference.GRPCInferenceService``.

Each RPC decodes its request into ``clockwork.frontend.api`` values, calls one ``ModelServer``
method and encodes what it returns. A ``FrontendError`` ends the call with its kind's status code
and message (and its reason as the trailing metadata ``clockwork-reason``); anything else is a
server bug: ``INTERNAL``, with the traceback logged. Nothing a client sends may produce
``INTERNAL`` or ``UNKNOWN``: malformed protobuf, bad datatypes, shapes that disagree with the data
and wrong counts of ``raw_input_contents`` are ``INVALID_ARGUMENT`` naming the tensor, and a
message over ``max_message_bytes`` is refused by gRPC itself with ``RESOURCE_EXHAUSTED``.

Inputs come as ``raw_input_contents`` (one entry per input, in input order; what tritonclient
sends) or as each input's typed ``contents``; outputs always go back as ``raw_output_contents``.
The request parameters ``timeout`` (microseconds) and ``priority`` are Triton's schedule policy;
a requested output's ``classification`` parameter asks for its top-k as ``"value:index"``
strings. ``ModelStreamInfer`` answers the requests of a stream concurrently, each as soon as it is
done; a refused request gets a response with ``error_message`` set and the stream goes on.

The messages are Triton's, generated from ``proto/inference.proto`` into a private descriptor
pool (see ``scripts/gen_proto.sh``), so a process may also use tritonclient.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf import json_format
from google.protobuf.message import DecodeError

from clockwork.frontend.api import (
    EXTENSIONS,
    REASON_METADATA_KEY,
    DurationStat,
    FrontendError,
    InferenceCall,
    InferenceResult,
    ModelServer,
    Parameter,
    RequestedOutput,
    Tensor,
)
from clockwork.frontend.auth import FrontDoorSecurity, GrpcAuthInterceptor
from clockwork.frontend.decode_pool import DecodePool
from clockwork.frontend.grpc_door import DoorInterceptor, grpc_options, maximum_concurrent_rpcs
from clockwork.frontend.grpc_request_head import request_head
from clockwork.frontend.grpc_shared import decode_elsewhere
from clockwork.frontend.limits import Door
from clockwork.frontend.parameters import (
    MAX_INT64,
    int_param,
    invalid,
    refuse_shared_memory,
    timeout_param,
)
from clockwork.frontend.proto import inference_pb2 as pb
from clockwork.frontend.reply_cost import ReplyCost
from clockwork.frontend.tensor_codec import (
    bad,
    check_shape,
    classify,
    from_raw,
    numpy_dtype,
    to_raw,
)
from clockwork.frontend.tls import grpc_server_credentials

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "REASON_METADATA_KEY",
    "SERVICE_NAME",
    "InferenceServicer",
    "decode_infer_request",
    "encode_infer_response",
    "start_grpc",
]

DEFAULT_MAX_MESSAGE_BYTES = 64 * 2**20
SERVICE_NAME = "inference.GRPCInferenceService"

# Triton carries timeout and priority as int64/uint64; bounding them keeps every later encoder
# from failing on a client's huge integer (the same bound as the HTTP front door)

# the typed contents field of each datatype (FP16 and BF16 have none: raw contents only)
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_ALL_CONTENTS_FIELDS = tuple(sorted(set(_CONTENTS_FIELD.values())))
# the numpy type each contents field's values are read as before the range check
_WIDE_DTYPE: dict[str, np.dtype[Any]] = {
    "bool_contents": np.dtype(np.bool_),
    "int_contents": np.dtype(np.int64),
    "int64_contents": np.dtype(np.int64),
    "uint_contents": np.dtype(np.uint64),
    "uint64_contents": np.dtype(np.uint64),
    "fp32_contents": np.dtype(np.float32),
    "fp64_contents": np.dtype(np.float64),
}
_log = logging.getLogger(__name__)


# --- parameters ------------------------------------------------------------------------------


def _param_value(p: pb.InferParameter, where: str) -> Parameter:
    kind = p.WhichOneof("parameter_choice")
    if kind == "bool_param":
        return bool(p.bool_param)
    if kind == "int64_param":
        return int(p.int64_param)
    if kind == "uint64_param":
        return int(p.uint64_param)
    if kind == "double_param":
        return float(p.double_param)
    if kind == "string_param":
        return str(p.string_param)
    raise invalid(f"{where} has no value")


def _parameters(params: Mapping[str, pb.InferParameter], where: str) -> dict[str, Parameter]:
    out = {key: _param_value(value, f"{where}: parameter {key!r}") for key, value in params.items()}
    refuse_shared_memory(out, where)
    return out


def _set_param(p: pb.InferParameter, value: object) -> None:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        p.bool_param = value
    elif isinstance(value, int):
        if value > MAX_INT64:
            p.uint64_param = value
        else:
            p.int64_param = value
    elif isinstance(value, float):
        p.double_param = value
    else:
        p.string_param = str(value)


def _fill_params(target: Any, params: Mapping[str, object]) -> None:
    """Copy ``params`` into a protobuf map of ``InferParameter``."""
    for key, value in params.items():
        _set_param(target[key], value)


# --- inference requests ----------------------------------------------------------------------


def _from_contents(t: pb.ModelInferRequest.InferInputTensor) -> npt.NDArray[np.generic]:
    name = t.name
    dims = check_shape(list(t.shape), name)
    dt = numpy_dtype(t.datatype, name)
    field = _CONTENTS_FIELD.get(t.datatype)
    if field is None:
        raise bad(
            name,
            f"datatype {t.datatype} has no typed contents field; send it in raw_input_contents",
        )
    for other in _ALL_CONTENTS_FIELDS:
        if other != field and len(getattr(t.contents, other)):
            raise bad(
                name,
                f"datatype {t.datatype} takes its data in contents.{field}, not contents.{other}",
            )
    values = getattr(t.contents, field)
    n = math.prod(dims)
    if len(values) != n:
        raise bad(
            name, f"{len(values)} elements in contents.{field}, but shape {list(dims)} needs {n}"
        )
    if t.datatype == "BYTES":
        out = np.empty(n, dtype=object)
        out[:] = [bytes(v) for v in values]
        return out.reshape(dims)
    wide = np.fromiter(values, dtype=_WIDE_DTYPE[field], count=n)
    if dt.kind in "iu" and dt.itemsize < wide.dtype.itemsize and n:
        info = np.iinfo(dt)
        if wide.min() < info.min or wide.max() > info.max:
            raise bad(name, f"{t.datatype} data out of range [{info.min}, {info.max}]")
    return wide.astype(dt, copy=False).reshape(dims)


def _decode_inputs(req: pb.ModelInferRequest) -> tuple[Tensor, ...]:
    if not req.inputs:
        raise invalid("the request has no inputs")
    raw = req.raw_input_contents
    if raw and len(raw) > len(req.inputs):
        raise invalid(
            f"{len(raw)} raw_input_contents for {len(req.inputs)} inputs; each input "
            "takes exactly one, in input order"
        )
    tensors: list[Tensor] = []
    seen: set[str] = set()
    for i, t in enumerate(req.inputs):
        name = t.name
        if not name:
            raise invalid(f"inputs[{i}] has no name")
        if name in seen:
            raise bad(name, "appears more than once in inputs")
        seen.add(name)
        params = _parameters(t.parameters, f"input {name!r}")
        try:
            if raw:
                if t.HasField("contents"):
                    raise bad(name, "has both contents and a raw_input_contents entry; send one")
                if i >= len(raw):
                    raise bad(
                        name,
                        f"has no raw_input_contents entry ({len(req.inputs)} inputs, "
                        f"{len(raw)} raw_input_contents)",
                    )
                data = from_raw(t.datatype, list(t.shape), raw[i], name)
            elif t.HasField("contents"):
                data = _from_contents(t)
            else:
                raise bad(name, "has no data: neither contents nor raw_input_contents")
        except (ValueError, OverflowError, TypeError, MemoryError) as e:
            # numpy's own limits (e.g. a zero-sized shape with dimensions past intp) are the
            # client's mistake, not the server's
            raise bad(name, f"cannot be decoded: {e}") from None
        tensors.append(Tensor(name, t.datatype, data, params))
    return tuple(tensors)


def _decode_outputs(
    req: pb.ModelInferRequest,
) -> tuple[tuple[RequestedOutput, ...], dict[str, int]]:
    outputs: list[RequestedOutput] = []
    classification: dict[str, int] = {}
    for i, o in enumerate(req.outputs):
        name = o.name
        if not name:
            raise invalid(f"outputs[{i}] has no name")
        if any(r.name == name for r in outputs):
            raise invalid(f"output {name!r} is requested more than once")
        where = f"output {name!r}"
        params = _parameters(o.parameters, where)
        count = int_param(params, "classification", where)
        if count:
            classification[name] = count
        outputs.append(RequestedOutput(name, params))
    return tuple(outputs), classification


def decode_infer_request(req: pb.ModelInferRequest) -> tuple[InferenceCall, dict[str, int]]:
    """The inference call of a ``ModelInferRequest`` and the top-k count of each output to be
    classified."""
    params = _parameters(req.parameters, "request")
    timeout_us = timeout_param(params, "request")
    priority = int_param(params, "priority", "request") or 0
    inputs = _decode_inputs(req)
    outputs, classification = _decode_outputs(req)
    rest = {k: v for k, v in params.items() if k not in ("timeout", "priority")}
    call = InferenceCall(
        model=req.model_name,
        inputs=inputs,
        version=req.model_version,
        id=req.id,
        outputs=outputs,
        # Triton reads a timeout of 0 as "no timeout given", not as an already-past deadline
        timeout_us=timeout_us or None,
        priority=priority,
        parameters=rest,
    )
    return call, classification


def encode_infer_response(
    result: InferenceResult, request_id: str, classification: Mapping[str, int]
) -> pb.ModelInferResponse:
    """A ``ModelInferResponse`` with every output in ``raw_output_contents`` (in output order),
    which is where tritonclient reads them."""
    resp = pb.ModelInferResponse(
        model_name=result.model, model_version=result.version, id=result.id or request_id
    )
    _fill_params(resp.parameters, result.parameters)
    for t in result.outputs:
        data, datatype = t.data, t.datatype
        count = classification.get(t.name)
        if count:
            data, datatype = classify(t, count), "BYTES"
        out = resp.outputs.add(name=t.name, datatype=datatype, shape=[int(d) for d in data.shape])
        _fill_params(out.parameters, t.parameters)
        resp.raw_output_contents.append(to_raw(data))
    return resp


# --- the servicer ----------------------------------------------------------------------------


class _Undecodable:
    """What the request deserializer hands over for bytes that are not a valid message: raising
    there would make gRPC answer INTERNAL for a client's mistake."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def error(self) -> FrontendError:
        return invalid(self.message)


def _deserializer(cls: Any, decoder: DecodePool | None = None) -> Callable[[bytes], Any]:
    """Parse a request message, in place; with ``decoder``, a message larger than it decodes in
    place is handed over as it came (``_Encoded``), to be decoded where the decoder runs."""

    def parse(data: bytes) -> Any:
        if decoder is not None and not decoder.in_place(len(data)):
            return _Encoded(data)
        try:
            return cls.FromString(data)
        except (DecodeError, ValueError, RuntimeError) as e:
            return _Undecodable(f"the request is not a valid {cls.DESCRIPTOR.name}: {e}")

    return parse


class _Encoded:
    """A ``ModelInferRequest`` still in its wire form (too large to parse on the loop)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


@dataclass(frozen=True, slots=True)
class DecodedInfer:
    """What a decode process makes of a ``ModelInferRequest``: the call and its outputs' top-k
    counts, or the error, with the request's names either way (a stream's error response
    carries them)."""

    model: str
    version: str
    id: str
    call: InferenceCall | None
    classification: dict[str, int]
    error: FrontendError | None


def decode_encoded_infer(data: bytes) -> DecodedInfer:
    """Parse and decode a ``ModelInferRequest`` from its wire form (what the pool runs)."""
    try:
        req = pb.ModelInferRequest.FromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        error = invalid(f"the request is not a valid ModelInferRequest: {e}")
        return DecodedInfer("", "", "", None, {}, error)
    try:
        call, classification = decode_infer_request(req)
    except FrontendError as e:
        return DecodedInfer(req.model_name, req.model_version, req.id, None, {}, e)
    return DecodedInfer(req.model_name, req.model_version, req.id, call, classification, None)


def _duration(target: pb.StatisticDuration, d: DurationStat) -> None:
    target.count = d.count
    target.ns = d.ns


async def _abort(context: grpc.aio.ServicerContext, e: FrontendError) -> NoReturn:
    await context.abort(
        grpc.StatusCode[e.kind.grpc_code],
        e.message,
        trailing_metadata=((REASON_METADATA_KEY, e.reason),),
    )
    raise AssertionError("context.abort returned")  # it always raises


async def _abort_internal(context: grpc.aio.ServicerContext, what: str, e: Exception) -> NoReturn:
    _log.exception("unexpected error answering gRPC %s", what)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"internal server error ({type(e).__name__}); see the server log",
        trailing_metadata=((REASON_METADATA_KEY, "INTERNAL"),),
    )
    raise AssertionError("context.abort returned")


def _snake_case(rpc: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", rpc).lower()


class InferenceServicer:
    """The RPCs of ``inference.GRPCInferenceService`` over a ``ModelServer``, one method each
    (``ModelInfer`` is ``model_infer``). Each takes the decoded request and returns the
    response; ``handlers`` wraps them into gRPC handlers that turn errors into status codes."""

    def __init__(self, server: ModelServer, decoder: DecodePool | None = None) -> None:
        self.server = server
        # decodes the large inference requests off the loop (None: all in place)
        self.decoder = decoder
        self._reply_cost = ReplyCost()

    async def server_live(self, request: pb.ServerLiveRequest) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.server.live())

    async def server_ready(self, request: pb.ServerReadyRequest) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.server.ready())

    async def model_ready(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=self.server.model_ready(request.name, request.version))

    async def server_metadata(self, request: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(
            name=self.server.name, version=self.server.version, extensions=list(EXTENSIONS)
        )

    async def model_metadata(self, request: pb.ModelMetadataRequest) -> pb.ModelMetadataResponse:
        meta = self.server.model_metadata(request.name, request.version)
        # requests to a batching model carry the batch dimension first, as in Triton
        lead = [-1] if meta.max_batch_size >= 1 else []
        resp = pb.ModelMetadataResponse(
            name=meta.name, versions=list(meta.versions), platform=meta.platform
        )
        for group, sigs in ((resp.inputs, meta.inputs), (resp.outputs, meta.outputs)):
            for s in sigs:
                group.add(name=s.name, datatype=s.datatype, shape=[*lead, *s.shape])
        return resp

    async def model_infer(self, request: pb.ModelInferRequest | _Encoded) -> pb.ModelInferResponse:
        t0 = time.perf_counter_ns()
        if isinstance(request, _Encoded):
            head = request_head(request.data)
            if head is not None:
                self._refuse_early(head, t0)
            decoded = await self._decode(request)
            if decoded.error is not None:
                raise decoded.error
            assert decoded.call is not None
            return await self._infer(decoded.call, decoded.classification, t0)
        call, classification = decode_infer_request(request)
        return await self._infer(call, classification, t0)

    def _refuse_early(self, head: pb.ModelInferRequest, t0: int) -> None:
        """Raise the refusal the scheduler would give a large request at arrival, before its
        inputs are decoded (``ModelServer.refuse_early``; ``head``: ``request_head``)."""
        try:
            timeout_us = timeout_param(_parameters(head.parameters, "request"), "request")
        except FrontendError:
            return  # the decoder says what is wrong with it
        spent_ns = time.perf_counter_ns() - t0 + self._reply_cost.margin_ns
        # inputs are batch first: a small input's shape tells the call's samples
        shape = head.inputs[0].shape if head.inputs else ()
        samples = shape[0] if shape and shape[0] > 1 else 1
        self.server.refuse_early(
            head.model_name, head.model_version, timeout_us or 0, spent_ns, samples
        )

    async def _infer(
        self, call: InferenceCall, classification: dict[str, int], t0: int
    ) -> pb.ModelInferResponse:
        """Serve a decoded call (``t0``: when its decoding began)."""
        reply = self._reply_cost
        call = replace(call, overhead_ns=time.perf_counter_ns() - t0 + reply.margin_ns)
        result = await self.server.infer(call)
        t1 = time.perf_counter_ns()
        response = encode_infer_response(result, call.id, classification)
        reply.observe(time.perf_counter_ns() - t1)
        return response

    async def _decode(self, request: _Encoded) -> DecodedInfer:
        assert self.decoder is not None
        return await decode_elsewhere(self.decoder, request.data)

    async def _stream_answer(
        self, request: pb.ModelInferRequest | _Undecodable | _Encoded
    ) -> pb.ModelStreamInferResponse:
        """One request of a stream answered; a refusal becomes ``error_message`` (what Triton's
        clients read), with the status code and reason as parameters of ``infer_response``,
        which also carries the request's id so that a client can tell which request failed."""
        names: tuple[str, str, str] | None = None
        try:
            if isinstance(request, _Undecodable):
                raise request.error()
            if isinstance(request, _Encoded):
                t0 = time.perf_counter_ns()
                head = request_head(request.data)
                if head is not None:
                    names = (head.model_name, head.model_version, head.id)
                    self._refuse_early(head, t0)
                decoded = await self._decode(request)
                names = (decoded.model, decoded.version, decoded.id)
                if decoded.error is not None:
                    raise decoded.error
                assert decoded.call is not None
                return pb.ModelStreamInferResponse(
                    infer_response=await self._infer(decoded.call, decoded.classification, t0)
                )
            return pb.ModelStreamInferResponse(infer_response=await self.model_infer(request))
        except FrontendError as e:
            code, message, reason = e.kind.grpc_code, e.message, e.reason
        except Exception as e:
            _log.exception("unexpected error answering a gRPC ModelStreamInfer request")
            code = "INTERNAL"
            message = f"internal server error ({type(e).__name__}); see the server log"
            reason = "INTERNAL"
        resp = pb.ModelStreamInferResponse(error_message=message)
        if isinstance(request, pb.ModelInferRequest):
            names = (request.model_name, request.model_version, request.id)
        if names is not None:
            (
                resp.infer_response.model_name,
                resp.infer_response.model_version,
                resp.infer_response.id,
            ) = names
        resp.infer_response.parameters["error_code"].string_param = code
        resp.infer_response.parameters["error_reason"].string_param = reason
        return resp

    async def model_stream_infer(
        self, requests: AsyncIterator[pb.ModelInferRequest | _Undecodable | _Encoded]
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        # each request is answered by its own task, so that a slow one does not hold back the
        # responses of those sent after it (clients match responses by id)
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()

        async def answer(request: pb.ModelInferRequest | _Undecodable | _Encoded) -> None:
            answers.put_nowait(await self._stream_answer(request))

        async def read() -> None:
            try:
                async with asyncio.TaskGroup() as tasks:
                    async for request in requests:
                        tasks.create_task(answer(request))
            finally:
                answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await answers.get()) is not None:
                yield item
            await reader  # a failure to read the stream (the client went away) ends the call
        finally:
            if not reader.done():
                reader.cancel()
                with suppress(asyncio.CancelledError):
                    await reader

    async def model_config(self, request: pb.ModelConfigRequest) -> pb.ModelConfigResponse:
        config = self.server.model_config(request.name, request.version)
        resp = pb.ModelConfigResponse()
        # the JSON form is Triton's, field for field; what our proto leaves out is dropped
        json_format.ParseDict(dict(config), resp.config, ignore_unknown_fields=True)
        return resp

    async def model_statistics(
        self, request: pb.ModelStatisticsRequest
    ) -> pb.ModelStatisticsResponse:
        resp = pb.ModelStatisticsResponse()
        for s in self.server.statistics(request.name, request.version):
            m = resp.model_stats.add(
                name=s.name,
                version=s.version,
                last_inference=s.last_inference_ms,
                inference_count=s.inference_count,
                execution_count=s.execution_count,
            )
            st = m.inference_stats
            for target, d in (
                (st.success, s.success),
                (st.fail, s.fail),
                (st.queue, s.queue),
                (st.compute_input, s.compute_input),
                (st.compute_infer, s.compute_infer),
                (st.compute_output, s.compute_output),
            ):
                _duration(target, d)
            # compute_input/compute_output per batch size are not measured separately; they
            # stay zero, as in the HTTP statistics
            for size, d in sorted(s.batch_stats.items()):
                _duration(m.batch_stats.add(batch_size=size).compute_infer, d)
        return resp

    async def repository_index(
        self, request: pb.RepositoryIndexRequest
    ) -> pb.RepositoryIndexResponse:
        # one repository: repository_name, which selects among several in Triton, is ignored
        resp = pb.RepositoryIndexResponse()
        for e in self.server.repository_index(request.ready):
            resp.models.add(name=e.name, version=e.version, state=e.state.value, reason=e.reason)
        return resp

    async def repository_model_load(
        self, request: pb.RepositoryModelLoadRequest
    ) -> pb.RepositoryModelLoadResponse:
        # parameters (config overrides, model files) are accepted and ignored, as over HTTP:
        # models come from the workers' repositories
        await self.server.load_model(request.model_name)
        return pb.RepositoryModelLoadResponse()

    async def repository_model_unload(
        self, request: pb.RepositoryModelUnloadRequest
    ) -> pb.RepositoryModelUnloadResponse:
        await self.server.unload_model(request.model_name)
        return pb.RepositoryModelUnloadResponse()

    def handlers(self) -> dict[str, Any]:
        """gRPC method handlers for every RPC of the service, by method name."""
        out: dict[str, Any] = {}
        for method in pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
            request_cls = getattr(pb, method.input_type.name)
            response_cls = getattr(pb, method.output_type.name)
            fn = getattr(self, _snake_case(method.name))
            large = method.name in ("ModelInfer", "ModelStreamInfer")
            options = {
                "request_deserializer": _deserializer(request_cls, self.decoder if large else None),
                "response_serializer": response_cls.SerializeToString,
            }
            if method.client_streaming and method.server_streaming:
                out[method.name] = grpc.stream_stream_rpc_method_handler(
                    _stream_handler(fn), **options
                )
            elif not method.client_streaming and not method.server_streaming:
                out[method.name] = grpc.unary_unary_rpc_method_handler(
                    _unary_handler(method.name, fn), **options
                )
            else:  # pragma: no cover - the service has no half-streaming method
                raise TypeError(f"{method.name}: half-streaming RPCs are not handled")
        return out


def _unary_handler(
    name: str, fn: Callable[[Any], Awaitable[Any]]
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            if isinstance(request, _Undecodable):
                raise request.error()
            return await fn(request)
        except FrontendError as e:
            await _abort(context, e)
        except Exception as e:
            await _abort_internal(context, name, e)

    return handle


def _stream_handler(
    fn: Callable[[Any], AsyncIterator[Any]],
) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
    async def handle(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        # each request's own failure is already a response; what is left is the server's (a
        # client going away cancels the handler instead, which this does not catch)
        try:
            async for response in fn(requests):
                yield response
        except Exception as e:
            await _abort_internal(context, "ModelStreamInfer", e)

    return handle


async def start_grpc(
    server: ModelServer,
    host: str,
    port: int,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    decoder: DecodePool | None = None,
    door: Door | None = None,
    security: FrontDoorSecurity | None = None,
) -> grpc.aio.Server:
    """Serve ``inference.GRPCInferenceService`` over ``server`` on ``host:port``, started; the
    caller stops it with ``await s.stop(grace)``. Messages over ``max_message_bytes`` either way
    are refused by gRPC with ``RESOURCE_EXHAUSTED``. Port 0 takes any free port, which is only
    logged. Raises ``OSError`` if the address cannot be bound (another process holds the port:
    SO_REUSEPORT is off, so that two servers never silently share one). ``security``: tokens,
    model control and TLS (``clockwork.frontend.auth``; None: model control refused, the rest
    open, no TLS), checked first; ``door`` (default: one with the default limits) caps
    connections and RPCs in flight (``grpc_door``)."""
    if max_message_bytes < 1:
        raise ValueError(f"max_message_bytes must be >= 1, got {max_message_bytes}")
    door = door or Door()
    s = grpc.aio.server(
        interceptors=[GrpcAuthInterceptor(security), DoorInterceptor(door)],
        maximum_concurrent_rpcs=maximum_concurrent_rpcs(door.limits),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
            *grpc_options(door.limits),
        ],
    )
    handlers = InferenceServicer(server, decoder).handlers()
    s.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    s.add_registered_method_handlers(SERVICE_NAME, handlers)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if security is not None and security.tls is not None:
            bound = s.add_secure_port(address, grpc_server_credentials(security.tls))
        else:
            bound = s.add_insecure_port(address)
    except RuntimeError as e:
        raise OSError(f"gRPC server cannot listen on {address}: {e}") from None
    if bound == 0:
        raise OSError(f"gRPC server cannot listen on {address}")
    await s.start()
    _log.info("gRPC front door listening on %s (port %d)", address, bound)
    return s
