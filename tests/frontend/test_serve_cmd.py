"""``clockwork serve`` as a user runs it: a process with a local torch worker (CPU), driven over
HTTP; a model copied into the repository while serving is loaded through the repository API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.error import HTTPError, URLError

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clockwork.cli.main import main
from clockwork.models.create import create_repository
from clockwork.service.bench_cluster import free_ports
from clockwork.service.recent_models import load_recent, state_file

from support.realtime import may_run_realtime, policy_of
from support.serve_process import serve_argv

PARAMS = {"resolution": 32}


CONTROL_TOKEN = "serve-test-control-token"


def request(
    url: str, body: object | None = None, token: str | None = None
) -> tuple[int, dict[str, object]]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        url, data=data, method="GET" if body is None else "POST", headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else {}
    except HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def infer_body() -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": "input",
                "datatype": "FP32",
                "shape": [1, 3, 32, 32],
                "data": [0.5] * (3 * 32 * 32),
            }
        ],
        "parameters": {"timeout": 2_000_000},
    }


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    root = tmp_path_factory.mktemp("serve")
    repo = root / "repo"
    create_repository(repo, "mobilenet_v2", 1, seed=1, params=PARAMS, batch_sizes=(1, 2))
    http_port, grpc_port = free_ports(2)
    log = (root / "serve.log").open("wb")
    proc = subprocess.Popen(
        serve_argv(
            repo, http_port, grpc_port, "--allow-model-control", "--state-dir", str(root / "state")
        ),
        stdout=log,
        stderr=log,
        cwd=root,
        # no inference token, whatever the caller's environment holds
        env={
            **{k: v for k, v in os.environ.items() if k != "CLOCKWORK_TOKEN"},
            "CLOCKWORK_CONTROL_TOKEN": CONTROL_TOKEN,
        },
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if request(f"{url}/v2/health/ready")[0] == 200:
                    break
            except (URLError, ConnectionError):
                pass
            assert proc.poll() is None, (root / "serve.log").read_text()
            assert time.monotonic() < deadline, "server not ready in 120 s"
            time.sleep(0.2)
        yield url, repo, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_serves_the_repository_with_real_inference(served: tuple[str, Path, object]) -> None:
    url, _, _ = served
    status, meta = request(f"{url}/v2/models/mobilenet_v2-0000")
    assert status == 200 and meta["platform"] == "pytorch"
    status, body = request(f"{url}/v2/models/mobilenet_v2-0000/infer", infer_body())
    assert status == 200, body
    outputs = body["outputs"]
    assert isinstance(outputs, list) and len(outputs) == 1
    out = outputs[0]
    assert out["name"] == "logits" and out["shape"] == [1, 1000]


def test_a_model_copied_in_while_serving_is_loaded_on_request(
    served: tuple[str, Path, object],
) -> None:
    url, repo, _ = served
    name = "added-0000"
    assert request(f"{url}/v2/models/{name}")[0] == 404
    create_repository(
        repo, "mobilenet_v2", 1, seed=2, params=PARAMS, batch_sizes=(1, 2), name_prefix="added"
    )
    load = f"{url}/v2/repository/models/{name}/load"
    status, body = request(load, {})
    assert status == 401 and body["reason"] == "UNAUTHENTICATED", body
    status, body = request(load, {}, token="not-the-token")
    assert status == 401, body
    status, body = request(load, {}, token=CONTROL_TOKEN)
    assert status == 200, body
    status, body = request(f"{url}/v2/models/{name}/infer", infer_body())
    assert status == 200, body
    status, index = request(f"{url}/v2/repository/index", {})
    assert status == 200
    assert {(m["name"], m["state"]) for m in index} == {  # type: ignore[index]
        ("mobilenet_v2-0000", "READY"),
        (name, "READY"),
    }
    nothing = f"{url}/v2/repository/models/nothing-here/load"
    assert request(nothing, {}, token=CONTROL_TOKEN)[0] == 404


def test_the_banner_says_what_is_exposed(served: tuple[str, Path, object]) -> None:
    _, repo, _ = served
    log = repo.parent / "serve.log"
    deadline = time.monotonic() + 30
    # the banner follows the warm start, which may end after the server is ready
    while "Ctrl-C stops the server" not in (banner := log.read_text()):
        assert time.monotonic() < deadline, banner
        time.sleep(0.1)
    assert "listening on 127.0.0.1 (loopback: this machine only); plain TCP, no TLS" in banner
    assert "model control: enabled (control token)" in banner
    assert "WARNING" not in banner
    assert CONTROL_TOKEN not in banner
    # the timed loop runs real-time where the host allows it (root here and in CI), and says so
    if may_run_realtime():
        assert "timed loop at SCHED_FIFO priority 1 (real-time)" in banner
    else:
        assert "timed loop at normal priority: SCHED_FIFO not permitted" in banner


def test_the_controller_s_process_does_not_load_torch(
    served: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    # the local worker runs the models; the controller only reads their configurations
    _, _, proc = served
    maps = Path(f"/proc/{proc.pid}/maps").read_text()
    assert "libtorch" not in maps and "libc10" not in maps


def test_only_the_loop_s_thread_runs_real_time(
    served: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    _, _, proc = served
    if not may_run_realtime():
        pytest.skip("this host allows no real-time thread")
    assert policy_of(proc.pid) == os.SCHED_FIFO  # the main thread runs the loop
    others = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
    assert others and all(policy_of(t) == os.SCHED_OTHER for t in others)
    # the local worker and the decode process, started by the loop's thread, run normal
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) >= 2
    assert all(policy_of(int(c)) == os.SCHED_OTHER for c in children)


def test_metrics_carry_the_controller_s_and_the_local_worker_s_process_metrics(
    served: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    url, _, proc = served
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as r:
        text = r.read().decode()
    rss = {
        s.labels["process"]: s.value
        for f in text_string_to_metric_families(text)
        if f.name == "process_resident_memory_bytes"
        for s in f.samples
    }
    assert set(rss) == {"controller", "local_worker"}, rss
    # the worker holds torch and a model: more than the controller's bare interpreter
    assert rss["local_worker"] > 50 * 2**20
    assert rss["controller"] > 10 * 2**20
    assert proc.poll() is None


def test_the_container_health_check_passes_on_a_ready_server_only(
    served: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    url, _, _ = served
    script = Path(__file__).resolve().parents[2] / "scripts" / "healthcheck.py"

    def check(target: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script)],
            env={**os.environ, "CLOCKWORK_HEALTH_URL": target},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    done = check(f"{url}/v2/health/ready")
    assert done.returncode == 0 and done.stdout.strip().endswith(": 200"), done
    (free,) = free_ports(1)  # nothing listens there
    done = check(f"http://127.0.0.1:{free}/v2/health/ready")
    assert done.returncode == 1 and "refused" in done.stdout.lower(), done
    done = check(f"{url}/v2/models/no-such-model/ready")  # a 404: not healthy either
    assert done.returncode == 1 and ": 404" in done.stdout, done


def test_ctrl_c_stops_the_server_and_its_worker(
    served: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    _, repo, proc = served
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    # the models asked for, latest first, for the next start's warm-up
    assert load_recent(state_file(repo, repo.parent / "state"))[:2] == (
        "added-0000",
        "mobilenet_v2-0000",
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["serve", "--no-local-worker"], "--no-local-worker needs --workers"),
        (["serve", "--repository", "/nonexistent/repo"], "no such directory"),
        (["serve", "--http-port", "70000"], "not a port number"),
        (["serve", "--workers", "nohostport"], "HOST:PORT"),
        (["serve", "--allow-model-control"], "no control token"),
        (["serve", "--tls-cert", "/nonexistent.pem"], "--tls-cert and --tls-key go together"),
        (
            ["serve", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"],
            "--tls-cert /nonexistent.pem: No such file",
        ),
        (["serve", "--token-file", "/nonexistent-token"], "token file /nonexistent-token"),
    ],
)
def test_bad_configuration_exits_2_with_a_clear_error(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("CLOCKWORK_TOKEN", "CLOCKWORK_CONTROL_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_port_in_use_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # remote workers: the controller needs their cluster secret
    monkeypatch.setenv("CLOCKWORK_CLUSTER_SECRET", "x" * 32)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(
            [
                "serve",
                "--no-local-worker",
                "--workers",
                "127.0.0.1:1",
                "--host",
                "127.0.0.1",
                "--http-port",
                str(port),
                "--grpc-port",
                "0",
            ]
        )
    assert code == 2
    assert "address already in use" in capsys.readouterr().err
