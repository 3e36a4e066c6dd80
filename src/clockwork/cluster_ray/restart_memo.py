"""What a worker actor remembers across its restarts, in a small file on its node's disk: how
often it started (for the restart backoff) and the port it listened on (a restarted worker
listens there again, so the controller's link, reconnecting to that address, finds it)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Memo:
    starts: int = 0
    last_start_s: float = 0.0  # wall clock
    port: int = 0


def memo_dir(job_id: str) -> Path:
    """Where the actors of Ray job ``job_id`` keep their memos on this node."""
    return Path(tempfile.gettempdir()) / "clockwork-ray" / f"job-{job_id}"


def node_store() -> Path:
    """This node's content-addressed cache of repository files, shared by every worker and job
    here (files are named by their sha256 and written by rename: a race writes the same bytes)."""
    return Path(tempfile.gettempdir()) / "clockwork-ray" / "store"


def read_memo(path: Path) -> Memo:
    try:
        raw = json.loads(path.read_text())
        return Memo(int(raw["starts"]), float(raw["last_start_s"]), int(raw["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return Memo()


def write_memo(path: Path, memo: Memo) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(asdict(memo)))
    os.replace(tmp, path)


def restart_delay_s(
    memo: Memo, backoff_s: tuple[float, float], stable_s: float, now_s: float | None = None
) -> float:
    """The wait before restart number ``memo.starts``: doubling from ``backoff_s[0]`` per restart
    up to ``backoff_s[1]``, and the low end again after a run of ``stable_s`` or more."""
    low, high = backoff_s
    if memo.starts == 0:
        return 0.0
    now_s = time.time() if now_s is None else now_s
    if now_s - memo.last_start_s >= stable_s:
        return low
    return float(min(high, low * 2 ** (memo.starts - 1)))
