"""An answer its client stops reading is dropped after the write timeout (the connection is
aborted), not held for ever; a client that reads slowly but keeps reading gets all of it."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import numpy as np
import pytest

from clockwork.frontend.limits import DoorLimits, Timeout

from support.door import DoorServer, head

N = 4 * 2**20  # INT32s: a 16 MiB answer, more than the sockets' buffers hold


@pytest.fixture(scope="module")
def server() -> Iterator[DoorServer]:
    # long enough that a reader starved of CPU for a moment (a loaded machine) keeps up
    srv = DoorServer(DoorLimits(write_timeout_s=1.5))
    yield srv
    srv.close()


def big_request() -> bytes:
    x = np.arange(N, dtype=np.int32)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, N],
                    "datatype": "INT32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    body = header + x.tobytes()
    return (
        head(
            "POST",
            "/v2/models/ident/infer",
            {"Content-Length": str(len(body)), "Inference-Header-Content-Length": str(len(header))},
        )
        + body
    )


def reader(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    s.connect(("127.0.0.1", port))
    return s


def read_slowly(s: socket.socket) -> bytearray:
    """A whole answer, read 4 KiB at a time."""
    got = bytearray()
    length: int | None = None
    head_end = 0
    while length is None or len(got) < head_end + length:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
        if length is None and b"\r\n\r\n" in got:
            head_end = got.index(b"\r\n\r\n") + 4
            length = int(got[:head_end].lower().split(b"\r\ncontent-length:")[1].split(b"\r")[0])
    return got


def test_an_answer_nobody_reads_is_dropped_after_the_write_timeout(server: DoorServer) -> None:
    before = server.call(lambda: server.door.timeouts[Timeout.WRITE])
    s = reader(server.port)
    try:
        s.sendall(big_request())
        deadline = time.monotonic() + 10
        while server.call(lambda: server.door.timeouts[Timeout.WRITE]) == before:
            assert time.monotonic() < deadline, "the stalled answer was never dropped"
            time.sleep(0.05)
        # the connection is gone on the server's side
        assert server.call(lambda: server.door.open_connections["http"]) == 0
    finally:
        s.close()


def test_a_slow_reader_that_keeps_reading_gets_the_whole_answer(server: DoorServer) -> None:
    before = server.call(lambda: server.door.timeouts[Timeout.WRITE])
    s = reader(server.port)
    try:
        s.sendall(big_request())
        time.sleep(0.3)  # less than the timeout: paused, then reading again
        s.settimeout(20)
        got = read_slowly(s)
        assert got.startswith(b"HTTP/1.1 200")
        head_end = got.index(b"\r\n\r\n") + 4
        header_length = int(
            got.lower().split(b"inference-header-content-length:")[1].split(b"\r")[0]
        )
        assert len(got) - head_end - header_length == 4 * N
    finally:
        s.close()
    assert server.call(lambda: server.door.timeouts[Timeout.WRITE]) == before
