"""``client.http1``: the load generator's HTTP/1.1 client against a raw asyncio server that
answers each request with bytes the test chose, so every framing (length, chunks, until close,
interim answers) and every failure (early close, garbage, silence) is exact."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from clockwork.client.http1 import Http1Error, Http1Pool

# what the server answers to one request: the raw bytes, and whether it then closes
Answer = Callable[[bytes], tuple[bytes, bool]]


class _Server:
    """Counts connections and requests; answers each whole request (head plus Content-Length
    body) with ``answer(request)``."""

    def __init__(self, answer: Answer, delay_s: float = 0.0) -> None:
        self.answer = answer
        self.delay_s = delay_s
        self.connections = 0
        self.ended = 0  # connections the client closed
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> _Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                data, close = self.answer(head + body)
                await asyncio.sleep(self.delay_s)
                if data:
                    writer.write(data)
                    await writer.drain()
                if close:
                    break
        except asyncio.IncompleteReadError:
            self.ended += 1
        except ConnectionError:
            pass
        writer.close()


def _ok(body: bytes = b"hello", extra: bytes = b"") -> Answer:
    return lambda _req: (
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body),
        False,
    )


def _run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


def test_keep_alive_reuses_one_connection_and_sends_the_request() -> None:
    async def go() -> None:
        async with _Server(_ok()) as srv:
            pool = Http1Pool("127.0.0.1", srv.port, headers={"Authorization": "Bearer t"})
            for i in range(3):
                resp = await pool.request("POST", "/v2/x", b"body%d" % i, headers=b"A: b\r\n")
                assert (resp.status, resp.body) == (200, b"hello")
                assert resp.headers["content-length"] == "5"
            await pool.close()
        assert srv.connections == 1
        first = srv.requests[0]
        assert first.startswith(b"POST /v2/x HTTP/1.1\r\n")
        assert b"\r\nHost: 127.0.0.1:%d\r\n" % srv.port in first
        assert b"\r\nAuthorization: Bearer t\r\n" in first
        assert b"\r\nA: b\r\n" in first
        assert first.endswith(b"Content-Length: 5\r\n\r\nbody0")

    _run(go)


def test_chunked_body_with_extensions_and_trailers() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n"
    )
    plain = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    answers = iter([chunked, plain])

    async def go() -> None:
        async with _Server(lambda _r: (next(answers), False)) as srv:
            pool = Http1Pool("127.0.0.1", srv.port)
            assert (await pool.request("GET", "/")).body == b"hello world"
            # the framing ended where it should: the same connection carries the next answer
            assert (await pool.request("GET", "/")).body == b"abc"
            await pool.close()
        assert srv.connections == 1

    _run(go)


def test_interim_answers_are_skipped_and_repeated_headers_joined() -> None:
    answer = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 503 Service Unavailable\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 2\r\n\r\nno"
    )

    async def go() -> None:
        async with _Server(lambda _r: (answer, False)) as srv:
            pool = Http1Pool("127.0.0.1", srv.port)
            resp = await pool.request("GET", "/")
            assert (resp.status, resp.body, resp.headers["x-a"]) == (503, b"no", "1, 2")
            await pool.close()

    _run(go)


@pytest.mark.parametrize(
    ("answer", "ends"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", True),
        # no length: the body runs until the server closes
        (b"HTTP/1.1 200 OK\r\n\r\nok", True),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", False),
    ],
    ids=["connection-close", "http-1.0", "until-close", "http-1.0-keep-alive"],
)
def test_a_connection_is_reused_unless_its_answer_ends_it(answer: bytes, ends: bool) -> None:
    async def go() -> None:
        async with _Server(lambda _r: (answer, ends)) as srv:
            pool = Http1Pool("127.0.0.1", srv.port)
            for _ in range(2):
                assert (await pool.request("GET", "/")).body == b"ok"
            await pool.close()
        assert srv.connections == (2 if ends else 1)

    _run(go)


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"", "closed the connection before answering"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "before answering"),
        (b"SMTP ready\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    ],
    ids=["closed", "truncated", "not-http", "bad-header", "bad-length", "bad-chunk"],
)
def test_no_valid_answer_is_an_http1_error_and_the_pool_recovers(answer: bytes, match: str) -> None:
    answers = iter([(answer, True), (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk", False)])

    async def go() -> None:
        async with _Server(lambda _r: next(answers)) as srv:
            pool = Http1Pool("127.0.0.1", srv.port, limit=1)
            with pytest.raises(Http1Error, match=match):
                await pool.request("GET", "/")
            # the broken connection was dropped and its slot given back
            assert (await pool.request("GET", "/")).body == b"k"
            await pool.close()
        assert srv.connections == 2

    _run(go)


def test_timeout_drops_the_connection_and_frees_its_slot() -> None:
    answers = iter([(b"", False), (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nk", False)])

    async def go() -> None:
        async with _Server(lambda _r: next(answers)) as srv:
            pool = Http1Pool("127.0.0.1", srv.port, limit=1)
            with pytest.raises(TimeoutError):
                await pool.request("GET", "/", timeout_s=0.05)
            assert (await pool.request("GET", "/", timeout_s=2)).body == b"k"
            await pool.close()
        assert srv.connections == 2  # the silent one could not carry the next request

    _run(go)


def test_the_limit_bounds_connections_and_queued_requests_all_finish() -> None:
    async def go() -> None:
        async with _Server(_ok()) as srv:
            pool = Http1Pool("127.0.0.1", srv.port, limit=2)
            resps = await asyncio.gather(*(pool.request("GET", "/") for _ in range(9)))
            assert [r.body for r in resps] == [b"hello"] * 9
            # a request waiting for a slot that is cancelled passes nothing on wrongly
            waiting = [asyncio.ensure_future(pool.request("GET", "/")) for _ in range(4)]
            waiting[3].cancel()
            done = await asyncio.gather(*waiting, return_exceptions=True)
            assert [d.body for d in done[:3] if not isinstance(d, BaseException)] == [b"hello"] * 3
            await pool.close()
        assert srv.connections <= 2
        assert len(srv.requests) == 12

    _run(go)


def test_unanswered_connect_is_an_os_error() -> None:
    async def go() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        pool = Http1Pool("127.0.0.1", port)
        with pytest.raises(OSError):
            await pool.request("GET", "/")
        await pool.close()

    _run(go)


def test_closing_the_pool_closes_idle_connections_and_those_in_use_after_their_answer() -> None:
    async def go() -> None:
        async with _Server(_ok(), delay_s=0.2) as srv:
            pool = Http1Pool("127.0.0.1", srv.port)
            await pool.request("GET", "/")  # one connection, now idle
            busy = asyncio.ensure_future(pool.request("GET", "/"))  # takes the idle one
            late = asyncio.ensure_future(pool.request("GET", "/"))  # opens a second
            await asyncio.sleep(0.05)
            await pool.close()
            assert [(await busy).body, (await late).body] == [b"hello", b"hello"]
            with pytest.raises(Http1Error, match="closed"):
                await pool.request("GET", "/")
            await asyncio.sleep(0.1)
            assert (srv.connections, srv.ended) == (2, 2)

    _run(go)
