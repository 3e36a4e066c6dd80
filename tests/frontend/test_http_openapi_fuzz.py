"""A property-based pass over the shipped OpenAPI description: schemathesis generates requests
for every documented operation, both schema-valid and deliberately invalid ones, and sends them
to the live HTTP front door over ``FakeModelServer``. No answer may be a 5xx, every status and
content type must be documented, every JSON answer must match its schema, and invalid requests
must be refused. The same pass runs, with fewer examples, against a server that requires a token
and enables model control, the client sending the control token; there every operation but health
and the document must also refuse the same request without a token (401)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from clockwork.frontend.auth import FrontDoorSecurity  # noqa: E402
from clockwork.frontend.http_server import start_http  # noqa: E402

from support.fake_model_server import FakeModelServer  # noqa: E402
from support.security import CONTROL_HEADERS, TOKEN, control_enabled  # noqa: E402

DOCUMENT = json.loads(resources.files("clockwork.frontend").joinpath("openapi.json").read_text())

schema = schemathesis.openapi.from_dict(DOCUMENT)
# the same cases on every run: a failure here is a reproducible bug, not a flaky test
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    deterministic=True,
    database="none",
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/openapi.json", "/v2/openapi.json"})
SETTINGS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
}


def _serve(security: FrontDoorSecurity | None) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(
        start_http(FakeModelServer(), "127.0.0.1", 0, max_body_bytes=2**20, security=security),
        loop,
    ).result(10)
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The default policy: no token, model control refused (403, documented)."""
    yield from _serve(None)


@pytest.fixture(scope="module")
def guarded_url() -> Iterator[str]:
    """A token required, model control enabled."""
    yield from _serve(control_enabled(token=TOKEN))


@schema.parametrize()  # type: ignore[untyped-decorator]
@settings(max_examples=30, **SETTINGS)  # type: ignore[arg-type]
def test_openapi_operations(case: Any, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=CHECKS)


@schema.parametrize()  # type: ignore[untyped-decorator]
@settings(max_examples=8, **SETTINGS)  # type: ignore[arg-type]
def test_openapi_operations_with_tokens(case: Any, guarded_url: str) -> None:
    # the case may carry an Authorization of its own (the document declares bearer auth)
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    case.headers = {**headers, **CONTROL_HEADERS}
    answer = case.call_and_validate(base_url=guarded_url, checks=CHECKS)
    assert answer.status_code not in (401, 403), (case.operation.path, answer.text)
    if case.operation.path not in OPEN_PATHS:
        # an empty Authorization replaces whatever the case carries: no token at all
        refused = case.call(base_url=guarded_url, headers={"Authorization": ""})
        assert refused.status_code == 401, (case.operation.path, refused.text)
