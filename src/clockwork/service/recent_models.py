"""Which models were asked for most recently, kept across restarts.

A server's warm start loads models into free pages before the first request; after a restart
the models its clients used last are the ones they will ask for first, so they go first (after
the ones named by ``--warm``). The order lives in a small JSON file per repository under the
state directory (``$XDG_STATE_HOME/clockwork``, else ``~/.local/state/clockwork``), written
atomically every ``SAVE_INTERVAL_S`` while serving and at shutdown. A missing, unreadable or
malformed file only costs the order: it is logged and serving starts with name order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from clockwork.core.requests import InferRequest

log = logging.getLogger("clockwork.service.recent_models")

FORMAT = "clockwork-recent/1"
# how many names the file keeps (a repository may hold thousands of models; warm start fills
# at most the free pages, so the head of the order is all that matters)
MAX_NAMES = 10_000
# while serving, the order is written at most this often (a crash loses at most this much)
SAVE_INTERVAL_S = 30.0


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME")
    root = Path(base) if base else Path.home() / ".local" / "state"
    return root / "clockwork"


def state_file(repository: Path, state_dir: Path) -> Path:
    """The file holding ``repository``'s order: one per repository, by its absolute path."""
    key = hashlib.sha256(str(repository.resolve()).encode()).hexdigest()[:16]
    return state_dir / f"recent-{key}.json"


def load_recent(path: Path) -> tuple[str, ...]:
    """The names in ``path``, most recently asked for first; () when there is no usable file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ()
    except OSError as e:
        log.warning("cannot read the recent-models file %s: %s; warm start in name order", path, e)
        return ()
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} document")
        names = data["models"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("'models' is not a list of names")
    except (ValueError, KeyError) as e:
        log.warning("ignoring the recent-models file %s: %s", path, e)
        return ()
    return tuple(dict.fromkeys(names))[:MAX_NAMES]


class RecentModels:
    """An observer (``on_request``) that keeps the order models were last asked for in, on top
    of the order loaded from the previous run."""

    __slots__ = ("_before", "_changed", "_last", "_seq", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._before = load_recent(path)
        # model -> sequence number of its latest request in this run
        self._last: dict[str, int] = {}
        self._seq = 0
        self._changed = False

    @property
    def previous(self) -> tuple[str, ...]:
        """The order the previous run left, most recent first."""
        return self._before

    def on_request(self, request: InferRequest) -> None:
        self._seq += 1
        self._last[request.model] = self._seq
        self._changed = True

    def order(self) -> tuple[str, ...]:
        """Models asked for in this run (latest first), then the previous run's order."""
        now = sorted(self._last, key=self._last.__getitem__, reverse=True)
        return tuple(dict.fromkeys([*now, *self._before]))[:MAX_NAMES]

    def save(self) -> None:
        """Write the order if it changed since the last save (atomically: a reader sees the old
        file or the new one). Failures are logged, never raised: serving goes on."""
        if not self._changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            body = json.dumps({"format": FORMAT, "models": list(self.order())})
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".recent-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(body)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            log.warning("cannot write the recent-models file %s: %s", self.path, e)
            return
        self._changed = False


def warm_order(first: Iterable[str], recent: Iterable[str]) -> tuple[str, ...]:
    """``--warm``'s names, then the recently used ones, each once."""
    return tuple(dict.fromkeys([*first, *recent]))
