"""``clockwork bench --url`` against tiny stand-in OIP servers (HTTP: aiohttp; gRPC: grpc.aio),
each in a background thread on a free 127.0.0.1 port with its own event loop.

Each stand-in model behaves one way (answer, answer late, refuse with 429/503/404/400/500), so
the request log's statuses can be checked per model; the server records every request it saw, so
"every request sent is in the log exactly once" is checked against what arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import itertools
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from clockwork.cli import bench_cmd
from clockwork.cli.main import main
from clockwork.client.bench import CLIENT_DROPPED, BenchUrlResult, run_bench_url, status_of
from clockwork.client.oip_client import (
    TIMEOUT,
    TRANSPORT,
    Outcome,
    OutcomeKind,
    parse_endpoint,
    reason_in,
)
from clockwork.core.errors import ConfigurationError
from clockwork.core.units import NS_PER_MS, NS_PER_S
from clockwork.telemetry.records import RequestTable
from clockwork.workload import ClosedLoop, PoissonOpenLoop

from support.serve_process import CLI

SLO_MS = 250
OK_DELAY_S = 0.003

# model -> behaviour of the HTTP stand-in; every model lists as READY except "zz-unloaded"
BEHAVIOURS = {
    "bad": "400",
    "boom": "500",
    "busy": "503-overloaded",
    "cold": "ok-cold",
    "drop": "drop",
    "good": "ok",
    "gone": "404",
    "late": "late",
    "tight": "429",
    "unready": "503",
}
EXPECTED = {
    "bad": "INVALID_INPUT",
    "boom": "EXECUTION_FAILED",
    "busy": "OVERLOADED",
    "cold": "SUCCESS",
    "drop": "WORKER_LOST",
    "good": "SUCCESS",
    "gone": "MODEL_NOT_FOUND",
    "late": "LATE",
    "tight": "DEADLINE_INFEASIBLE",
    "unready": "WORKER_LOST",
}
INPUTS: list[dict[str, Any]] = [
    {"name": "x", "datatype": "FP32", "shape": [-1, 4]},
    {"name": "ids", "datatype": "INT64", "shape": [-1, 2]},
]


def _free_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s


@dataclass
class Seen:
    """One inference request as the stand-in received it."""

    id: str
    model: str
    timeout: object
    priority: object
    binary: bool


@dataclass
class StandIn:
    """The HTTP stand-in's state; ``url`` once started."""

    behaviours: dict[str, str]
    delay_s: float = OK_DELAY_S
    unloaded: tuple[str, ...] = ("zz-unloaded",)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    # gzip every answer, whatever the client accepts (some servers do)
    always_gzip: bool = False


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _app(state: StandIn) -> web.Application:
    async def server_meta(request: web.Request) -> web.Response:
        return web.json_response({"name": "standin", "version": "0", "extensions": []})

    async def index(request: web.Request) -> web.Response:
        rows = [{"name": m, "version": "1", "state": "READY"} for m in state.behaviours]
        rows += [
            {"name": m, "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}
            for m in state.unloaded
        ]
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            # as MLServer does for a client that accepts it: the client must not say it does
            return web.Response(
                body=gzip.compress(json.dumps(rows).encode()),
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        return web.json_response(rows)

    async def model_meta(request: web.Request) -> web.Response:
        m = request.match_info["model"]
        if m not in state.behaviours and m not in state.unloaded:
            return _error(404, f"unknown model '{m}'")
        return web.json_response(
            {
                "name": m,
                "versions": ["1"],
                "platform": "standin",
                "inputs": INPUTS,
                "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}],
            }
        )

    async def infer(request: web.Request) -> web.Response:
        m = request.match_info["model"]
        body = await request.read()
        header_len = request.headers.get("Inference-Header-Content-Length")
        if header_len is not None:
            doc = json.loads(body[: int(header_len)])
            sizes = [t["parameters"]["binary_data_size"] for t in doc["inputs"]]
            assert len(body) == int(header_len) + sum(sizes)
            assert sizes == [1 * 4 * 4, 1 * 2 * 8]  # batch 1 of FP32[4] and INT64[2]
        else:
            doc = json.loads(body)
            assert [len(t["data"]) for t in doc["inputs"]] == [4, 2]
        assert [t["shape"] for t in doc["inputs"]] == [[1, 4], [1, 2]]
        params = doc.get("parameters", {})
        state.seen.append(
            Seen(
                str(doc.get("id")),
                m,
                params.get("timeout"),
                params.get("priority"),
                header_len is not None,
            )
        )
        behaviour = state.behaviours.get(m)
        if behaviour is None:
            return _error(404, f"unknown model '{m}'")
        if behaviour.startswith("ok"):
            await asyncio.sleep(state.delay_s)
        elif behaviour == "late":
            await asyncio.sleep(int(params["timeout"]) / 1e6 + 0.02)
        elif behaviour == "429":
            return _error(429, "DEADLINE_INFEASIBLE: cannot finish in time")
        elif behaviour == "503-overloaded":
            return _error(503, "OVERLOADED: no device could fit it in time")
        elif behaviour == "503":
            return _error(503, "server is not ready")
        elif behaviour == "404":
            return _error(404, f"model '{m}' is not loaded")
        elif behaviour == "400":
            return _error(400, "tensor 'x': bad")
        elif behaviour == "drop":  # hang up without an answer
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        else:
            return _error(500, "internal error")
        out = {
            "model_name": m,
            "id": doc.get("id"),
            "parameters": {
                "batch_size": 3 if behaviour == "ok-cold" else 1,
                "cold_start": behaviour == "ok-cold",
            },
        }
        raw = np.zeros((1, 4), dtype="<f4").tobytes()
        if params.get("binary_data_output"):
            out["outputs"] = [
                {
                    "name": "y",
                    "datatype": "FP32",
                    "shape": [1, 4],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
            head = json.dumps(out).encode()
            return web.Response(
                body=head + raw,
                content_type="application/octet-stream",
                headers={"Inference-Header-Content-Length": str(len(head))},
            )
        out["outputs"] = [{"name": "y", "datatype": "FP32", "shape": [1, 4], "data": [0.0] * 4}]
        return web.json_response(out)

    @web.middleware
    async def gzip_all(request: web.Request, handler: Any) -> web.StreamResponse:
        resp: web.StreamResponse = await handler(request)
        if state.always_gzip and isinstance(resp, web.Response) and resp.body is not None:
            assert isinstance(resp.body, bytes)
            headers = {k: v for k, v in resp.headers.items() if k != "Content-Length"}
            headers["Content-Encoding"] = "gzip"
            return web.Response(body=gzip.compress(resp.body), status=resp.status, headers=headers)
        return resp

    app = web.Application(middlewares=[gzip_all])
    app.router.add_get("/v2", server_meta)
    app.router.add_get("/v2/repository/index", index)
    app.router.add_post("/v2/repository/index", index)
    app.router.add_get("/v2/models/{model}", model_meta)
    app.router.add_post("/v2/models/{model}/infer", infer)
    return app


@contextlib.contextmanager
def _serve_in_thread(start: Callable[[], Any], stop: Callable[[Any], Any]) -> Iterator[Any]:
    """Run ``start()`` (a coroutine function returning a handle) on a loop in a background thread,
    yield its handle, then ``stop(handle)`` there and join."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    box: dict[str, Any] = {}

    def body() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            box["handle"] = await start()
            started.set()

        loop.run_until_complete(boot())
        loop.run_forever()
        loop.run_until_complete(stop(box["handle"]))
        loop.close()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    assert started.wait(10), "stand-in server did not start"
    try:
        yield box["handle"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@contextlib.contextmanager
def _http(state: StandIn) -> Iterator[StandIn]:
    sock = _free_socket()
    state.url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def start() -> web.AppRunner:
        runner = web.AppRunner(_app(state), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        return runner

    async def stop(runner: web.AppRunner) -> None:
        await runner.cleanup()

    try:
        with _serve_in_thread(start, stop):
            yield state
    finally:
        sock.close()


@pytest.fixture
def http_server() -> Iterator[StandIn]:
    with _http(StandIn(dict(BEHAVIOURS))) as state:
        yield state


def _arrivals(workload: PoissonOpenLoop, duration_ns: int) -> int:
    return sum(1 for a in workload.arrivals() if a.time_ns < duration_ns)


def _rows(t: RequestTable) -> list[tuple[int, str, str]]:
    return [
        (int(r), t.model_names[m], t.status_names[s])
        for r, m, s in zip(t.request_id, t.model, t.status, strict=True)
    ]


def _check_log_once(result: BenchUrlResult, expected_rows: int) -> None:
    ids = result.requests.request_id.tolist()
    assert len(ids) == expected_rows == result.summary["requests"]
    assert sorted(ids) == list(range(expected_rows))  # each arrival exactly once


# --------------------------------------------------------------------------- mapping, pure


def _outcome(
    kind: OutcomeKind, code: int | str | None = None, reason: str = "", recv_ns: int = 10
) -> Outcome:
    return Outcome(kind, 0, recv_ns, code, reason)


@pytest.mark.parametrize(
    ("outcome", "deadline", "status", "error"),
    [
        (_outcome(OutcomeKind.OK, 200, recv_ns=10), 10, "SUCCESS", None),
        (_outcome(OutcomeKind.OK, 200, recv_ns=11), 10, "LATE", None),
        (_outcome(OutcomeKind.REFUSED, 429), 10, "DEADLINE_INFEASIBLE", None),
        (_outcome(OutcomeKind.REFUSED, 503, "OVERLOADED"), 10, "OVERLOADED", None),
        (_outcome(OutcomeKind.REFUSED, 503), 10, "WORKER_LOST", "http_503"),
        (_outcome(OutcomeKind.REFUSED, 503, "MODEL_REMOVED"), 10, "MODEL_REMOVED", None),
        (_outcome(OutcomeKind.REFUSED, 503, "TOO_MANY_REQUESTS"), 10, "OVERLOADED", None),
        (_outcome(OutcomeKind.REFUSED, 503, "MODEL_NOT_READY"), 10, "WORKER_LOST", "http_503"),
        (_outcome(OutcomeKind.REFUSED, "UNAVAILABLE", "BODY_MEMORY_FULL"), 10, "OVERLOADED", None),
        (_outcome(OutcomeKind.REFUSED, 404), 10, "MODEL_NOT_FOUND", None),
        (_outcome(OutcomeKind.REFUSED, 400, "BAD_TENSOR"), 10, "INVALID_INPUT", None),
        (_outcome(OutcomeKind.REFUSED, 413), 10, "INVALID_INPUT", "http_413"),
        (_outcome(OutcomeKind.REFUSED, 500), 10, "EXECUTION_FAILED", "http_500"),
        (_outcome(OutcomeKind.REFUSED, "RESOURCE_EXHAUSTED"), 10, "DEADLINE_INFEASIBLE", None),
        (_outcome(OutcomeKind.REFUSED, "UNAVAILABLE", "OVERLOADED"), 10, "OVERLOADED", None),
        (_outcome(OutcomeKind.REFUSED, "NOT_FOUND"), 10, "MODEL_NOT_FOUND", None),
        (_outcome(OutcomeKind.REFUSED, "INTERNAL"), 10, "EXECUTION_FAILED", "grpc_INTERNAL"),
        (_outcome(OutcomeKind.ERROR, None, TRANSPORT), 10, "WORKER_LOST", "transport"),
        (_outcome(OutcomeKind.ERROR, None, TIMEOUT), 10, "WORKER_LOST", "timeout"),
    ],
)
def test_status_mapping(outcome: Outcome, deadline: int, status: str, error: str | None) -> None:
    assert status_of(outcome, deadline) == (status, error)


def test_reason_and_endpoint_parsing() -> None:
    assert reason_in("OVERLOADED: the devices are full") == "OVERLOADED"
    assert reason_in("refused (DEADLINE_INFEASIBLE)") == "DEADLINE_INFEASIBLE"
    assert reason_in("INTERNAL: oops") == "" == reason_in("LATE: not a refusal")
    assert parse_endpoint("http://h:8000/").base_url == "http://h:8000"
    assert parse_endpoint("grpc://h:9").target == "h:9"
    g = parse_endpoint("http://h:8001", "grpc")
    assert (g.protocol, g.target) == ("grpc", "h:8001")
    assert parse_endpoint("h:8000").protocol == "http"
    for bad in ("ftp://h:1", "http://:80", "http://h:99999"):
        with pytest.raises(ConfigurationError):
            parse_endpoint(bad)


# --------------------------------------------------------------------------- HTTP


def test_http_binary_statuses_and_report(http_server: StandIn, tmp_path: Path) -> None:
    from clockwork.client.bench import write_bench_report

    models = sorted(BEHAVIOURS)
    duration = 3 * NS_PER_S // 2
    workload = PoissonOpenLoop(models, 150.0, duration, SLO_MS * NS_PER_MS, seed=3)
    result = run_bench_url(
        http_server.url,
        None,
        workload,
        models,
        SLO_MS * NS_PER_MS,
        64,
        duration,
        binary=True,
        drain_ns=NS_PER_S,
    )
    n = _arrivals(workload, duration)
    assert n > 150
    _check_log_once(result, n)
    seen = http_server.seen
    assert sorted(int(s.id) for s in seen) == list(range(n))  # each sent once, none dropped
    assert all(s.binary and s.timeout == SLO_MS * 1000 and s.priority == 0 for s in seen)

    rows = _rows(result.requests)
    for rid, model, status in rows:
        assert status == EXPECTED[model], (rid, model, status)
    by_status = Counter(status for _, _, status in rows)
    s = result.summary
    assert s["succeeded"] == by_status["SUCCESS"] and s["late"] == by_status["LATE"]
    assert s["slo_attainment"] == pytest.approx(by_status["SUCCESS"] / n)
    refused = s["refused"]
    assert isinstance(refused, dict)
    for name in (
        "OVERLOADED",
        "DEADLINE_INFEASIBLE",
        "MODEL_NOT_FOUND",
        "INVALID_INPUT",
        "WORKER_LOST",
        "EXECUTION_FAILED",
    ):
        assert refused[name] == by_status[name] > 0, name
    per_model = Counter(model for _, model, _ in rows)
    assert s["client_errors"] == per_model["boom"] + per_model["unready"] + per_model["drop"]
    assert s["client_errors_by_kind"] == {
        "http_500": per_model["boom"],
        "http_503": per_model["unready"],
        "transport": per_model["drop"],
    }
    assert s["client_dropped"] == 0 and s["protocol"] == "http" and s["url"] == http_server.url
    assert s["cold_starts"] == per_model["cold"]
    cold = result.requests.model == result.requests.model_names.index("cold")
    assert set(result.requests.batch_size[cold].tolist()) == {3}
    # times: every answer after its send; deadlines are send + SLO
    t = result.requests
    assert (t.response_ns >= t.arrival_ns).all()
    assert ((t.deadline_ns - t.arrival_ns) == SLO_MS * NS_PER_MS).all()
    mapping = s["model_mapping"]
    assert isinstance(mapping, dict) and mapping["models"] == models
    extra = s["extra"]
    assert isinstance(extra, dict)
    if sys.platform == "linux":  # the kernel's per-thread run-queue times
        assert 0 <= extra["client_cpu_wait_s"] <= s["sim_wall_s"]

    out = tmp_path / "run"
    written = write_bench_report(out, result)
    assert {p.name for p in written} >= {
        "summary.json",
        "requests.parquet",
        "goodput_latency_over_time.png",
        "latency_cdf.png",
    }
    doc = json.loads((out / "summary.json").read_text())
    for key in (
        "requests",
        "succeeded",
        "late",
        "refused",
        "slo_attainment",
        "goodput_rps",
        "offered_rps",
        "latency_ms",
        "timeseries",
        "url",
        "protocol",
        "late_submits",
        "client_errors",
        "client_dropped",
        "model_mapping",
        "workload",
        "extra",
    ):
        assert key in doc, key
    assert doc["workload"]["slo_ms"] == SLO_MS
    assert set(doc["latency_ms"]) >= {"p50", "p99", "p99.9", "max"}
    assert pq.read_table(out / "requests.parquet").num_rows == n


def test_http_json_discovery_and_concurrency_drops() -> None:
    state = StandIn({"a-slow": "ok", "b-slow": "ok"}, delay_s=0.15)
    with _http(state):
        duration = 3 * NS_PER_S // 2
        # synthetic names: the workload's i-th model is the index's i-th READY model
        workload = PoissonOpenLoop(["m0", "m1"], 60.0, duration, 500 * NS_PER_MS, seed=5)
        result = run_bench_url(
            state.url,
            "http",
            workload,
            None,
            500 * NS_PER_MS,
            2,
            duration,
            binary=False,
            drain_ns=NS_PER_S,
        )
    n = _arrivals(workload, duration)
    _check_log_once(result, n)
    rows = _rows(result.requests)
    dropped = {rid for rid, _, status in rows if status == CLIENT_DROPPED}
    s = result.summary
    assert len(dropped) == s["client_dropped"]
    assert dropped
    refused = s["refused"]
    assert isinstance(refused, dict) and refused[CLIENT_DROPPED] == len(dropped)
    assert {status for _, _, status in rows} == {"SUCCESS", CLIENT_DROPPED}
    # the server saw exactly the requests not dropped, as JSON, once each
    seen = [int(x.id) for x in state.seen]
    assert sorted(seen) == sorted(set(range(n)) - dropped)
    assert not any(x.binary for x in state.seen)
    assert {m for _, m, _ in rows} == {"a-slow", "b-slow"}
    assert s["model_mapping"] == {
        "source": "repository index (READY models, sorted by name)",
        "rule": "workload model i -> server model i",
        "models": ["a-slow", "b-slow"],
    }


def test_closed_loop_follow_ups(http_server: StandIn) -> None:
    duration = NS_PER_S // 2
    workload = ClosedLoop(["good", "cold"], 2, SLO_MS * NS_PER_MS, duration)
    result = run_bench_url(
        http_server.url,
        None,
        workload,
        ["good", "cold"],
        SLO_MS * NS_PER_MS,
        8,
        duration,
        drain_ns=NS_PER_S,
    )
    n = len(result.requests)
    assert n > 20  # 4 clients, one request each at a time, a few ms per answer
    _check_log_once(result, n)
    assert sorted(int(x.id) for x in http_server.seen) == list(range(n))
    t = result.requests
    # no follow-up is due at or after the end; the log has send times, a little after due ones
    assert (t.arrival_ns < duration + 50 * NS_PER_MS).all()
    # never more than the 4 clients in flight: sort sends and answers, count
    events = sorted(
        [(int(a), 1) for a in t.arrival_ns] + [(int(r), -1) for r in t.response_ns],
        key=lambda e: (e[0], e[1]),
    )
    depth = max(itertools.accumulate(d for _, d in events))
    assert depth <= 4


# --------------------------------------------------------------------------- CLI


def _free_port() -> int:
    with _free_socket() as s:
        return int(s.getsockname()[1])


def _one_line_error(code: int, err: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("clockwork bench: error:"), err


def test_cli_refuses_bad_input(http_server: StandIn, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    code = main(
        [
            "bench",
            "--url",
            url,
            "--rate",
            "10",
            "--duration",
            "1",
            "--quiet",
            "--connect-timeout-s",
            "2",
        ]
    )
    err = capsys.readouterr().err
    _one_line_error(code, err)
    assert "cannot reach" in err
    code = main(
        [
            "bench",
            "--url",
            http_server.url,
            "--models",
            "good,nosuch",
            "--rate",
            "10",
            "--duration",
            "1",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    _one_line_error(code, err)
    assert "nosuch" in err
    with pytest.raises(SystemExit) as exit_info:  # argparse's own checks: one line too
        main(["bench", "--url", http_server.url, "--rate", "abc"])
    _one_line_error(int(str(exit_info.value.code)), capsys.readouterr().err)
    for argv in (
        ["--rate", "-5"],
        ["--concurrency", "0", "--rate", "5"],
        ["--num-models", "99", "--rate", "5"],
        [],
        ["--url", "ftp://x:1", "--rate", "5"],
    ):
        code = main(["bench", "--url", http_server.url, "--duration", "1", "--quiet", *argv])
        _one_line_error(code, capsys.readouterr().err)


def test_cli_short_run(
    http_server: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = argparse.ArgumentParser(prog="clockwork")
    bench_cmd.register(p.add_subparsers(dest="command", required=True))
    out = tmp_path / "cli"
    args = p.parse_args(
        [
            "bench",
            "--url",
            http_server.url,
            "--models",
            "good,busy",
            "--rate",
            "40",
            "--duration",
            "1",
            "--slo-ms",
            "1000",
            "--out",
            str(out),
            "--no-plots",
            "--status-every",
            "0.5",
            "--json",
        ]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr()
    assert "SLO attainment" in printed.out and "late submits" in printed.out
    assert "requests" in printed.err  # the progress line
    summary = json.loads((out / "summary.json").read_text())
    assert summary["succeeded"] + summary["refused"]["OVERLOADED"] == summary["requests"] > 0
    assert summary["model_mapping"]["source"] == "given list"
    assert summary["workload"]["name"] == "poisson"


# --------------------------------------------------------------------------- gRPC


def test_grpc_statuses() -> None:
    grpc = pytest.importorskip("grpc")
    from clockwork.frontend.proto import inference_pb2 as pb
    from clockwork.frontend.proto import inference_pb2_grpc as pbg

    seen: list[tuple[str, str, int, int]] = []
    behaviours = {"g-ok": "ok", "g-tight": "429", "g-busy": "503-overloaded", "g-gone": "404"}

    class Servicer(pbg.GRPCInferenceServiceServicer):
        async def ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
            return pb.ServerMetadataResponse(name="standin-grpc", version="0")

        async def RepositoryIndex(self, request: Any, context: Any) -> Any:  # noqa: N802
            return pb.RepositoryIndexResponse(
                models=[
                    pb.RepositoryIndexResponse.ModelIndex(name=m, version="1", state="READY")
                    for m in behaviours
                ]
            )

        async def ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
            if request.name not in behaviours:
                await context.abort(grpc.StatusCode.NOT_FOUND, "unknown model")
            t = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=request.name,
                versions=["1"],
                platform="standin",
                inputs=[
                    t(name=i["name"], datatype=i["datatype"], shape=i["shape"]) for i in INPUTS
                ],
                outputs=[t(name="y", datatype="FP32", shape=[-1, 4])],
            )

        async def ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802
            assert [list(t.shape) for t in request.inputs] == [[1, 4], [1, 2]]
            assert [len(r) for r in request.raw_input_contents] == [16, 16]
            seen.append(
                (
                    request.id,
                    request.model_name,
                    request.parameters["timeout"].int64_param,
                    request.parameters["priority"].int64_param,
                )
            )
            b = behaviours[request.model_name]
            if b == "429":
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED, "DEADLINE_INFEASIBLE: cannot finish in time"
                )
            if b == "503-overloaded":
                await context.abort(grpc.StatusCode.UNAVAILABLE, "OVERLOADED: full")
            if b == "404":
                await context.abort(grpc.StatusCode.NOT_FOUND, "not loaded")
            await asyncio.sleep(OK_DELAY_S)
            r = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
            r.parameters["batch_size"].int64_param = 2
            r.parameters["cold_start"].bool_param = True
            return r

    box: dict[str, int] = {}

    async def start() -> Any:
        server = grpc.aio.server()
        pbg.add_GRPCInferenceServiceServicer_to_server(Servicer(), server)
        box["port"] = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server

    async def stop(server: Any) -> None:
        await server.stop(None)

    with _serve_in_thread(start, stop):
        duration = 3 * NS_PER_S // 2
        models = sorted(behaviours)
        workload = PoissonOpenLoop(models, 120.0, duration, SLO_MS * NS_PER_MS, seed=11)
        result = run_bench_url(
            f"grpc://127.0.0.1:{box['port']}",
            None,
            workload,
            None,
            SLO_MS * NS_PER_MS,
            32,
            duration,
            drain_ns=NS_PER_S,
        )
    n = _arrivals(workload, duration)
    _check_log_once(result, n)
    assert sorted(int(i) for i, _, _, _ in seen) == list(range(n))
    assert all(t == SLO_MS * 1000 and p == 0 for _, _, t, p in seen)
    expected = {
        "g-ok": "SUCCESS",
        "g-tight": "DEADLINE_INFEASIBLE",
        "g-busy": "OVERLOADED",
        "g-gone": "MODEL_NOT_FOUND",
    }
    rows = _rows(result.requests)
    for rid, model, status in rows:
        assert status == expected[model], (rid, model, status)
    s = result.summary
    ok = sum(1 for _, m, _ in rows if m == "g-ok")
    assert s["protocol"] == "grpc" and s["client_errors"] == 0 and s["cold_starts"] == ok
    assert s["slo_attainment"] == pytest.approx(ok / n)


# --------------------------------------------------------------------------- the real front door


def test_against_the_real_front_door() -> None:
    """The project's own HTTP and gRPC front doors over ``FakeModelServer`` (models ``add`` and
    ``ident``; a timeout under ``INFEASIBLE_US`` is refused as DEADLINE_INFEASIBLE)."""
    from clockwork.frontend.grpc_server import start_grpc
    from clockwork.frontend.http_server import start_http
    from clockwork.service.bench_cluster import free_ports

    from support.fake_model_server import INFEASIBLE_US, FakeModelServer

    fake = FakeModelServer()
    http_port, grpc_port = free_ports(2)

    async def start() -> tuple[Any, Any]:
        runner = await start_http(fake, "127.0.0.1", http_port)
        return runner, await start_grpc(fake, "127.0.0.1", grpc_port)

    async def stop(servers: tuple[Any, Any]) -> None:
        await servers[1].stop(None)
        await servers[0].cleanup()

    infeasible_ns = INFEASIBLE_US * 1000 // 2
    runs = [
        (f"http://127.0.0.1:{http_port}", True, SLO_MS * NS_PER_MS, "SUCCESS"),
        (f"http://127.0.0.1:{http_port}", False, infeasible_ns, "DEADLINE_INFEASIBLE"),
        (f"grpc://127.0.0.1:{grpc_port}", True, SLO_MS * NS_PER_MS, "SUCCESS"),
        (f"grpc://127.0.0.1:{grpc_port}", True, infeasible_ns, "DEADLINE_INFEASIBLE"),
    ]
    duration = NS_PER_S // 2
    with _serve_in_thread(start, stop):
        for url, binary, slo_ns, expected in runs:
            calls_before = len(fake.calls)
            workload = PoissonOpenLoop(["m0", "m1"], 100.0, duration, slo_ns, seed=2)
            # in-flight limit 64: on a loaded machine the fake's answers can lag by more than the
            # 160 ms that 16 requests in flight at 100/s allow, and the client would drop some
            result = run_bench_url(
                url, None, workload, None, slo_ns, 64, duration, binary=binary, drain_ns=NS_PER_S
            )
            n = _arrivals(workload, duration)
            _check_log_once(result, n)
            assert {status for _, _, status in _rows(result.requests)} == {expected}, url
            assert result.summary["client_errors"] == 0
            calls = fake.calls[calls_before:]
            assert len(calls) == n
            assert {(c.timeout_us, c.priority) for c in calls} == {(slo_ns // 1000, 0)}
            assert {c.model for c in calls} == {"add", "ident"}


# --------------------------------------------------------------------------- the client's view


def _bench(url: str, *extra: str) -> list[str]:
    return ["bench", "--url", url, "--duration", "1", "--slo-ms", "1000", *extra]


def test_report_names_the_server_and_only_what_a_client_knows(
    http_server: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clockwork.telemetry.plots import run_title

    out = tmp_path / "run"
    argv = _bench(http_server.url, "--models", "good", "--rate", "20", "--status-every", "0.3")
    assert main([*argv, "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr()
    table = printed.out.splitlines()
    assert table[0] == f"server {http_server.url} (http)"
    cells = [re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in table[1:]]
    rows = {c[0]: c[1] for c in cells if len(c) == 2}
    assert rows["devices / models"] == "- / 1"
    assert rows["ideal capacity rps"] == "-"
    assert "wall time" in rows
    for unknowable in ("loads", "evictions", "infers", "device utilisation", "cold starts"):
        assert unknowable not in rows, unknowable
    assert "policy" not in printed.out.split("server ", 1)[0]
    progress = [line for line in printed.err.splitlines() if "req/wall-s" in line]
    assert progress and all(" sim " not in f" {x} " for x in progress)
    assert progress[-1].startswith("done: bench 100.0%") and "ETA" not in progress[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy"] == "-" and summary["url"] == http_server.url
    assert run_title(summary).startswith(http_server.url)  # the plots' titles


def test_without_rate_the_url_is_checked_before_the_capacity(
    http_server: StandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    code = main([*_bench(dead, "--quiet", "--connect-timeout-s", "2")])
    err = capsys.readouterr().err
    _one_line_error(code, err)
    assert "cannot reach" in err and "capacity" not in err
    code = main([*_bench(http_server.url, "--quiet")])
    err = capsys.readouterr().err
    _one_line_error(code, err)
    assert "--rate R" in err and "--capacity-rps" in err  # says what to pass


@pytest.mark.parametrize("binary", [True, False])
def test_a_server_that_gzips_whatever_is_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], binary: bool
) -> None:
    with _http(StandIn({"good": "ok"}, always_gzip=True)) as state:
        argv = _bench(state.url, "--rate", "20", "--quiet", "--out", str(tmp_path), "--no-plots")
        assert main([*argv, "--binary" if binary else "--json"]) == 0
        assert state.seen  # discovery, metadata and answers were all read
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["requests"] > 0 and summary["succeeded"] == summary["requests"]
    assert summary["client_errors"] == 0


def test_ctrl_c_stops_sending_and_a_second_stops_waiting(
    http_server: StandIn, tmp_path: Path
) -> None:
    """The first Ctrl-C ends the sending and waits for the answers in flight (here "late"
    ones that take a minute); the second stops waiting: the report covers what was sent, marked
    partial, the unanswered requests in it, and the exit code is 130."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            *CLI,
            "bench",
            "--url",
            http_server.url,
            "--models",
            "good,late",
            "--rate",
            "20",
            "--duration",
            "3600",
            "--slo-ms",
            "60000",
            "--status-every",
            "0.2",
            "--out",
            str(out),
            "--no-plots",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    for needle in ("requests", "in flight"):  # a progress line, then one with answers due
        while needle not in (line := proc.stderr.readline()):
            assert line, seen
            seen.append(line)
    time.sleep(0.5)  # some "late" requests in flight
    proc.send_signal(signal.SIGINT)
    while "interrupted: sending stopped" not in (line := proc.stderr.readline()):
        assert line, seen
        seen.append(line)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    stderr = "".join(seen) + stderr
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "(partial: interrupted)" in stderr, stderr
    assert "SLO attainment" in stdout  # the table of what ran
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial"] is True and summary["requests"] > 0
    assert summary["succeeded"] > 0 and summary["client_errors_by_kind"]["unanswered"] > 0
    assert summary["duration_s"] < 60  # the time it sent, not the hour asked for
