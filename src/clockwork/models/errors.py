"""Errors of the model repository: which file is wrong and why."""

from __future__ import annotations

from pathlib import Path

from clockwork.core.errors import InvalidInputError


class ModelRepositoryError(InvalidInputError):
    """A model in the repository is malformed; the message names the file and the problem.

    ``model`` is the model (directory) name where one is known; ``path`` the offending file or
    directory.
    """

    def __init__(self, path: Path, problem: str, model: str | None = None) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
        self.model = model


class UnknownModelError(ModelRepositoryError):
    """The repository has no directory for the requested model (or version)."""
