"""Who may call what on the front door: bearer tokens and the model-control switch.

Every route and RPC is in one of three classes (``Access``):

- ``OPEN``: liveness and readiness (orchestrators probe them without credentials) and the OpenAPI
  document (the same text ships in the package).
- ``GUARDED``: inference, metadata, statistics, the repository index and ``/metrics``; they need
  the inference token when one is set (the control token works too).
- ``CONTROL``: what changes what is served (repository load and unload). Refused unless model
  control is enabled, and then only with the control token: an inference token is not enough.

A missing or unknown token is ``401``/``UNAUTHENTICATED`` (HTTP adds ``WWW-Authenticate:
Bearer``); a known token without the right, or model control switched off, is
``403``/``PERMISSION_DENIED``. The check runs before a request's body is read (an aiohttp
middleware; a gRPC interceptor, before the message is parsed), so a client without a token cannot
make the server buffer a large body. Tokens are compared as SHA-256 digests with
``hmac.compare_digest``: constant time, and independent of the presented token's length.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web
from aiohttp.typedefs import Middleware

from clockwork.core.errors import ConfigurationError
from clockwork.frontend.auth_throttle import FailedAttempts, grpc_peer_address
from clockwork.frontend.tokens import CONTROL_TOKEN_ENV, check_token

if TYPE_CHECKING:
    from clockwork.frontend.tls import TlsFiles

__all__ = [
    "Access",
    "FrontDoorSecurity",
    "GrpcAuthInterceptor",
    "Refusal",
    "grpc_access",
    "http_access",
    "http_middleware",
]

_BEARER = "bearer "


class Access(enum.Enum):
    OPEN = "open"
    GUARDED = "guarded"
    CONTROL = "control"


#: HTTP routes by ``resource.canonical`` (and method, for control); any other route is GUARDED,
#: and so is a path that matches no route (a 404 is not told to a client without a token)
_OPEN_ROUTES = frozenset(
    {"/v2/health/live", "/v2/health/ready", "/openapi.json", "/v2/openapi.json"}
)
_CONTROL_ROUTES = frozenset(
    {"/v2/repository/models/{model}/load", "/v2/repository/models/{model}/unload"}
)
_GRPC_SERVICE = "/inference.GRPCInferenceService/"
_OPEN_RPCS = frozenset({"ServerLive", "ServerReady"})
_CONTROL_RPCS = frozenset({"RepositoryModelLoad", "RepositoryModelUnload"})


def http_access(method: str, canonical: str | None) -> Access:
    """The class of an HTTP route (``canonical``: its resource's pattern; None: no route)."""
    if canonical in _OPEN_ROUTES:
        return Access.OPEN
    if canonical in _CONTROL_ROUTES and method == "POST":
        return Access.CONTROL
    return Access.GUARDED


def grpc_access(method: str) -> Access:
    """The class of a gRPC method (``/package.Service/Method``)."""
    if method.startswith(_GRPC_SERVICE):
        name = method[len(_GRPC_SERVICE) :]
        if name in _OPEN_RPCS:
            return Access.OPEN
        if name in _CONTROL_RPCS:
            return Access.CONTROL
    return Access.GUARDED


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call is refused, in both protocols' terms."""

    http_status: int
    grpc_code: str  # a ``grpc.StatusCode`` member name
    message: str
    reason: str


_MISSING = Refusal(
    401,
    "UNAUTHENTICATED",
    "this server requires a token: send 'Authorization: Bearer <token>'",
    "UNAUTHENTICATED",
)
_WRONG = Refusal(401, "UNAUTHENTICATED", "the bearer token is not valid", "UNAUTHENTICATED")
_CONTROL_OFF = Refusal(
    403,
    "PERMISSION_DENIED",
    "model control (repository load/unload) is disabled on this server; start it with "
    "--allow-model-control and a control token (--control-token-file or "
    f"{CONTROL_TOKEN_ENV}) to enable it",
    "MODEL_CONTROL_DISABLED",
)
_NOT_CONTROL = Refusal(
    403,
    "PERMISSION_DENIED",
    "model control needs the control token; this token only allows inference and metadata",
    "PERMISSION_DENIED",
)


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


def _bearer(header: str | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` value (the scheme is case-insensitive,
    RFC 7235); None for no header or another scheme."""
    if header is None or header[:7].lower() != _BEARER:
        return None
    return header[7:].strip().encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class FrontDoorSecurity:
    """The front door's access policy and transport security.

    ``token``: needed for ``GUARDED`` calls (None: they are open). ``control_token``: the only
    credential for ``CONTROL`` calls, also accepted for ``GUARDED`` ones. ``allow_model_control``:
    without it ``CONTROL`` calls are refused whatever the credential; with it a control token is
    required. ``tls``: serve HTTPS and gRPC over TLS (``clockwork.frontend.tls``). The default
    object refuses model control and leaves the rest open, over plain TCP. Tokens never appear in
    ``repr``. ``attempts``: the wrong tokens counted per address, one count for both protocols
    (``clockwork.frontend.auth_throttle``)."""

    token: bytes | None = field(default=None, repr=False)
    control_token: bytes | None = field(default=None, repr=False)
    allow_model_control: bool = False
    tls: TlsFiles | None = None
    attempts: FailedAttempts = field(default_factory=FailedAttempts, repr=False, compare=False)
    _token_digest: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _control_digest: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.token is not None:
            check_token(self.token, "the token")
        if self.control_token is not None:
            check_token(self.control_token, "the control token")
        if self.allow_model_control and self.control_token is None:
            raise ConfigurationError(
                "model control is enabled but there is no control token: give "
                f"--control-token-file PATH or set {CONTROL_TOKEN_ENV}"
            )
        if self.control_token is not None and not self.allow_model_control:
            raise ConfigurationError(
                "a control token is given but model control is not enabled: add "
                "--allow-model-control (or drop the control token)"
            )
        if (
            self.token is not None
            and self.control_token is not None
            and hmac.compare_digest(self.token, self.control_token)
        ):
            raise ConfigurationError(
                "the control token equals the inference token; every inference client could "
                "then load and unload models: use two different tokens"
            )
        if self.token is not None:
            object.__setattr__(self, "_token_digest", _digest(self.token))
        if self.control_token is not None:
            object.__setattr__(self, "_control_digest", _digest(self.control_token))

    @property
    def requires_token(self) -> bool:
        return self.token is not None

    def check(self, access: Access, authorization: str | None) -> Refusal | None:
        """None if a call of class ``access`` with this ``Authorization`` value may proceed,
        else why not."""
        if access is Access.OPEN:
            return None
        if access is Access.CONTROL:
            if not self.allow_model_control:
                return _CONTROL_OFF
            presented = _bearer(authorization)
            if presented is None:
                return _MISSING
            d = _digest(presented)
            if self._control_digest is not None and hmac.compare_digest(d, self._control_digest):
                return None
            if self._token_digest is not None and hmac.compare_digest(d, self._token_digest):
                return _NOT_CONTROL
            return _WRONG
        if self._token_digest is None:
            return None
        presented = _bearer(authorization)
        if presented is None:
            return _MISSING
        d = _digest(presented)
        # both compared whatever the first says: the time taken does not tell which matched
        ok = hmac.compare_digest(d, self._token_digest)
        if self._control_digest is not None:
            ok |= hmac.compare_digest(d, self._control_digest)
        return None if ok else _WRONG


# --- HTTP ---------------------------------------------------------------------------------------

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _locked_out(attempts: FailedAttempts) -> Refusal:
    return Refusal(
        429,
        "RESOURCE_EXHAUSTED",
        f"{attempts.max_failures} wrong tokens from this address; try again later",
        "TOO_MANY_FAILED_ATTEMPTS",
    )


def _refusal_response(refusal: Refusal) -> web.Response:
    # the same body as every other error of the front door
    body = json.dumps({"error": refusal.message, "reason": refusal.reason}, separators=(",", ":"))
    resp = web.Response(
        body=body.encode(), status=refusal.http_status, content_type="application/json"
    )
    if refusal.http_status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="clockwork"'
    return resp


def http_middleware(security: FrontDoorSecurity | None) -> Middleware:
    """An aiohttp middleware that applies ``security`` (None: the default policy) to every
    request before its handler runs. The access class of each route is worked out once and
    cached: a request costs a dict lookup and, with a token, one digest and compare."""
    policy = security or FrontDoorSecurity()
    classes: dict[tuple[str, str | None], Access] = {}
    attempts = policy.attempts

    @web.middleware
    async def authorize(request: web.Request, handler: _Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        key = (request.method, resource.canonical if resource is not None else None)
        access = classes.get(key)
        if access is None:
            access = classes[key] = http_access(*key)
        address = request.remote or ""
        wait_s = attempts.blocked_s(address) if access is not Access.OPEN else 0.0
        if wait_s:
            attempts.refused += 1
            resp = _refusal_response(_locked_out(attempts))
            resp.headers["Retry-After"] = str(max(1, round(wait_s)))
        else:
            refusal = policy.check(access, request.headers.get("Authorization"))
            if refusal is None:
                return await handler(request)
            if refusal is _WRONG:
                attempts.failed(address)
            resp = _refusal_response(refusal)
        if not request.content.is_eof():
            # the body is still coming: answer, then close the connection instead of reading
            # (and discarding) the rest of it, which aiohttp would otherwise do for keep-alive
            resp.force_close()
            await resp.prepare(request)
            await resp.write_eof()
            request.protocol.force_close()
        return resp

    return authorize


# --- gRPC ---------------------------------------------------------------------------------------


def _grpc_authorization(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            return value if isinstance(value, str) else bytes(value).decode("latin-1")
    return None


class GrpcAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A ``grpc.aio.ServerInterceptor`` applying a ``FrontDoorSecurity`` to every RPC before its
    request is read: a refused call gets a handler that aborts with the refusal's code (and its
    reason as the ``clockwork-reason`` trailing metadata). Wrong tokens count against the
    caller's address as on HTTP; while some address is locked out, guarded calls get a handler
    that looks at their peer first (the address is known only once the call runs)."""

    def __init__(self, security: FrontDoorSecurity | None) -> None:
        self.security = security or FrontDoorSecurity()
        self._refusers: dict[tuple[Refusal, bool, bool], grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        access = grpc_access(details.method)
        refusal = self.security.check(access, _grpc_authorization(details.invocation_metadata))
        handler = await continuation(details)
        if handler is None or access is Access.OPEN:
            return handler
        attempts = self.security.attempts
        if refusal is _WRONG or attempts.locking():
            return _peer_checked(handler, refusal, attempts)
        if refusal is None:
            return handler
        return self._refuser(refusal, handler.request_streaming, handler.response_streaming)

    def _refuser(
        self, refusal: Refusal, request_streaming: bool, response_streaming: bool
    ) -> grpc.RpcMethodHandler:
        key = (refusal, request_streaming, response_streaming)
        handler = self._refusers.get(key)
        if handler is None:
            handler = self._refusers[key] = _refusing_handler(
                refusal, request_streaming, response_streaming
            )
        return handler


def _peer_checked(
    handler: grpc.RpcMethodHandler, refusal: Refusal | None, attempts: FailedAttempts
) -> grpc.RpcMethodHandler:
    """``handler`` behind its caller's address: a locked-out address is refused (its token not
    looked at), a wrong token is counted against it, then ``refusal`` or the call as usual."""
    from clockwork.frontend.api import REASON_METADATA_KEY

    async def gate(context: grpc.aio.ServicerContext) -> None:
        address = grpc_peer_address(context.peer() or "")
        wait_s = attempts.blocked_s(address)
        if wait_s:
            attempts.refused += 1
            locked = _locked_out(attempts)
            await context.abort(
                grpc.StatusCode[locked.grpc_code],
                f"{locked.message} (in {max(1, round(wait_s))} s)",
                trailing_metadata=((REASON_METADATA_KEY, locked.reason),),
            )
        if refusal is not None:
            if refusal is _WRONG:
                attempts.failed(address)
            await context.abort(
                grpc.StatusCode[refusal.grpc_code],
                refusal.message,
                trailing_metadata=((REASON_METADATA_KEY, refusal.reason),),
            )

    # a refused call's bytes are never parsed; an admitted one's as its own handler would
    parse = handler.request_deserializer if refusal is None else None
    write = handler.response_serializer
    if handler.unary_unary is not None:
        call = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await gate(context)
            return await call(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, parse, write)
    if handler.stream_stream is not None:
        stream = handler.stream_stream

        async def answers(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await gate(context)
            async for answer in stream(requests, context):
                yield answer

        return grpc.stream_stream_rpc_method_handler(answers, parse, write)
    # the service has no half-streaming method; were one added, it is refused as before
    if refusal is None:
        return handler
    return _refusing_handler(refusal, handler.request_streaming, handler.response_streaming)


def _refusing_handler(
    refusal: Refusal, request_streaming: bool, response_streaming: bool
) -> grpc.RpcMethodHandler:
    from clockwork.frontend.api import REASON_METADATA_KEY

    code = grpc.StatusCode[refusal.grpc_code]
    trailing = ((REASON_METADATA_KEY, refusal.reason),)

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, refusal.message, trailing_metadata=trailing)

    async def abort_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(code, refusal.message, trailing_metadata=trailing)
        yield  # pragma: no cover - abort raises; this makes the function a generator

    # no deserializer: the request's bytes are never parsed
    if request_streaming and response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort_stream)
    if request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort_stream)
    return grpc.unary_unary_rpc_method_handler(abort)
