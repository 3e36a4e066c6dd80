"""Why a repository's model is not served, for the answers and logs a user can act on.

``clockwork serve`` holds the repository its local worker serves: a repository load of a model
that no worker registered asks :meth:`RepositoryProblems.why_broken`, and a model that is in the
repository but broken (missing, corrupt or unsupported file, a config that does not match it) is
refused with the file and the problem (400), not as an unknown model (404).

The check runs in a child process (``python -m clockwork.models.problems REPO MODEL``): reading a
model file imports torch or ONNX Runtime and parses the file, seconds of work holding the
interpreter lock, which in the controller's own process would starve its event loop (its
workers would seem silent and be dropped). A name with no directory is answered at once.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clockwork.models.errors import ModelRepositoryError, UnknownModelError

if TYPE_CHECKING:
    from clockwork.models.repository import ModelRepository

CHECK_TIMEOUT_S = 120.0


class RepositoryProblems:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def why_broken(self, model: str) -> str:
        """The problem of ``model`` in the repository; "" if it is valid or not there at all.
        Blocks while the check runs (in a child process): call it from a thread."""
        if "/" in model or model in ("", ".", "..") or not (self.root / model).is_dir():
            return ""
        try:
            done = subprocess.run(
                [sys.executable, "-m", "clockwork.models.problems", str(self.root), model],
                capture_output=True,
                text=True,
                timeout=CHECK_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{self.root / model}: the check of this model failed: {e}"
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
            return f"{self.root / model}: the check of this model failed: {tail[0]}"
        return done.stdout.strip()


def check_model(root: Path, model: str) -> str:
    """The problem of ``model`` in the repository at ``root`` ("" if none), in this process."""
    # here, not at the top: the controller imports this module for ``RepositoryProblems`` only,
    # and reading configurations imports torch (the built-in architectures)
    from clockwork.models.repository import ModelRepository

    try:
        ModelRepository(root).load_config(model)
    except UnknownModelError:
        return ""
    except ModelRepositoryError as e:
        return str(e)
    except Exception as e:  # a file that breaks a reader in an unforeseen way
        return f"{Path(root) / model}: cannot be read: {e}"
    return ""


def log_scan_errors(repo: ModelRepository, log: logging.Logger) -> None:
    """One warning per broken model of the last ``repo.scan()``, naming the file and problem."""
    for error in repo.scan_errors():
        log.warning("model %s is not served: %s", error.model or error.path.name, error)


if __name__ == "__main__":
    logging.disable(logging.WARNING)  # the readers' own warnings are not the answer
    print(check_model(Path(sys.argv[1]), sys.argv[2]))
