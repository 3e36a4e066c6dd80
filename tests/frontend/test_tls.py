"""TLS on the live front door with certificates made at test time: stock tritonclient (HTTP and
gRPC) and Clockwork's own client over TLS with a token, mutual TLS refusing a client without a
certificate, and clear start-up errors for bad certificate files."""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.error import URLError

import gevent.ssl
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from clockwork.client.credentials import ClientCredentials
from clockwork.client.oip_client import OIPError, connect, make_inputs, parse_endpoint
from clockwork.core.errors import ConfigurationError
from clockwork.frontend.auth import FrontDoorSecurity
from clockwork.frontend.tls import load_tls

from support.certs import Pki, make_pki
from support.front_door import FrontDoor
from support.security import TOKEN, TOKEN_HEADERS
from support.triton_clients import http_client

# geventhttpclient (under tritonclient.http) checks the host name with a deprecated function
GEVENT_HOSTNAME_CHECK = pytest.mark.filterwarnings(
    "ignore:ssl.match_hostname\\(\\) is deprecated:DeprecationWarning"
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_door(pki: Pki) -> Iterator[FrontDoor]:
    """TLS and an inference token."""
    tls = load_tls(pki.server_cert, pki.server_key)
    door = FrontDoor(FrontDoorSecurity(token=TOKEN.encode(), tls=tls))
    yield door
    door.close()


@pytest.fixture(scope="module")
def mtls_door(pki: Pki) -> Iterator[FrontDoor]:
    """Mutual TLS, no token."""
    door = FrontDoor(FrontDoorSecurity(tls=load_tls(pki.server_cert, pki.server_key, pki.ca)))
    yield door
    door.close()


def _inputs() -> list[tg.InferInput]:
    out = []
    for name in ("a", "b"):
        t = tg.InferInput(name, [1, 4], "FP32")
        t.set_data_from_numpy(np.full((1, 4), 2, dtype=np.float32))
        out.append(t)
    return out


def _http_inputs() -> list[object]:
    import tritonclient.http as th

    out = []
    for name in ("a", "b"):
        t = th.InferInput(name, [1, 4], "FP32")
        t.set_data_from_numpy(np.full((1, 4), 2, dtype=np.float32))
        out.append(t)
    return out


def _context_factory(pki: Pki, client_cert: bool = False) -> object:
    def factory() -> ssl.SSLContext:
        ctx: ssl.SSLContext = gevent.ssl.create_default_context(cafile=str(pki.ca))
        if client_cert:
            ctx.load_cert_chain(pki.client_cert, pki.client_key)
        return ctx

    return factory


@GEVENT_HOSTNAME_CHECK
def test_tritonclient_http_over_tls_with_a_token(tls_door: FrontDoor, pki: Pki) -> None:
    url = f"127.0.0.1:{tls_door.http_port}"
    with http_client(url, ssl=True, ssl_context_factory=_context_factory(pki)) as c:
        assert c.is_server_live()
        with pytest.raises(InferenceServerException) as e:
            c.infer("add", _http_inputs())
        assert e.value.status() == "401"
        result = c.infer("add", _http_inputs(), headers=dict(TOKEN_HEADERS))
        assert result.as_numpy("sum").tolist() == [[4, 4, 4, 4]]


def test_plain_http_to_the_tls_port_gets_no_answer(tls_door: FrontDoor) -> None:
    with pytest.raises((URLError, ConnectionError)):
        urllib.request.urlopen(f"http://127.0.0.1:{tls_door.http_port}/v2/health/live", timeout=5)


def test_a_client_that_does_not_trust_the_certificate_is_refused(tls_door: FrontDoor) -> None:
    ctx = ssl.create_default_context()  # the system's CAs: not the test CA
    with pytest.raises(URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"{tls_door.url}/v2/health/live", timeout=5, context=ctx)


def test_tritonclient_grpc_over_tls_with_a_token(tls_door: FrontDoor, pki: Pki) -> None:
    with tg.InferenceServerClient(
        tls_door.grpc_target, ssl=True, root_certificates=str(pki.ca)
    ) as c:
        assert c.is_server_live()
        with pytest.raises(InferenceServerException) as e:
            c.infer("add", _inputs())
        assert e.value.status() == "StatusCode.UNAUTHENTICATED"
        result = c.infer("add", _inputs(), headers=TOKEN_HEADERS)
        assert result.as_numpy("sum").tolist() == [[4, 4, 4, 4]]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_our_client_over_tls_with_a_token(tls_door: FrontDoor, pki: Pki, protocol: str) -> None:
    url = (
        f"https://127.0.0.1:{tls_door.http_port}"
        if protocol == "http"
        else f"grpcs://{tls_door.grpc_target}"
    )
    endpoint = parse_endpoint(url)

    async def go(credentials: ClientCredentials) -> tuple[str, bool]:
        async with connect(endpoint, credentials=credentials) as client:
            spec = await client.model_metadata("add")
            outcome = await client.infer("add", make_inputs(spec, "zeros"), timeout_us=None)
            return spec.name, outcome.ok

    assert asyncio.run(go(ClientCredentials(TOKEN, ca=pki.ca))) == ("add", True)
    with pytest.raises(OIPError) as e:
        asyncio.run(go(ClientCredentials("wrong", ca=pki.ca)))
    assert e.value.code in (401, "UNAUTHENTICATED")


def test_our_client_refuses_tls_files_with_a_plain_url(pki: Pki) -> None:
    with pytest.raises(ConfigurationError, match="not https"):
        connect(parse_endpoint("http://127.0.0.1:1"), credentials=ClientCredentials(ca=pki.ca))


@GEVENT_HOSTNAME_CHECK
def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_door: FrontDoor, pki: Pki) -> None:
    url = f"127.0.0.1:{mtls_door.http_port}"
    with http_client(url, ssl=True, ssl_context_factory=_context_factory(pki)) as c:
        with pytest.raises(Exception) as e:  # the handshake fails: gevent's SSL or socket error
            c.is_server_live()
        assert not isinstance(e.value, AssertionError)
    with http_client(url, ssl=True, ssl_context_factory=_context_factory(pki, True)) as c:
        assert c.is_server_live()
        assert c.infer("add", _http_inputs()).as_numpy("diff").tolist() == [[0, 0, 0, 0]]
    with tg.InferenceServerClient(
        mtls_door.grpc_target, ssl=True, root_certificates=str(pki.ca)
    ) as c:
        with pytest.raises(InferenceServerException) as ge:
            c.is_server_live(client_timeout=5)
        assert ge.value.status() == "StatusCode.UNAVAILABLE"
    with tg.InferenceServerClient(
        mtls_door.grpc_target,
        ssl=True,
        root_certificates=str(pki.ca),
        private_key=str(pki.client_key),
        certificate_chain=str(pki.client_cert),
    ) as c:
        assert c.is_server_live()


def test_bad_certificate_files_are_clear_errors(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not match"):
        load_tls(pki.server_cert, pki.other_key)
    with pytest.raises(ConfigurationError, match="go together"):
        load_tls(pki.server_cert, None)
    with pytest.raises(ConfigurationError, match="--tls-ca needs"):
        load_tls(None, None, pki.ca)
    with pytest.raises(ConfigurationError, match="No such file"):
        load_tls(tmp_path / "missing.pem", pki.server_key)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match="not a PEM file"):
        load_tls(junk, pki.server_key)
    with pytest.raises(ConfigurationError, match="--tls-ca"):
        load_tls(pki.server_cert, pki.server_key, junk)
    assert load_tls(None, None) is None
    tls = load_tls(pki.server_cert, pki.server_key, pki.ca)
    assert tls is not None and tls.mutual and "PRIVATE" not in repr(tls)
