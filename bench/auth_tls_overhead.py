"""What the token check and TLS cost the front door alone: four echo front doors (the model of
``bench/frontend_overhead.py``, which answers at once) with no security, a token, TLS, and TLS +
token, all running at once in child processes pinned to CPU 0, each driven in turn by the same
closed-loop ``clockwork bench`` (pinned to CPU 1) over HTTP and gRPC, ``--rounds`` times, so that
the machine's other load falls on the four alike.

    python bench/auth_tls_overhead.py [--seconds 10] [--rounds 2] [--clients 4]

``python bench/auth_tls_overhead.py serve CONFIG HTTP_PORT GRPC_PORT CERT_DIR`` runs one server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CONFIGS = ("plain", "token", "tls", "tls+token")
BASE_PORT = 18800


def make_certs(d: Path) -> None:
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    ssl(
        "req",
        "-x509",
        *ec,
        "-days",
        "1",
        "-subj",
        "/CN=bench CA",
        "-keyout",
        f"{d}/ca.key",
        "-out",
        f"{d}/ca.pem",
    )
    ssl(
        "req",
        *ec,
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        f"{d}/server.key",
        "-out",
        f"{d}/server.csr",
    )
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl(
        "x509",
        "-req",
        "-in",
        f"{d}/server.csr",
        "-CA",
        f"{d}/ca.pem",
        "-CAkey",
        f"{d}/ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        f"{d}/ext",
        "-out",
        f"{d}/server.pem",
    )
    (d / "token").write_text(os.urandom(32).hex() + "\n")
    (d / "token").chmod(0o600)


def serve(config: str, http_port: int, grpc_port: int, certs: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from clockwork.frontend.auth import FrontDoorSecurity
    from clockwork.frontend.grpc_server import start_grpc
    from clockwork.frontend.http_server import start_http
    from clockwork.frontend.tls import load_tls
    from clockwork.frontend.tokens import read_token_file
    from clockwork.transport import loop_factory
    from frontend_overhead import EchoServer  # type: ignore[import-not-found]

    security = FrontDoorSecurity(
        token=read_token_file(certs / "token") if "token" in config else None,
        tls=load_tls(certs / "server.pem", certs / "server.key") if "tls" in config else None,
    )

    async def main() -> None:
        server = EchoServer()
        http = await start_http(server, "127.0.0.1", http_port, security=security)
        grpc = await start_grpc(server, "127.0.0.1", grpc_port, security=security)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        await stop.wait()
        await grpc.stop(0.5)
        await http.cleanup()

    with asyncio.Runner(loop_factory=loop_factory(True)) as runner:
        runner.run(main())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--clients", type=int, default=4, help="closed-loop clients")
    args = p.parse_args()
    cw = str(Path(sys.executable).parent / "clockwork")
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp)
        make_certs(certs)
        procs = []
        for i, config in enumerate(CONFIGS):
            http, grpc = BASE_PORT + 2 * i, BASE_PORT + 2 * i + 1
            procs.append(
                subprocess.Popen(
                    [
                        "taskset",
                        "-c",
                        "0",
                        sys.executable,
                        __file__,
                        "serve",
                        config,
                        str(http),
                        str(grpc),
                        str(certs),
                    ]
                )
            )
        try:
            for i in range(len(CONFIGS)):
                port = BASE_PORT + 2 * i
                deadline = time.monotonic() + 30
                while True:
                    try:
                        # TLS or not, a listening port accepts the connection
                        urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/live", timeout=1)
                        break
                    except OSError as e:
                        if "Connection refused" not in str(e) or time.monotonic() > deadline:
                            break
                        time.sleep(0.2)
            env = {k: v for k, v in os.environ.items() if k != "CLOCKWORK_TOKEN"}
            print(
                f"{'config':<10} {'proto':<5} {'round':>5} {'requests':>8} {'req/s':>8} "
                f"{'p50 ms':>7} {'p99 ms':>7}"
            )
            for rnd in range(1, args.rounds + 1):
                for proto in ("http", "grpc"):
                    for i, config in enumerate(CONFIGS):
                        port = BASE_PORT + 2 * i + (proto == "grpc")
                        scheme = (
                            ("https" if proto == "http" else "grpcs") if "tls" in config else proto
                        )
                        extra = []
                        if "tls" in config:
                            extra += ["--tls-ca", str(certs / "ca.pem")]
                        if "token" in config:
                            extra += ["--token-file", str(certs / "token")]
                        out = certs / f"{config}-{proto}-{rnd}"
                        subprocess.run(
                            [
                                "taskset",
                                "-c",
                                "1",
                                cw,
                                "bench",
                                "--url",
                                f"{scheme}://127.0.0.1:{port}",
                                "--workload",
                                "closed",
                                "--clients",
                                str(args.clients),
                                "--duration",
                                str(args.seconds),
                                "--slo-ms",
                                "1000",
                                "--quiet",
                                "--no-plots",
                                "--out",
                                str(out),
                                *extra,
                            ],
                            check=True,
                            capture_output=True,
                            env=env,
                        )
                        s = json.loads((out / "summary.json").read_text())
                        lat = s["latency_ms"]
                        print(
                            f"{config:<10} {proto:<5} {rnd:>5} {s['requests']:>8} "
                            f"{s['requests'] / s['duration_s']:>8.1f} {lat['p50']:>7.2f} "
                            f"{lat['p99']:>7.2f}  errors {s['client_errors']}",
                            flush=True,
                        )
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGINT)
            for proc in procs:
                proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
        sys.exit(0)
    sys.exit(main())
