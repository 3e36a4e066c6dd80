"""The HTTP and gRPC front doors over a ``FakeModelServer`` with a given ``FrontDoorSecurity``,
on an event loop of their own thread (blocking clients run in the test's thread)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from clockwork.frontend.auth import FrontDoorSecurity
from clockwork.frontend.grpc_server import start_grpc
from clockwork.frontend.http_server import start_http
from clockwork.service.bench_cluster import free_ports

from support.fake_model_server import FakeModelServer

T = TypeVar("T")


class FrontDoor:
    def __init__(self, security: FrontDoorSecurity | None, *, max_body_bytes: int = 2**20) -> None:
        self.fake = FakeModelServer()
        self.security = security
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        (self.grpc_port,) = free_ports(1)
        self.http = self.run(
            start_http(self.fake, "127.0.0.1", 0, max_body_bytes=max_body_bytes, security=security)
        )
        self.http_port: int = self.http.addresses[0][1]
        self.grpc = self.run(
            start_grpc(
                self.fake,
                "127.0.0.1",
                self.grpc_port,
                max_message_bytes=max_body_bytes,
                security=security,
            )
        )
        scheme = "https" if security is not None and security.tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def close(self) -> None:
        self.run(self.grpc.stop(None))
        self.run(self.http.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
