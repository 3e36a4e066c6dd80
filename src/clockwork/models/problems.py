"""Why a repository's model is not served, for the answers and logs a user can act on.

``clockwork serve`` holds the repository its local worker serves: a repository load of a model
that no worker registered asks :meth:`RepositoryProblems.why_broken`, and a model that is in the
repository but broken (missing, corrupt or unsupported file, a config that does not match it) is
refused with the file and the problem (400), not as an unknown model (404).
"""

from __future__ import annotations

import logging
from pathlib import Path

from clockwork.models.errors import ModelRepositoryError, UnknownModelError
from clockwork.models.repository import ModelRepository


class RepositoryProblems:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def why_broken(self, model: str) -> str:
        """The problem of ``model`` in the repository; "" if it is valid or not there at all."""
        repo = ModelRepository(self.root)
        try:
            repo.load_config(model)
        except UnknownModelError:
            return ""
        except ModelRepositoryError as e:
            return str(e)
        except Exception as e:  # a file that breaks a reader in an unforeseen way
            return f"{self.root / model}: cannot be read: {e}"
        return ""


def log_scan_errors(repo: ModelRepository, log: logging.Logger) -> None:
    """One warning per broken model of the last ``repo.scan()``, naming the file and problem."""
    for error in repo.scan_errors():
        log.warning("model %s is not served: %s", error.model or error.path.name, error)
