"""A small asynchronous Open Inference Protocol (KServe v2 / Triton) client, made for load
generation: two transports behind one interface (``OIPClient``).

- ``HttpClient``: HTTP/REST over pooled keep-alive connections (``http1.Http1Pool``); tensors
  as JSON or with Triton's binary tensor extension (``Inference-Header-Content-Length``).
- ``GrpcClient``: ``grpc.aio`` with the project's generated stubs
  (``clockwork.frontend.proto``, service ``inference.GRPCInferenceService``), one HTTP/2 channel.

Every request carries Triton's schedule-policy parameters: ``timeout`` (microseconds: the
deadline) and ``priority``.

``infer`` never raises for what the server or the network did: it returns an ``Outcome`` (an
answer, a refusal with the HTTP status or gRPC code and the server's reason, or no answer at all),
because a benchmark must log every request exactly once and a refusal is data, not an exception.
Only cancellation propagates. The metadata calls (``server_metadata``, ``repository_index``,
``model_metadata``) raise ``OIPError`` instead: they run before the load, where failing at once with
a clear message is what the user wants.

Inputs are built once per model (``make_inputs``: zeros or seeded random data of the model's shape,
batch 1) and their encodings are cached in ``InferInputs``, so sending a request costs a small
header, not a re-encoding of the tensors.
"""

from __future__ import annotations

import asyncio
import enum
import gzip
import json
import re
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self
from urllib.parse import quote, urlsplit

import numpy as np
import numpy.typing as npt
import orjson

from clockwork.client.credentials import ClientCredentials
from clockwork.client.http1 import Http1Pool
from clockwork.core.errors import ClockworkError, ConfigurationError
from clockwork.core.requests import ResponseStatus
from clockwork.frontend.tensor_codec import NUMPY_DTYPES, to_json, to_raw

if TYPE_CHECKING:
    import grpc  # type: ignore[import-untyped, unused-ignore]

PROTOCOLS = ("http", "grpc")
DEFAULT_GRPC_PORT = 8001  # Triton's
#: how long a metadata call may take (the load's requests have their own timeouts)
DEFAULT_RPC_TIMEOUT_S = 10.0
#: successful HTTP responses up to this size without a binary header are parsed for their
#: ``parameters`` (batch size, cold start); bigger JSON bodies are not worth the client's CPU
_PARSE_JSON_MAX_BYTES = 64 * 1024
_JSON_TYPE = b"Content-Type: application/json\r\n"
_BINARY_TYPE = b"Content-Type: application/octet-stream\r\n"
# refusal reasons only: SUCCESS or LATE in an error text are words, not reasons
_REASONS = frozenset(s.value for s in ResponseStatus if not s.delivered_result)
_LEADING_WORD = re.compile(r"^\s*([A-Z][A-Z0-9_]{2,})\b")
_ANY_REASON = re.compile(r"\b(" + "|".join(sorted(_REASONS, key=len, reverse=True)) + r")\b")

#: ``Outcome.reason`` of an ``ERROR`` outcome: the client gave up waiting / the transport failed
TIMEOUT = "TIMEOUT"
TRANSPORT = "TRANSPORT"


class OIPError(ClockworkError):
    """A metadata call failed: the server is unreachable or refused it. ``code`` is the HTTP
    status or gRPC code name (None when there was no answer)."""

    def __init__(self, message: str, code: int | str | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


# --------------------------------------------------------------------------- values


class OutcomeKind(enum.Enum):
    OK = "ok"  # the server answered with a result
    REFUSED = "refused"  # the server answered with an error status
    ERROR = "error"  # no answer: the connection failed or the client stopped waiting


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one ``infer`` call ended. Times are ``time.monotonic_ns()``: ``send_ns`` just before
    the request was written, ``recv_ns`` once the whole answer was read (or the failure seen).

    ``code``: the HTTP status or the gRPC status code name (``"UNAVAILABLE"``); None without an
    answer. ``reason``: for a refusal, the server's machine-readable reason if it gave one
    (Clockwork gives a ``ResponseStatus`` name, e.g. ``OVERLOADED``), else ""; for an error,
    ``TIMEOUT`` or ``TRANSPORT``. ``message``: the server's error text or the exception's.
    ``batch_size`` and ``cold_start``: what a Clockwork server says in the answer's parameters
    (0 / False when absent).
    """

    kind: OutcomeKind
    send_ns: int
    recv_ns: int
    code: int | str | None = None
    reason: str = ""
    message: str = ""
    batch_size: int = 0
    cold_start: bool = False

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.OK

    @property
    def latency_ns(self) -> int:
        return self.recv_ns - self.send_ns


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A tensor of model metadata; ``-1`` marks a dimension of any size (the batch one
    included, as Triton reports it)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True, slots=True)
class RepositoryModel:
    """One row of the repository index."""

    name: str
    version: str
    state: str
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.state.upper() == "READY"


@dataclass(frozen=True, slots=True)
class InputTensor:
    name: str
    datatype: str
    data: npt.NDArray[Any]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.data.shape)


class InferInputs:
    """The input tensors of a request, encoded once (a benchmark sends the same inputs many
    times). ``raw``: each tensor's bytes (binary HTTP, gRPC ``raw_input_contents``);
    ``json_inputs()``: the JSON ``inputs`` array; ``cache``: for transports' own encodings."""

    __slots__ = ("_binary_json", "_json", "binary_inputs", "cache", "raw", "raw_joined", "tensors")

    def __init__(self, tensors: Sequence[InputTensor]) -> None:
        self.tensors = tuple(tensors)
        self.raw = tuple(to_raw(t.data) for t in self.tensors)
        self.raw_joined = b"".join(self.raw)
        self.binary_inputs: list[dict[str, object]] = [
            {
                "name": t.name,
                "datatype": t.datatype,
                "shape": list(t.shape),
                "parameters": {"binary_data_size": len(r)},
            }
            for t, r in zip(self.tensors, self.raw, strict=True)
        ]
        self._binary_json = json.dumps(self.binary_inputs, separators=(",", ":")).encode()
        self._json: bytes | None = None
        self.cache: dict[str, object] = {}

    def binary_inputs_json(self) -> bytes:
        """The JSON ``inputs`` array of a binary request (descriptors, no data)."""
        return self._binary_json

    def json_inputs(self) -> bytes:
        """The JSON ``inputs`` array (computed on first use: big tensors are slow in JSON)."""
        if self._json is None:
            self._json = json.dumps(
                [
                    {
                        "name": t.name,
                        "datatype": t.datatype,
                        "shape": list(t.shape),
                        "data": to_json(t.data),
                    }
                    for t in self.tensors
                ],
                separators=(",", ":"),
            ).encode()
        return self._json


def _dtype_for(datatype: str) -> np.dtype[Any]:
    if datatype == "BF16":  # no numpy dtype: 2-byte words of the same bits
        return np.dtype("<u2")
    dt = NUMPY_DTYPES.get(datatype)
    if dt is None:
        raise ConfigurationError(f"unknown tensor datatype {datatype!r}")
    return dt


def make_inputs(
    spec: ModelSpec, fill: str = "zeros", rng: np.random.Generator | None = None
) -> InferInputs:
    """Inputs for one request of ``spec`` with batch 1: every ``-1`` dimension (the batch one,
    and any other of free size) becomes 1. ``fill``: ``zeros`` or ``random`` (uniform [0, 1) for
    floats, small integers, random booleans, 8 random letters for BYTES; BF16 stays zero)."""
    if fill not in ("zeros", "random"):
        raise ConfigurationError(f"fill must be 'zeros' or 'random', got {fill!r}")
    if not spec.inputs:
        raise ConfigurationError(f"model {spec.name!r} has no inputs in its metadata")
    gen = rng if rng is not None else np.random.default_rng(0)
    tensors = []
    for t in spec.inputs:
        shape = tuple(1 if d < 0 else d for d in t.shape)
        dt = _dtype_for(t.datatype)
        data: npt.NDArray[Any]
        if t.datatype == "BYTES":
            data = np.empty(shape, dtype=object)
            n = int(np.prod(shape))
            items = (
                [b""] * n
                if fill == "zeros"
                else [bytes(gen.integers(97, 123, 8, dtype=np.uint8)) for _ in range(n)]
            )
            data.reshape(-1)[:] = items
        elif fill == "zeros" or t.datatype == "BF16":
            data = np.zeros(shape, dtype=dt)
        elif dt.kind == "f":
            data = gen.random(shape).astype(dt)
        elif dt.kind == "b":
            data = gen.integers(0, 2, shape).astype(dt)
        else:
            data = gen.integers(0, 10, shape).astype(dt)
        tensors.append(InputTensor(t.name, t.datatype, data))
    return InferInputs(tensors)


def reason_in(message: str) -> str:
    """The machine-readable reason in a server's error text: its leading upper-case word (Clockwork
    writes ``OVERLOADED: ...``) if that is a ``ResponseStatus`` name, else the first such name
    anywhere in it; "" if none."""
    m = _LEADING_WORD.match(message)
    if m is not None and m.group(1) in _REASONS:
        return m.group(1)
    m = _ANY_REASON.search(message)
    return m.group(1) if m is not None else ""


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the server is: ``protocol`` ``http`` (``base_url`` like ``http://host:8000``, maybe
    with a path prefix) or ``grpc`` (``target`` ``host:port``; ``secure``: TLS)."""

    protocol: str
    url: str
    base_url: str = ""
    target: str = ""
    secure: bool = False


def parse_endpoint(url: str, protocol: str | None = None) -> Endpoint:
    """``http[s]://host[:port][/prefix]`` or ``grpc[s]://host:port`` (or ``host:port`` with
    ``protocol``). The protocol defaults to the scheme's; ``http://`` with protocol ``grpc`` means
    gRPC at that host and port. ``ConfigurationError`` for anything else."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise ConfigurationError(
            f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}"
        )
    raw = url.strip()
    if "://" not in raw:
        raw = f"{'grpc' if protocol == 'grpc' else 'http'}://{raw}"
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "grpc", "grpcs"):
        raise ConfigurationError(f"URL {url!r}: scheme must be http, https, grpc or grpcs")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as e:
        raise ConfigurationError(f"URL {url!r}: {e}") from e
    if not host:
        raise ConfigurationError(f"URL {url!r} has no host")
    proto = protocol or ("grpc" if scheme.startswith("grpc") else "http")
    secure = scheme in ("https", "grpcs")
    host_part = f"[{host}]" if ":" in host else host
    if proto == "http":
        if scheme.startswith("grpc"):
            raise ConfigurationError(f"URL {url!r} is a gRPC address; use --protocol grpc")
        netloc = host_part if port is None else f"{host_part}:{port}"
        base = f"{'https' if secure else 'http'}://{netloc}{parts.path.rstrip('/')}"
        return Endpoint("http", url, base_url=base, secure=secure)
    if parts.path not in ("", "/"):
        raise ConfigurationError(f"URL {url!r}: a gRPC address has no path")
    target = f"{host_part}:{port if port is not None else DEFAULT_GRPC_PORT}"
    return Endpoint("grpc", url, target=target, secure=secure)


# --------------------------------------------------------------------------- the interface


class OIPClient(Protocol):
    """What the load generator uses; ``HttpClient`` and ``GrpcClient`` implement it."""

    endpoint: Endpoint

    async def server_metadata(self) -> dict[str, object]:
        """``name``, ``version``, ``extensions``; ``OIPError`` if the server cannot be reached."""
        ...

    async def repository_index(self) -> list[RepositoryModel]: ...

    async def model_metadata(self, model: str) -> ModelSpec:
        """``OIPError`` (code 404 / NOT_FOUND, reason MODEL_NOT_FOUND) for an unknown model."""
        ...

    def prepare(self, inputs: InferInputs) -> None:
        """Encode ``inputs`` as this transport sends them, now rather than on their first
        request (a load generator does it before its clock starts)."""
        ...

    async def infer(
        self,
        model: str,
        inputs: InferInputs,
        timeout_us: int | None,
        priority: int = 0,
        *,
        request_id: str = "",
        client_timeout_s: float | None = None,
    ) -> Outcome:
        """One inference with Triton's ``timeout`` (us; None: the server's default) and
        ``priority``; ``client_timeout_s``: give up waiting after this long (an ``ERROR``
        outcome with reason ``TIMEOUT``). Never raises but for cancellation."""
        ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def _str_list(v: object) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list | tuple) else []


def _tensor_specs(v: object, model: str) -> tuple[TensorSpec, ...]:
    if not isinstance(v, list):
        return ()
    out = []
    for t in v:
        if not isinstance(t, Mapping):
            raise OIPError(f"model {model!r}: malformed tensor metadata {t!r}")
        shape = t.get("shape", [])
        if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
            raise OIPError(f"model {model!r}: tensor {t.get('name')!r} has shape {shape!r}")
        out.append(
            TensorSpec(
                str(t.get("name", "")), str(t.get("datatype", "")), tuple(int(d) for d in shape)
            )
        )
    return tuple(out)


def _answer_parameters(params: object) -> tuple[int, bool]:
    """(batch_size, cold_start) from an answer's ``parameters`` (JSON or gRPC values)."""
    if not isinstance(params, Mapping):
        return 0, False
    batch = params.get("batch_size", 0)
    cold = params.get("cold_start", False)
    return (
        int(batch) if isinstance(batch, int | float) and not isinstance(batch, bool) else 0,
        cold is True,
    )


# --------------------------------------------------------------------------- HTTP


def _decoded(payload: bytes, encoding: str | None) -> bytes:
    """The body of an answer compressed although identity was asked for (some servers compress
    whatever the client says); as it came when it is not, or does not decompress."""
    if not encoding or encoding == "identity":
        return payload
    try:
        if encoding in ("gzip", "x-gzip"):
            return gzip.decompress(payload)
        if encoding == "deflate":
            return zlib.decompress(payload)
    except (OSError, EOFError, zlib.error):
        pass
    return payload


class HttpClient:
    """OIP over HTTP/REST. Create it inside the event loop that uses it (``connect``)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        binary: bool = True,
        pool_size: int = 256,
        connect_timeout_s: float = 5.0,
        rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S,
        credentials: ClientCredentials | None = None,
    ) -> None:
        if endpoint.protocol != "http":
            raise ConfigurationError(f"{endpoint.url}: not an HTTP endpoint")
        creds = _checked(endpoint, credentials)
        self.endpoint = endpoint
        self.binary = binary
        self.connect_timeout_s = connect_timeout_s
        self.rpc_timeout_s = rpc_timeout_s
        parts = urlsplit(endpoint.base_url)
        self._prefix = parts.path
        # one connection per request in flight (HTTP/1.1 keep-alive): the pool is the bound.
        # Responses are read as bytes, uncompressed: asked for as identity (MLServer gzips
        # answers to clients that accept it)
        self._pool: Http1Pool | None = None
        self._pool_args = (
            parts.hostname or "",
            parts.port or (443 if endpoint.secure else 80),
            creds.ssl_context() if endpoint.secure else None,
            max(1, pool_size),
            {"Accept-Encoding": "identity", **creds.http_headers()},
        )
        self._infer_targets: dict[str, str] = {}

    @property
    def _http(self) -> Http1Pool:
        """The pool, made on first use inside the running loop."""
        if self._pool is None:
            host, port, ctx, limit, headers = self._pool_args
            self._pool = Http1Pool(
                host,
                port,
                ssl_context=ctx,
                limit=limit,
                connect_timeout_s=self.connect_timeout_s,
                headers=headers,
            )
        return self._pool

    async def _get_json(
        self, path: str, method: str = "GET", body: object = None
    ) -> tuple[int, object]:
        data = b"" if body is None else json.dumps(body).encode()
        headers = _JSON_TYPE if body is not None else b""
        try:
            resp = await self._http.request(
                method,
                self._prefix + path,
                data,
                headers=headers,
                timeout_s=self.rpc_timeout_s,
            )
        except (TimeoutError, OSError) as e:
            detail = str(e) or type(e).__name__
            raise OIPError(f"cannot reach {self.endpoint.url}: {detail}") from e
        payload = _decoded(resp.body, resp.headers.get("content-encoding"))
        try:
            return resp.status, json.loads(payload) if payload else None
        except ValueError:
            return resp.status, payload[:200].decode(errors="replace")

    @staticmethod
    def _error_text(body: object) -> tuple[str, str]:
        """(message, reason) of an error body (``{"error": ...}``, maybe with ``reason``)."""
        if isinstance(body, Mapping):
            message = str(body.get("error") or body.get("message") or "")
            reason = body.get("reason")
            params = body.get("parameters")
            if not reason and isinstance(params, Mapping):
                reason = params.get("reason")
            return message, str(reason) if reason else reason_in(message)
        text = "" if body is None else str(body)
        return text, reason_in(text)

    async def server_metadata(self) -> dict[str, object]:
        status, body = await self._get_json("/v2")
        if status != 200 or not isinstance(body, Mapping):
            message, _ = self._error_text(body)
            raise OIPError(
                f"{self.endpoint.url}: GET /v2 answered {status}"
                f"{': ' + message if message else ''} (is this an OIP server?)",
                status,
            )
        return {
            "name": str(body.get("name", "")),
            "version": str(body.get("version", "")),
            "extensions": _str_list(body.get("extensions")),
        }

    async def repository_index(self) -> list[RepositoryModel]:
        # Triton's route is POST; some servers also answer GET
        status, body = await self._get_json("/v2/repository/index", "POST", {})
        if status in (404, 405):
            status, body = await self._get_json("/v2/repository/index")
        if status != 200 or not isinstance(body, list):
            message, reason = self._error_text(body)
            raise OIPError(
                f"{self.endpoint.url}: the repository index answered {status}"
                f"{': ' + message if message else ''}",
                status,
                reason,
            )
        return [
            RepositoryModel(
                str(m.get("name", "")),
                str(m.get("version", "") or ""),
                str(m.get("state", "") or ""),
                str(m.get("reason", "") or ""),
            )
            for m in body
            if isinstance(m, Mapping)
        ]

    async def model_metadata(self, model: str) -> ModelSpec:
        status, body = await self._get_json(f"/v2/models/{quote(model, safe='')}")
        if status != 200 or not isinstance(body, Mapping):
            message, reason = self._error_text(body)
            if status == 404:
                raise OIPError(
                    f"unknown model {model!r} at {self.endpoint.url}",
                    status,
                    reason or "MODEL_NOT_FOUND",
                )
            raise OIPError(
                f"model {model!r} at {self.endpoint.url}: metadata answered {status}"
                f"{': ' + message if message else ''}",
                status,
                reason,
            )
        return ModelSpec(
            str(body.get("name", model)),
            tuple(_str_list(body.get("versions"))),
            str(body.get("platform", "")),
            _tensor_specs(body.get("inputs"), model),
            _tensor_specs(body.get("outputs"), model),
        )

    def prepare(self, inputs: InferInputs) -> None:
        if not self.binary:
            inputs.json_inputs()  # JSON of 12,288 numbers costs the standard encoder ~10 ms

    def _infer_target(self, model: str) -> str:
        target = self._infer_targets.get(model)
        if target is None:
            target = f"{self._prefix}/v2/models/{quote(model, safe='')}/infer"
            self._infer_targets[model] = target
        return target

    async def infer(
        self,
        model: str,
        inputs: InferInputs,
        timeout_us: int | None,
        priority: int = 0,
        *,
        request_id: str = "",
        client_timeout_s: float | None = None,
    ) -> Outcome:
        # the request is spliced together from cached bytes: only the id and the parameters
        # change from one request to the next, and json.dumps of the rest would cost more than
        # the rest of the client
        params = b'{"priority":%d' % priority
        if timeout_us is not None:
            params += b',"timeout":%d' % timeout_us
        rid = json.dumps(request_id).encode()
        if self.binary:
            # outputs as raw bytes, not JSON numbers
            header = b"".join(
                (
                    b'{"id":',
                    rid,
                    b',"inputs":',
                    inputs.binary_inputs_json(),
                    b',"parameters":',
                    params,
                    b',"binary_data_output":true}}',
                )
            )
            body = header + inputs.raw_joined
            headers = b"Inference-Header-Content-Length: %d\r\n%s" % (len(header), _BINARY_TYPE)
        else:
            body = b"".join(
                (
                    b'{"id":',
                    rid,
                    b',"inputs":',
                    inputs.json_inputs(),
                    b',"parameters":',
                    params,
                    b"}}",
                )
            )
            headers = _JSON_TYPE
        target = self._infer_target(model)
        send_ns = time.monotonic_ns()
        try:
            resp = await self._http.request(
                "POST", target, body, headers=headers, timeout_s=client_timeout_s
            )
        except TimeoutError as e:
            return Outcome(
                OutcomeKind.ERROR,
                send_ns,
                time.monotonic_ns(),
                None,
                TIMEOUT,
                f"no answer within {client_timeout_s} s ({type(e).__name__})",
            )
        except OSError as e:
            return Outcome(
                OutcomeKind.ERROR,
                send_ns,
                time.monotonic_ns(),
                None,
                TRANSPORT,
                f"{type(e).__name__}: {e}",
            )
        recv_ns = time.monotonic_ns()
        status = resp.status
        payload = _decoded(resp.body, resp.headers.get("content-encoding"))
        header_len = resp.headers.get("inference-header-content-length")
        if 200 <= status < 300:
            batch, cold = _answer_parameters(_answer_json(payload, header_len).get("parameters"))
            return Outcome(
                OutcomeKind.OK, send_ns, recv_ns, status, batch_size=batch, cold_start=cold
            )
        try:
            err: object = json.loads(payload) if payload else None
        except ValueError:
            err = payload[:500].decode(errors="replace")
        message, reason = self._error_text(err)
        return Outcome(OutcomeKind.REFUSED, send_ns, recv_ns, status, reason, message)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _answer_json(payload: bytes, header_len: str | None) -> Mapping[str, object]:
    """The JSON part of a successful answer (the binary header, or a small JSON body); {} when
    there is none or it does not parse: it only feeds optional figures."""
    try:
        # orjson: at a few hundred answers a second the standard parser took a sixth of this
        # client's CPU, on the cores it shares with the server it measures
        if header_len is not None:
            doc = orjson.loads(payload[: int(header_len)])
        elif len(payload) <= _PARSE_JSON_MAX_BYTES:
            doc = orjson.loads(payload)
        else:
            return {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


# --------------------------------------------------------------------------- gRPC


# codes that never come from a server's decision: the call did not get an answer
_GRPC_NO_ANSWER = frozenset({"DEADLINE_EXCEEDED", "CANCELLED"})


def _grpc_param(p: Any) -> object:
    """An ``InferParameter``'s value."""
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


class GrpcClient:
    """OIP over gRPC. Create it inside the event loop that uses it (``connect``)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        connect_timeout_s: float = 5.0,
        rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S,
        credentials: ClientCredentials | None = None,
    ) -> None:
        import grpc  # type: ignore[import-untyped, unused-ignore]

        from clockwork.frontend.proto import inference_pb2, inference_pb2_grpc

        if endpoint.protocol != "grpc":
            raise ConfigurationError(f"{endpoint.url}: not a gRPC endpoint")
        creds = _checked(endpoint, credentials)
        self.endpoint = endpoint
        # the token travels in every call's metadata (insecure channels take no call credentials)
        self._metadata = creds.grpc_metadata() or None
        self.connect_timeout_s = connect_timeout_s
        self.rpc_timeout_s = rpc_timeout_s
        self._grpc = grpc
        self._pb: Any = inference_pb2
        # tensors can be large: no message size limit on either side of the client
        options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
        if endpoint.secure:
            self._channel: grpc.aio.Channel = grpc.aio.secure_channel(
                endpoint.target, creds.grpc_channel_credentials(), options=options
            )
        else:
            self._channel = grpc.aio.insecure_channel(endpoint.target, options=options)
        self._stub: Any = inference_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        # ModelInfer with requests serialized here (no serializer: grpc sends the bytes as given)
        self._infer_raw: Any = self._channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=None,
            response_deserializer=inference_pb2.ModelInferResponse.FromString,
        )
        self._ready = False

    async def _ensure_connected(self) -> None:
        if self._ready:
            return
        try:
            await asyncio.wait_for(self._channel.channel_ready(), self.connect_timeout_s)
        except TimeoutError as e:
            raise OIPError(
                f"cannot reach {self.endpoint.url}: no gRPC connection to "
                f"{self.endpoint.target} within {self.connect_timeout_s:g} s"
            ) from e
        self._ready = True

    async def _call(self, what: str, method: Any, request: Any) -> Any:
        await self._ensure_connected()
        try:
            return await method(request, timeout=self.rpc_timeout_s, metadata=self._metadata)
        except self._grpc.aio.AioRpcError as e:
            code = e.code().name
            details = e.details() or ""
            raise OIPError(
                f"{self.endpoint.url}: {what} failed: {code}{': ' + details if details else ''}",
                code,
                reason_in(details),
            ) from e

    async def server_metadata(self) -> dict[str, object]:
        r = await self._call(
            "ServerMetadata", self._stub.ServerMetadata, self._pb.ServerMetadataRequest()
        )
        return {
            "name": str(r.name),
            "version": str(r.version),
            "extensions": [str(x) for x in r.extensions],
        }

    async def repository_index(self) -> list[RepositoryModel]:
        r = await self._call(
            "RepositoryIndex", self._stub.RepositoryIndex, self._pb.RepositoryIndexRequest()
        )
        return [
            RepositoryModel(str(m.name), str(m.version), str(m.state), str(m.reason))
            for m in r.models
        ]

    async def model_metadata(self, model: str) -> ModelSpec:
        try:
            r = await self._call(
                "ModelMetadata", self._stub.ModelMetadata, self._pb.ModelMetadataRequest(name=model)
            )
        except OIPError as e:
            if e.code == "NOT_FOUND":
                raise OIPError(
                    f"unknown model {model!r} at {self.endpoint.url}",
                    e.code,
                    e.reason or "MODEL_NOT_FOUND",
                ) from e
            raise

        def specs(ts: Any) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(str(t.name), str(t.datatype), tuple(int(d) for d in t.shape)) for t in ts
            )

        return ModelSpec(
            str(r.name) or model,
            tuple(str(v) for v in r.versions),
            str(r.platform),
            specs(r.inputs),
            specs(r.outputs),
        )

    def prepare(self, inputs: InferInputs) -> None:
        self._template(inputs)

    def _template(self, inputs: InferInputs) -> bytes:
        """The serialized tensors part of a request, built once per ``InferInputs``."""
        t = inputs.cache.get("grpc")
        if not isinstance(t, bytes):
            pb = self._pb
            t = pb.ModelInferRequest(
                inputs=[
                    pb.ModelInferRequest.InferInputTensor(
                        name=x.name, datatype=x.datatype, shape=list(x.shape)
                    )
                    for x in inputs.tensors
                ],
                raw_input_contents=list(inputs.raw),
            ).SerializeToString()
            inputs.cache["grpc"] = t
        return bytes(t)

    async def infer(
        self,
        model: str,
        inputs: InferInputs,
        timeout_us: int | None,
        priority: int = 0,
        *,
        request_id: str = "",
        client_timeout_s: float | None = None,
    ) -> Outcome:
        # Two serialized messages concatenated parse as their merge (protobuf's wire format):
        # the cached tensors plus a small message with what changes per request. This saves
        # copying and re-serializing the tensors on every request.
        pb = self._pb
        head = pb.ModelInferRequest(model_name=model, id=request_id)
        if timeout_us is not None:
            head.parameters["timeout"].int64_param = timeout_us
        head.parameters["priority"].int64_param = priority
        req = self._template(inputs) + head.SerializeToString()
        send_ns = time.monotonic_ns()
        try:
            resp = await self._infer_raw(req, timeout=client_timeout_s, metadata=self._metadata)
        except self._grpc.aio.AioRpcError as e:
            recv_ns = time.monotonic_ns()
            code = e.code().name
            details = e.details() or ""
            reason = ""
            for key, value in e.trailing_metadata() or ():
                if key in ("reason", "clockwork-reason"):
                    reason = str(value)
            reason = reason or reason_in(details)
            if code in _GRPC_NO_ANSWER:
                return Outcome(
                    OutcomeKind.ERROR,
                    send_ns,
                    recv_ns,
                    code,
                    TIMEOUT if code == "DEADLINE_EXCEEDED" else TRANSPORT,
                    details,
                )
            if code == "UNAVAILABLE" and not reason:
                # the channel's own failures (no connection, reset) look like this
                return Outcome(OutcomeKind.ERROR, send_ns, recv_ns, code, TRANSPORT, details)
            return Outcome(OutcomeKind.REFUSED, send_ns, recv_ns, code, reason, details)
        except (OSError, RuntimeError) as e:  # a closed channel
            return Outcome(
                OutcomeKind.ERROR,
                send_ns,
                time.monotonic_ns(),
                None,
                TRANSPORT,
                f"{type(e).__name__}: {e}",
            )
        recv_ns = time.monotonic_ns()
        params = {k: _grpc_param(v) for k, v in resp.parameters.items()}
        batch, cold = _answer_parameters(params)
        return Outcome(OutcomeKind.OK, send_ns, recv_ns, "OK", batch_size=batch, cold_start=cold)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _checked(endpoint: Endpoint, credentials: ClientCredentials | None) -> ClientCredentials:
    creds = credentials or ClientCredentials()
    if creds.wants_tls and not endpoint.secure:
        raise ConfigurationError(
            f"{endpoint.url}: TLS files are given but the URL is not https:// or grpcs://"
        )
    return creds


def connect(
    endpoint: Endpoint,
    *,
    binary: bool = True,
    pool_size: int = 256,
    connect_timeout_s: float = 5.0,
    credentials: ClientCredentials | None = None,
) -> HttpClient | GrpcClient:
    """A client for ``endpoint``; call inside the event loop that will use it and close it
    (``async with``). Nothing is sent until the first call. ``credentials``: token and TLS
    files for a secured server."""
    if endpoint.protocol == "grpc":
        return GrpcClient(endpoint, connect_timeout_s=connect_timeout_s, credentials=credentials)
    return HttpClient(
        endpoint,
        binary=binary,
        pool_size=pool_size,
        connect_timeout_s=connect_timeout_s,
        credentials=credentials,
    )


__all__ = [
    "PROTOCOLS",
    "TIMEOUT",
    "TRANSPORT",
    "Endpoint",
    "GrpcClient",
    "HttpClient",
    "InferInputs",
    "InputTensor",
    "ModelSpec",
    "OIPClient",
    "OIPError",
    "Outcome",
    "OutcomeKind",
    "RepositoryModel",
    "TensorSpec",
    "connect",
    "make_inputs",
    "parse_endpoint",
    "reason_in",
]
