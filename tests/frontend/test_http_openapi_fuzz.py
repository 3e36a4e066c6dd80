"""A property-based pass over the shipped OpenAPI description: schemathesis generates requests
for every documented operation, both schema-valid and deliberately invalid ones, and sends them
to the live HTTP front door over ``FakeModelServer``. No answer may be a 5xx, every status and
content type must be documented, every JSON answer must match its schema, and invalid requests
must be refused."""

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

from clockwork.frontend.http_server import start_http  # noqa: E402

from support.fake_model_server import FakeModelServer  # noqa: E402

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


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(
        start_http(FakeModelServer(), "127.0.0.1", 0, max_body_bytes=2**20), loop
    ).result(10)
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
def test_openapi_operations(case: Any, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=CHECKS)
