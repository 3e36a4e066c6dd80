"""A worker actor's memo across restarts: backoff and port (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

from clockwork.cluster_ray.restart_memo import Memo, read_memo, restart_delay_s, write_memo


def test_backoff_doubles_and_resets_after_a_stable_run() -> None:
    backoff = (0.5, 4.0)
    now = 1000.0
    delays = [restart_delay_s(Memo(n, now - 1, 0), backoff, 60, now) for n in range(6)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert restart_delay_s(Memo(5, now - 61, 0), backoff, 60, now) == 0.5


def test_memo_round_trip_and_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "d" / "w.json"
    assert read_memo(path) == Memo()
    write_memo(path, Memo(3, 12.5, 7001))
    assert read_memo(path) == Memo(3, 12.5, 7001)
    path.write_text("{not json")
    assert read_memo(path) == Memo()
