"""``--log-format``: text lines all carry a timestamp; ``json`` is one JSON object per line (time,
level, logger, message, extra fields) from the worker and from ``serve`` in front of it, the
status lines and the banner included."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from clockwork.cli.log_setup import JsonFormatter, setup_logging

from support.serve_process import CLI, remote_serve_argv

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) ")
JSON_KEYS = ("time", "level", "logger", "message")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_json_record_has_the_fields_and_extras() -> None:
    record = logging.LogRecord("clockwork.x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    record.port = 8000  # as logger.warning(..., extra={"port": 8000}) sets it
    record.obj = object()  # not JSON: written as its text
    out = json.loads(JsonFormatter().format(record))
    assert out["level"] == "WARNING" and out["logger"] == "clockwork.x"
    assert out["message"] == "a b" and out["port"] == 8000 and "object" in out["obj"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", out["time"])


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_setup_writes_to_the_current_stderr(
    monkeypatch: pytest.MonkeyPatch, restore_root_logging: None
) -> None:
    for fmt in ("text", "json", "text"):  # set up twice in one process: one handler, not two
        err = io.StringIO()
        monkeypatch.setattr(sys, "stderr", err)
        setup_logging(fmt)
        logging.getLogger("clockwork.test").info("hello")
        lines = err.getvalue().splitlines()
        assert len(lines) == 1, lines
        if fmt == "json":
            assert json.loads(lines[0])["message"] == "hello"
        else:
            assert TIMESTAMP.match(lines[0]) and lines[0].endswith("clockwork.test: hello")


class _Proc:
    """A child whose stderr lines are read as they come."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stderr is not None
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stderr, selectors.EVENT_READ)
        self.lines: list[str] = []

    def wait_for(self, needle: str, timeout_s: float = 60) -> None:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sel.select(timeout=max(0.0, deadline - time.monotonic())):
                line = self.proc.stderr.readline()
                if not line:
                    break
                self.lines.append(line.rstrip("\n"))
                if needle in line:
                    return
        self.proc.kill()
        raise AssertionError(f"no {needle!r} in time: {self.lines}")

    def stop(self) -> list[str]:
        self.proc.send_signal(signal.SIGINT)
        _, rest = self.proc.communicate(timeout=30)
        self.lines += rest.splitlines()
        return self.lines


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_worker_and_serve_log_lines(log_format: str) -> None:
    env = dict(os.environ, CLOCKWORK_CLUSTER_SECRET="00" * 32)
    worker_port = _free_port()
    worker = _Proc(
        [
            *CLI,
            "worker",
            "--listen",
            f"127.0.0.1:{worker_port}",
            "--models",
            "2",
            "--log-format",
            log_format,
        ],
        env,
    )
    serve = None
    try:
        worker.wait_for("listening on")
        serve = _Proc(
            remote_serve_argv(
                worker_port, _free_port(), _free_port(), 0.2, "--log-format", log_format
            ),
            env,
        )
        serve.wait_for("Ctrl-C stops the server")
        serve.wait_for("attainment")  # a status line
        serve_lines = serve.stop()
    finally:
        if serve is not None and serve.proc.poll() is None:
            serve.proc.kill()
        worker_lines = worker.stop()
    for who, lines in (("worker", worker_lines), ("serve", serve_lines)):
        assert lines, who
        assert not any("Traceback" in line for line in lines), f"{who}:\n" + "\n".join(lines)
        if log_format == "json":
            for line in lines:
                record = json.loads(line)  # every line is one JSON object
                assert all(k in record for k in JSON_KEYS), (who, line)
        else:
            # every line a log line with its time, but for the banner (URLs to copy)
            banner = serve_lines.index(next(x for x in serve_lines if "serving" in x))
            end = next(i for i, x in enumerate(serve_lines) if "Ctrl-C stops" in x)
            skip = set(range(banner, end + 1)) if who == "serve" else set()
            untimed = [x for i, x in enumerate(lines) if i not in skip and not TIMESTAMP.match(x)]
            assert not untimed, (who, untimed)
