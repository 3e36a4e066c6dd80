"""Attacks and faults against a real front door (issue 13: overload refused at the door).

usage: python bench/attacks.py [--out bench/results] [--flood-s 5] [--only ROW,...]
                              [--slowdown X] [--shared-inputs]

Starts an emulated worker (``clockwork worker --backend emulated``, resnet50 profile: 602,112-byte
FP32 inputs) and ``clockwork serve --no-local-worker`` in front of it (shortened timeouts, see
``SERVE_FLAGS``), then runs one row per attack: a gzip bomb, JSON bombs (deep nesting, a huge
array), a 10x flood of 600 KB bodies (10x the rate the server completed in a closed-loop warm-up)
with binary tensors and a timeout, the same in JSON naming no timeout (perf_analyzer's default),
slowloris (headers a line a second), many idle connections, a connection flood, and a worker
killed with SIGKILL (then restarted on its port). For each row: requests or connections sent,
answered, lost (no answer), 5xx answers, the server's RSS before / peak / after, the p99 of the
answers that were refusals (503/429) as this client timed them (its send and its loop included)
and as the door did (``clockwork_door_refusal_seconds``: from the request's first byte to the
refusal, the bucket its p99 falls in), the worst ``/metrics`` time during the row, the loop
lateness p99 (``clockwork_loop_lateness_seconds`` from ``/metrics`` when the server has it), and
the recovery time (end of the row until a normal inference succeeds). Writes ``attacks.json`` and
``attacks.md`` into ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gzip
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLOCKWORK = [sys.executable, "-m", "clockwork.cli.main"]
READY_LINE = "Ctrl-C stops the server"
PROFILE = "resnet50_v2-V100-32GB"
HEADER_TIMEOUT_S = 3.0
IDLE_TIMEOUT_S = 5.0
SERVE_FLAGS = [
    "--header-timeout-s",
    str(HEADER_TIMEOUT_S),
    "--idle-timeout-s",
    str(IDLE_TIMEOUT_S),
    "--body-timeout-s",
    "3",
    "--max-connections",
    "512",
    "--max-inflight-body-mb",
    "128",
    "--status-interval",
    "1",
    "--no-warm",
]
TIMEOUT_US = 100_000  # the deadline of every inference: 100 ms


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- the server


class Cluster:
    """The emulated worker and ``clockwork serve`` in front of it."""

    def __init__(self, out: Path, slowdown: float = 1.0, shared_inputs: bool = False) -> None:
        self.out = out
        # the worker maps large inputs from shared memory, as serve's local worker does
        self.shared_inputs = shared_inputs
        self.profile = _profile(out, slowdown)
        # the worker and the server share a cluster secret (the link's handshake needs one)
        self.env = {**os.environ, "CLOCKWORK_CLUSTER_SECRET": secrets.token_hex(32)}
        self.worker_port = free_port()
        self.port = free_port()
        self.worker = self._start_worker()
        self.log = out / "attacks-serve.log"
        with self.log.open("wb") as f:
            self.server = subprocess.Popen(
                [
                    *CLOCKWORK,
                    "serve",
                    "--no-local-worker",
                    "--workers",
                    f"127.0.0.1:{self.worker_port}",
                    "--host",
                    "127.0.0.1",
                    "--http-port",
                    str(self.port),
                    "--grpc-port",
                    "0",
                    *SERVE_FLAGS,
                    *(["--workers-share-memory"] if shared_inputs else []),
                    # more flags to compare builds or settings with (as bench/peers reads it)
                    *shlex.split(os.environ.get("CLOCKWORK_SERVE_ARGS", "")),
                ],
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self.env,
            )
        deadline = time.monotonic() + 120
        while READY_LINE not in self.log.read_text(errors="replace"):
            if self.server.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise SystemExit(f"the server did not start; see {self.log}")
            time.sleep(0.2)

    def _start_worker(self) -> subprocess.Popen[bytes]:
        log = (self.out / "attacks-worker.log").open("ab")
        return subprocess.Popen(
            [
                *CLOCKWORK,
                "worker",
                "--backend",
                "emulated",
                "--profile",
                self.profile,
                "--models",
                "4",
                "--id",
                "w0",
                "--listen",
                f"127.0.0.1:{self.worker_port}",
                *(["--shared-inputs"] if self.shared_inputs else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=self.env,
        )

    def kill_worker(self) -> None:
        self.worker.kill()
        self.worker.wait()

    def restart_worker(self) -> None:
        self.worker = self._start_worker()

    def rss_bytes(self) -> int:
        """The server's RSS with its children's (the decode processes)."""
        total = 0
        for pid in [self.server.pid, *_children(self.server.pid)]:
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def close(self) -> None:
        for proc in (self.server, self.worker):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _profile(out: Path, slowdown: float) -> str:
    """The worker's profile: the shipped one, or a copy ``slowdown`` times slower (a device
    whose 10x flood a 2-core machine can still carry: the client and the server share it)."""
    if slowdown == 1.0:
        return PROFILE
    from importlib import resources

    data = json.loads(resources.files("clockwork.profiles").joinpath(f"{PROFILE}.json").read_text())
    data["load_ns"] = round(data["load_ns"] * slowdown)
    data["exec_ns"] = {b: round(ns * slowdown) for b, ns in data["exec_ns"].items()}
    data["measured"] = {**data["measured"], "how": f"the shipped profile, {slowdown}x slower"}
    path = out / f"attacks-profile-x{slowdown:g}.json"
    path.write_text(json.dumps(data, indent=2))
    return str(path)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


class RssSampler:
    """The server's RSS every 50 ms on a thread; ``peak`` since the last ``reset``."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(OSError):
                self.peak = max(self.peak, self.cluster.rss_bytes())

    def reset(self) -> int:
        now = self.cluster.rss_bytes()
        self.peak = now
        return now

    def stop(self) -> None:
        self._stop.set()


# --------------------------------------------------------------------------- a raw HTTP client


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    lost: int = 0
    errors_5xx: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    refusal_s: list[float] = field(default_factory=list)

    def add(self, status: int | None, took_s: float) -> None:
        self.sent += 1
        if status is None:
            self.lost += 1
            return
        self.answered += 1
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if status >= 500:
            self.errors_5xx += 1
        if status in (429, 503):
            self.refusal_s.append(took_s)


async def http(port: int, raw: bytes, timeout_s: float = 10.0) -> tuple[int | None, float]:
    """Send ``raw`` on a new connection; the response status (None: no answer) and its time
    from the first byte sent."""
    t0 = time.monotonic()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout_s
        )
        t0 = time.monotonic()
        writer.write(raw)
        line = await asyncio.wait_for(reader.readline(), timeout_s)
        took = time.monotonic() - t0
        if not line:
            return None, took
        status = int(line.split()[1])
        length = 0
        while True:
            h = await asyncio.wait_for(reader.readline(), timeout_s)
            if h in (b"\r\n", b""):
                break
            name, _, value = h.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if length:
            body = await asyncio.wait_for(reader.readexactly(length), timeout_s)
            if status >= 400:
                REASONS[_reason(status, body)] += 1
            if status in (429, 503):
                REFUSALS.append((_refused_when(body), took))
        return status, took
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
        return None, time.monotonic() - t0
    finally:
        if writer is not None:
            writer.close()


#: (when, seconds) of every refusal read: "queued" for a request the scheduler took and then
#: could not start in time (answered at its latest start), "arrival" for the rest (the door, or
#: the scheduler at arrival), told by the refusal's message
REFUSALS: list[tuple[str, float]] = []
_AFTER_QUEUEING = (
    b"could start it in time",
    b"busy until past its deadline",
    b"did not come back by its deadline",
    b"shed under overload",
    b"could not be loaded in time",
)


def _refused_when(body: bytes) -> str:
    return "queued" if any(m in body for m in _AFTER_QUEUEING) else "arrival"


#: "status reason" of every error answer read (the JSON body's ``reason``), for the row's table
REASONS: collections.Counter[str] = collections.Counter()


def _reason(status: int, body: bytes) -> str:
    try:
        return f"{status} {json.loads(body).get('reason', '?')}"
    except (ValueError, AttributeError):
        return f"{status} ?"


def request(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode()


class Target:
    """The model under attack and a normal (binary, 600 KB) inference for it."""

    def __init__(self, port: int) -> None:
        self.port = port
        import urllib.request

        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(base + "/v2/repository/index", timeout=10) as r:
            self.model = json.loads(r.read())[0]["name"]
        with urllib.request.urlopen(base + f"/v2/models/{self.model}", timeout=10) as r:
            meta = json.loads(r.read())
        spec = meta["inputs"][0]
        self.input = spec["name"]
        self.width = int(spec["shape"][-1])
        self.path = f"/v2/models/{self.model}/infer"
        payload = bytes(4 * self.width)
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": self.input,
                        "datatype": "FP32",
                        "shape": [1, self.width],
                        "parameters": {"binary_data_size": len(payload)},
                    }
                ],
                "parameters": {"timeout": TIMEOUT_US, "binary_data_output": True},
            }
        ).encode()
        self.normal = request(
            self.path,
            header + payload,
            {
                "Inference-Header-Content-Length": str(len(header)),
                "Content-Type": "application/octet-stream",
            },
        )
        values = [0.25] * self.width
        as_json = {
            "inputs": [
                {"name": self.input, "datatype": "FP32", "shape": [1, self.width], "data": values}
            ]
        }
        self.normal_json = request(
            self.path,
            json.dumps(as_json, separators=(",", ":")).encode(),
            {"Content-Type": "application/json"},
        )

    async def normal_ok(self, timeout_s: float = 5.0) -> bool:
        status, _ = await http(self.port, self.normal, timeout_s)
        return status == 200


# --------------------------------------------------------------------------- the attacks


async def gzip_bomb(t: Target, tally: Tally, _: argparse.Namespace) -> str:
    inner = b'{"inputs": [' + b" " * (60 * 2**20) + b"]}"
    bomb = gzip.compress(inner, 9)
    raw = request(t.path, bomb, {"Content-Encoding": "gzip", "Content-Type": "application/json"})
    for _ in range(3):
        for status, took in await asyncio.gather(*(http(t.port, raw, 30) for _ in range(8))):
            tally.add(status, took)
    return f"{len(bomb) // 1024} KiB gzip -> {len(inner) // 2**20} MiB, 24 sent 8 at a time"


async def json_bomb(t: Target, tally: Tally, _: argparse.Namespace) -> str:
    depth = 200_000
    deep = b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"
    huge = (
        b'{"inputs": [{"name": "%s", "datatype": "FP32", "shape": [1, 4000000], "data": ['
        % t.input.encode()
        + b"0," * 3_999_999
        + b"0]}]}"
    )
    headers = {"Content-Type": "application/json"}
    for body in (deep, huge):
        for status, took in await asyncio.gather(
            *(http(t.port, request(t.path, body, headers), 30) for _ in range(4))
        ):
            tally.add(status, took)
    return f"4 x {depth}-deep nesting, 4 x a {len(huge) // 2**20} MiB array of 4M numbers"


async def servable_rate(t: Target, raw: bytes, seconds: float = 3.0) -> float:
    """Requests of ``raw`` served per second by 4 closed loops, once one has been served (the
    model loaded: the server starts with ``--no-warm``, and a cold model's refusals are quick)."""
    give_up = time.monotonic() + 60
    while (await http(t.port, raw))[0] != 200 and time.monotonic() < give_up:
        await asyncio.sleep(0.05)
    done = 0
    end = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < end:
            status, _ = await http(t.port, raw)
            done += status == 200

    await asyncio.gather(*(loop() for _ in range(4)))
    return done / seconds


#: the door's refusal-time buckets when a flood began (after its warm-up), for its row
FLOOD_STARTED: dict[str, dict[float, float] | None] = {}


async def flood_of(raw: bytes, what: str, t: Target, tally: Tally, seconds: float) -> str:
    """``raw`` sent at 10x the rate the server completes it in a closed loop, for ``seconds``."""
    rate = await servable_rate(t, raw)
    # the door's refusal times count from here: the warm-up's own refusals (requests taken,
    # then answered at their latest start) are not the flood's
    FLOOD_STARTED["refusals"] = histogram_buckets((await scrape(t.port))[0], REFUSAL_TIME)
    target_rate = 10 * max(rate, 1.0)
    first = len(REFUSALS)
    progress(f"  servable rate {rate:.0f} req/s; flooding at {target_rate:.0f} req/s")
    tasks = []
    t0 = time.monotonic()
    n = 0
    while (now := time.monotonic()) - t0 < seconds:
        due = t0 + n / target_rate
        if due > now:
            await asyncio.sleep(due - now)
        tasks.append(asyncio.create_task(http(t.port, raw, 15)))
        n += 1
    sent_s = time.monotonic() - t0
    for status, took in await asyncio.gather(*tasks):
        tally.add(status, took)
    return (
        f"{what}, {n} in {sent_s:.1f} s ({n / sent_s:.0f} req/s offered, servable {rate:.0f} "
        f"req/s){refusals_split(first)}"
    )


def refusals_split(first: int) -> str:
    """The refusals read since ``REFUSALS[first]``, at arrival and after queueing: how many,
    and their p50 and p99."""
    by_when: dict[str, list[float]] = {}
    for when, took in REFUSALS[first:]:
        by_when.setdefault(when, []).append(took)
    return "".join(
        f"; refused {when}: {len(v)}, p50 {_ms(quantile(v, 0.5))} ms, "
        f"p99 {_ms(quantile(v, 0.99))} ms"
        for when, v in sorted(by_when.items())
    )


async def flood(t: Target, tally: Tally, args: argparse.Namespace) -> str:
    return await flood_of(t.normal, "600 KB bodies", t, tally, args.flood_s)


async def flood_json(t: Target, tally: Tally, args: argparse.Namespace) -> str:
    """The same flood in JSON with no timeout of its own (the server's default, 100 ms, as the
    binary row's): what ``perf_analyzer`` sends by default."""
    what = f"{len(t.normal_json) // 1000} KB JSON bodies naming no timeout"
    return await flood_of(t.normal_json, what, t, tally, args.flood_s)


async def slowloris(t: Target, tally: Tally, _: argparse.Namespace) -> str:
    count = 200

    async def one() -> None:
        t0 = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
        except OSError:
            tally.add(None, 0.0)
            return
        try:
            writer.write(f"POST {t.path} HTTP/1.1\r\nHost: x\r\n".encode())
            for i in range(int(HEADER_TIMEOUT_S * 4)):
                await asyncio.sleep(1.0)
                writer.write(f"X-Slow-{i}: 1\r\n".encode())
                await writer.drain()
                if reader.at_eof():
                    break
            data = await asyncio.wait_for(reader.read(), 1.0)
            # closed by the server (an answer or not): the attack was handled
            tally.add(200 if not data else int(data.split()[1]), time.monotonic() - t0)
        except (OSError, TimeoutError, IndexError, ValueError) as e:
            # a server that closes a connection with bytes of it unread resets it: the next
            # write here fails; that is the server closing it too
            closed = reader.at_eof() or isinstance(e, ConnectionResetError | BrokenPipeError)
            tally.add(200 if closed else None, time.monotonic() - t0)
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(count)))
    return f"{count} connections, a header line a second; answered = closed by the server"


async def idle(t: Target, tally: Tally, _: argparse.Namespace) -> str:
    count = 400
    conns = []
    for _ in range(count):
        try:
            conns.append(await asyncio.open_connection("127.0.0.1", t.port))
        except OSError:
            tally.add(None, 0.0)
    t0 = time.monotonic()

    async def wait_close(reader: asyncio.StreamReader) -> None:
        try:
            data = await asyncio.wait_for(reader.read(), IDLE_TIMEOUT_S + 5)
            tally.add(200 if not data else int(data.split()[1]), time.monotonic() - t0)
        except (OSError, TimeoutError, IndexError, ValueError):
            tally.add(None, time.monotonic() - t0)

    await asyncio.gather(*(wait_close(r) for r, _ in conns))
    for _, w in conns:
        w.close()
    return f"{count} connections sending nothing; answered = closed by the server"


async def connection_flood(t: Target, tally: Tally, _: argparse.Namespace) -> str:
    count = 2000
    raw = get("/v2/health/live")
    results = await asyncio.gather(*(http(t.port, raw, 15) for _ in range(count)))
    for status, took in results:
        tally.add(status, took)
    return f"{count} connections at once, each GET /v2/health/live"


async def killed_worker(
    t: Target, tally: Tally, args: argparse.Namespace, cluster: Cluster | None = None
) -> str:
    assert cluster is not None
    cluster.kill_worker()
    progress("  worker killed (SIGKILL)")
    for _ in range(20):
        status, took = await http(t.port, t.normal, 10)
        tally.add(status, took)
        await asyncio.sleep(0.1)
    cluster.restart_worker()
    progress("  worker restarted on its port")
    return "SIGKILL to the worker, 20 requests while it is down, then restarted"


# --------------------------------------------------------------------------- measuring


async def scrape(port: int) -> tuple[str | None, float]:
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        writer.write(get("/metrics"))
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    except (OSError, TimeoutError):
        return None, time.monotonic() - t0
    head, _, body = data.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        return None, time.monotonic() - t0
    return body.decode(errors="replace"), time.monotonic() - t0


LATENESS = "clockwork_loop_lateness_seconds"
REFUSAL_TIME = "clockwork_door_refusal_seconds"


def histogram_buckets(text: str | None, name: str) -> dict[float, float] | None:
    """Histogram ``name``'s cumulative bucket counts in a ``/metrics`` text, by upper bound."""
    if text is None:
        return None
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float(le)] = out.get(float(le), 0.0) + float(line.rsplit(" ", 1)[1])
    return out or None


def p99_between(before: dict[float, float] | None, after: dict[float, float] | None) -> str:
    if before is None or after is None:
        return "n/a"
    diff = sorted((le, after.get(le, 0.0) - before.get(le, 0.0)) for le in after)
    total = diff[-1][1] if diff else 0.0
    if total <= 0:
        return "n/a"
    for le, count in diff:
        if count >= 0.99 * total:
            return f"<= {le * 1000:g} ms" if le != float("inf") else "> top bucket"
    return "n/a"


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


Attack = Callable[..., Awaitable[str]]


async def largest_inputs(t: Target, tally: Tally, args: argparse.Namespace) -> str:
    """The largest inputs the model accepts (its max batch, 16 x 602,112 bytes), as binary
    tensors and as JSON, 4 at a time for ``--flood-s``: what the loop's lateness must survive."""
    batch = 16
    n = batch * t.width
    payload = bytes(4 * n)
    spec = {"name": t.input, "datatype": "FP32", "shape": [batch, t.width]}
    params = {"timeout": 1_000_000, "binary_data_output": True}
    header = json.dumps(
        {
            "inputs": [{**spec, "parameters": {"binary_data_size": len(payload)}}],
            "parameters": params,
        }
    ).encode()
    binary = request(
        t.path,
        header + payload,
        {
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    as_json = request(
        t.path,
        b'{"inputs": [{"name": "%s", "datatype": "FP32", "shape": [%d, %d], "data": ['
        % (t.input.encode(), batch, t.width)
        + b"0.5," * (n - 1)
        + b'0.5]}], "parameters": {"timeout": 1000000}}',
        {"Content-Type": "application/json"},
    )
    end = time.monotonic() + args.flood_s
    sent = 0
    first = len(REFUSALS)

    async def one_client(raw: bytes) -> None:
        nonlocal sent
        while time.monotonic() < end:
            status, took = await http(t.port, raw, 30)
            tally.add(status, took)
            sent += 1

    await asyncio.gather(*(one_client(raw) for raw in (binary, binary, as_json, as_json)))
    return (
        f"{sent} requests of batch {batch}: binary ({len(binary) / 2**20:.1f} MiB) and JSON "
        f"({len(as_json) / 2**20:.1f} MiB), 4 at a time for {args.flood_s:g} s"
        f"{refusals_split(first)}"
    )


ATTACKS: dict[str, Attack] = {
    "gzip-bomb": gzip_bomb,
    "json-bomb": json_bomb,
    "flood-10x-600KB": flood,
    "flood-10x-json": flood_json,
    "slowloris": slowloris,
    "idle-connections": idle,
    "connection-flood": connection_flood,
    "killed-worker": killed_worker,
    "largest-inputs": largest_inputs,
}


async def run_row(
    name: str, cluster: Cluster, rss: RssSampler, t: Target, args: argparse.Namespace
) -> dict[str, object]:
    progress(f"{name}: start")
    rss_before = rss.reset()
    text_before = (await scrape(t.port))[0]
    metrics_before = histogram_buckets(text_before, LATENESS)
    refusals_before = histogram_buckets(text_before, REFUSAL_TIME)
    scrapes: list[float] = []
    scrape_failures = 0
    stop = asyncio.Event()

    async def probe() -> None:
        nonlocal scrape_failures
        while not stop.is_set():
            text, took = await scrape(t.port)
            scrapes.append(took)
            scrape_failures += text is None
            await asyncio.sleep(0.25)

    prober = asyncio.create_task(probe())
    tally = Tally()
    reasons_before = collections.Counter(REASONS)
    attack = ATTACKS[name]
    t0 = time.monotonic()
    if name == "killed-worker":
        detail = await killed_worker(t, tally, args, cluster)
    else:
        detail = await attack(t, tally, args)
    took = time.monotonic() - t0
    stop.set()
    await prober
    ended = time.monotonic()
    recovery_s: float | None = None
    while time.monotonic() - ended < 60:
        if await t.normal_ok():
            recovery_s = time.monotonic() - ended
            break
        await asyncio.sleep(0.05)
    text_after = (await scrape(t.port))[0]
    metrics_after = histogram_buckets(text_after, LATENESS)
    refusals_after = histogram_buckets(text_after, REFUSAL_TIME)
    refusals_before = FLOOD_STARTED.pop("refusals", refusals_before)
    await asyncio.sleep(1.0)  # let the server settle before its RSS is read again
    row: dict[str, object] = {
        "attack": name,
        "detail": detail,
        "duration_s": round(took, 1),
        **{k: v for k, v in asdict(tally).items() if k != "refusal_s"},
        "refusals": len(tally.refusal_s),
        "reasons": dict(REASONS - reasons_before),
        "refusal_p99_ms": _ms(quantile(tally.refusal_s, 0.99)),
        "refusal_p50_ms": _ms(quantile(tally.refusal_s, 0.5)),
        "door_refusal_p99": p99_between(refusals_before, refusals_after),
        "rss_before_mb": round(rss_before / 2**20),
        "rss_peak_mb": round(rss.peak / 2**20),
        "rss_after_mb": round(cluster.rss_bytes() / 2**20),
        "metrics_worst_ms": _ms(max(scrapes) if scrapes else None),
        "metrics_failures": scrape_failures,
        "loop_lateness_p99": p99_between(metrics_before, metrics_after),
        "recovery_s": None if recovery_s is None else round(recovery_s, 2),
    }
    progress(
        f"{name}: sent {tally.sent} answered {tally.answered} lost {tally.lost} "
        f"5xx {tally.errors_5xx} statuses {tally.statuses} rss {row['rss_before_mb']}/"
        f"{row['rss_peak_mb']}/{row['rss_after_mb']} MB refusal p99 {row['refusal_p99_ms']} ms "
        f"recovery {row['recovery_s']} s; error answers by reason {row['reasons']}"
    )
    return row


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1000, 1)


COLUMNS = [
    ("attack", "attack"),
    ("sent", "sent"),
    ("answered", "answered"),
    ("lost", "lost"),
    ("errors_5xx", "5xx"),
    ("statuses", "statuses"),
    ("refusal_p99_ms", "refusal p99 ms"),
    ("door_refusal_p99", "door's refusal p99"),
    ("rss_before_mb", "RSS before MB"),
    ("rss_peak_mb", "peak MB"),
    ("rss_after_mb", "after MB"),
    ("metrics_worst_ms", "/metrics worst ms"),
    ("metrics_failures", "/metrics failed"),
    ("loop_lateness_p99", "loop lateness p99"),
    ("recovery_s", "recovery s"),
]


def markdown(rows: list[dict[str, object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, dict):
            return " ".join(f"{k}:{n}" for k, n in sorted(v.items()))
        return "n/a" if v is None else str(v)

    lines = [
        "| " + " | ".join(h for _, h in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(cell(r[k]) for k, _ in COLUMNS) + " |" for r in rows]
    lines.append("")
    lines += [f"- {r['attack']}: {r['detail']}" for r in rows]
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace, cluster: Cluster) -> list[dict[str, object]]:
    t = Target(cluster.port)
    progress(f"serving {t.model} on port {cluster.port}; server pid {cluster.server.pid}")
    for _ in range(5):
        await t.normal_ok()
    rss = RssSampler(cluster)
    names = [n for n in ATTACKS if not args.only or n in args.only.split(",")]
    rows = []
    try:
        for name in names:
            rows.append(await run_row(name, cluster, rss, t, args))
    finally:
        rss.stop()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    p.add_argument("--flood-s", type=float, default=5.0)
    p.add_argument("--only", default="", help="comma-separated rows to run")
    p.add_argument(
        "--slowdown",
        type=float,
        default=1.0,
        help="run the emulated device this many times slower (a 10x flood the machine can carry)",
    )
    p.add_argument(
        "--shared-inputs",
        action="store_true",
        help="the worker maps large inputs from shared memory (serve --workers-share-memory)",
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(args.out, args.slowdown, args.shared_inputs)
    try:
        rows = asyncio.run(main_async(args, cluster))
    finally:
        cluster.close()
    table = markdown(rows)
    (args.out / "attacks.json").write_text(
        json.dumps({"serve_flags": SERVE_FLAGS, "rows": rows}, indent=2) + "\n"
    )
    (args.out / "attacks.md").write_text(table)
    print(table)
    print(f"wrote {args.out / 'attacks.json'} and {args.out / 'attacks.md'}")
    os.sync()


if __name__ == "__main__":
    main()
