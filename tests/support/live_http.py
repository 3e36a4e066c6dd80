"""The HTTP front door on a real 127.0.0.1 port, served by a loop in a background thread, and
a raw HTTP call against it (what a client library would never send)."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.error import HTTPError

from aiohttp import web

from clockwork.frontend.http_server import start_http

from support.fake_model_server import FakeModelServer


class LiveServer:
    """``start_http`` on a free port, served by an event loop in a background thread."""

    def __init__(self, server: FakeModelServer, **kw: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runner: web.AppRunner = asyncio.run_coroutine_threadsafe(
            start_http(server, "127.0.0.1", 0, **kw), self.loop
        ).result(10)
        self.port: int = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    live: tuple[LiveServer, FakeModelServer],
    method: str,
    path: str,
    body: bytes | dict[str, Any] | list[Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    data = json.dumps(body).encode() if isinstance(body, dict | list) else body
    req = urllib.request.Request(
        live[0].url + path, data=data, method=method, headers=dict(headers or {})
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return Reply(resp.status, dict(resp.headers), resp.read())
    except HTTPError as e:
        with e:
            return Reply(e.code, dict(e.headers), e.read())
