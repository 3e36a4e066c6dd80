"""What the link handshake costs, and what hostile peers cost a worker now.

A server (``serve`` with a cluster secret, handler: answer pings) runs in a child process; this
process measures:

1. the cost of the handshake on connect: ``connect`` (TCP connect plus handshake) against a
   plain ``asyncio.open_connection`` (TCP connect alone) to the same server, p50 over
   ``--connects`` each, alternated;
2. junk before the handshake (16 MiB of bytes, and a frame header announcing 4 GiB then
   16 MiB): seconds until the server closed, and the server's RSS before, peak and after;
3. a frame of nested empty arrays after the handshake (a peer with the secret, 16 MiB): the
   same figures.

The child reports its RSS (``VmRSS``) and peak (``VmHWM``, reset before each attack through
``/proc/self/clear_refs``) from ``/proc``: Linux only.

    .venv/bin/python bench/link_attacks.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

from clockwork.transport import Ping, Pong, StreamConnection, connect, pong_for, serve
from clockwork.transport.cluster_secret import child_env, new_secret

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.raw_link import open_raw_link

HOST = "127.0.0.1"
MIB = 1 << 20


# ---- the server (child process) -----------------------------------------------------------------


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


async def _answer(conn: StreamConnection) -> None:
    async for msg in conn:
        if isinstance(msg, Ping):
            if msg.seq == -1:  # a memory report, asked for by the parent
                rss, hwm = _status("VmRSS"), _status("VmHWM")
                await conn.send(Pong(0, -1, rss, hwm))
            elif msg.seq == -2:  # reset the peak
                with contextlib.suppress(OSError):
                    Path("/proc/self/clear_refs").write_text("5")
                await conn.send(Pong(0, -2, 0, None))
            else:
                await conn.send(pong_for(msg))


async def _serve_child() -> None:
    secret = os.environ["CLOCKWORK_CLUSTER_SECRET"].encode()
    server = await serve(HOST, 0, _answer, secret=secret, server_id="bench")
    print(server.port, flush=True)
    await asyncio.Event().wait()


# ---- the attacks (this process) -----------------------------------------------------------------


async def _memory(port: int, secret: bytes, reset: bool = False) -> tuple[int, int]:
    conn = await connect(HOST, port, secret=secret, sender_id="probe")
    await conn.send(Ping(0, -2 if reset else -1))
    pong = await conn.recv()
    assert isinstance(pong, Pong)
    conn.close()
    await conn.wait_closed()
    return pong.ping_sent_ns, pong.min_delta_ns or 0


async def _until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> float:
    t0 = time.perf_counter()
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass
    elapsed = time.perf_counter() - t0
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return elapsed


async def _attack(port: int, secret: bytes, name: str, data: bytes, handshake: bool) -> None:
    await _memory(port, secret, reset=True)
    before, _ = await _memory(port, secret)
    if handshake:
        reader, writer = await open_raw_link(HOST, port, secret=secret)
    else:
        reader, writer = await asyncio.open_connection(HOST, port)
    t0 = time.perf_counter()
    writer.write(data)
    await _until_closed(reader, writer)
    closed_s = time.perf_counter() - t0
    await asyncio.sleep(0.2)
    after, peak = await _memory(port, secret)
    print(
        f"| {name} | {len(data) / MIB:.1f} MiB | {closed_s * 1000:.0f} ms | "
        f"{before / MIB:.1f} | {peak / MIB:.1f} | {after / MIB:.1f} |"
    )


def _nested_frame(total: int) -> bytes:
    inner = b"\xdc\x10\x00" + b"\x90" * 4096  # an array of 4096 empty arrays
    n = total // len(inner)
    payload = b"\x93\x0b\x00\xdd" + struct.pack(">I", n) + inner * n
    return struct.pack(">I", len(payload)) + payload


async def _run(port: int, secret: bytes, connects: int) -> None:
    with_hs: list[float] = []
    plain: list[float] = []
    for _ in range(connects):
        t0 = time.perf_counter()
        conn = await connect(HOST, port, secret=secret, sender_id="bench")
        with_hs.append(time.perf_counter() - t0)
        conn.close()
        await conn.wait_closed()
        t0 = time.perf_counter()
        _, writer = await asyncio.open_connection(HOST, port)
        plain.append(time.perf_counter() - t0)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    print(
        f"connect: TCP only p50 {statistics.median(plain) * 1e6:.0f} us, "
        f"TCP + handshake p50 {statistics.median(with_hs) * 1e6:.0f} us "
        f"({connects} each)\n"
    )
    print("| attack | sent | closed after | RSS before (MiB) | peak | after |")
    print("|---|---:|---:|---:|---:|---:|")
    await _attack(port, secret, "junk before the handshake", os.urandom(16 * MIB), False)
    await _attack(
        port,
        secret,
        "frame header of 4 GiB before the handshake",
        b"\xff\xff\xff\xff" + bytes(16 * MIB),
        False,
    )
    await _attack(
        port, secret, "nested empty arrays after the handshake", _nested_frame(16 * MIB), True
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--connects", type=int, default=200)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        asyncio.run(_serve_child())
        return
    secret = new_secret()
    child = subprocess.Popen(
        [sys.executable, __file__, "--child"],
        stdout=subprocess.PIPE,
        env=child_env(secret),
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        asyncio.run(_run(port, secret, args.connects))
    finally:
        child.terminate()
        child.wait()


if __name__ == "__main__":
    main()
