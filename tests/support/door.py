"""Servers with a door of their own on 127.0.0.1, and a raw HTTP/1.1 client socket: the door's
tests need what no client library would send (headers without their body, a trickle)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

from aiohttp import web

from clockwork.frontend.api import InferenceCall, InferenceResult
from clockwork.frontend.auth import FrontDoorSecurity
from clockwork.frontend.grpc_server import start_grpc
from clockwork.frontend.http_server import start_http
from clockwork.frontend.limits import Door, DoorLimits
from clockwork.service.bench_cluster import free_ports

from support.fake_model_server import FakeModelServer

T = TypeVar("T")

#: the fake's ``add`` model: its inference path and a valid JSON body for it
INFER = "/v2/models/add/infer"
ADD_BODY = json.dumps(
    {
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]},
            {"name": "b", "datatype": "FP32", "shape": [1, 4], "data": [1, 1, 1, 1]},
        ]
    }
).encode()


class GatedModelServer(FakeModelServer):
    """A fake whose inferences wait until the test opens the gate (``open_gate``)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0

    async def infer(self, call: InferenceCall) -> InferenceResult:
        self.waiting += 1
        try:
            await self.gate.wait()
        finally:
            self.waiting -= 1
        return await super().infer(call)


class DoorServer:
    """``start_http`` (and ``start_grpc`` when asked) with one ``Door``, on a loop thread."""

    def __init__(
        self,
        limits: DoorLimits,
        server: FakeModelServer | None = None,
        grpc: bool = False,
        security: FrontDoorSecurity | None = None,
    ) -> None:
        self.fake = server or FakeModelServer()
        self.door = Door(limits)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: web.AppRunner = self.run(
            start_http(self.fake, "127.0.0.1", 0, door=self.door, security=security)
        )
        self.port: int = self.runner.addresses[0][1]
        self.grpc: Any = None
        if grpc:
            (self.grpc_port,) = free_ports(1)
            self.grpc = self.run(start_grpc(self.fake, "127.0.0.1", self.grpc_port, door=self.door))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def call(self, fn: Any) -> Any:
        """``fn()`` on the server's loop (the door's counts belong to it)."""

        async def on_loop() -> Any:
            return fn()

        return self.run(on_loop())

    def close(self) -> None:
        if isinstance(self.fake, GatedModelServer):
            self.call(self.fake.gate.set)
        if self.grpc is not None:
            self.run(self.grpc.stop(0.1))
        self.run(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def door_server(
    limits: DoorLimits,
    server: FakeModelServer | None = None,
    grpc: bool = False,
    security: FrontDoorSecurity | None = None,
) -> Iterator[DoorServer]:
    s = DoorServer(limits, server, grpc, security)
    try:
        yield s
    finally:
        s.close()


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def head(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: test",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, after_s: float) -> None:
        self.status, self.headers, self.body, self.after_s = status, headers, body, after_s


def read_answer(s: socket.socket, timeout_s: float = 5.0) -> Answer:
    """One HTTP response from ``s`` (with a Content-Length), and how long it took to come."""
    t0 = time.monotonic()
    s.settimeout(timeout_s)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response; got {data!r}")
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body, time.monotonic() - t0)


def closed_within(s: socket.socket, timeout_s: float) -> float | None:
    """Seconds until the server closes ``s`` (reading and dropping what it sends), or None if it
    is still open after ``timeout_s``."""
    t0 = time.monotonic()
    s.settimeout(0.05)
    while time.monotonic() - t0 < timeout_s:
        try:
            if not s.recv(65536):
                return time.monotonic() - t0
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - t0
    return None
