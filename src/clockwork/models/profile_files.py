"""Where a model's profiles lie in a repository: ``<model dir>/profile-<device kind>.json``."""

from __future__ import annotations

import re
from pathlib import Path

from clockwork.models.repository import ModelRepository


def kind_file_name(kind: str) -> str:
    """A device kind name as it may appear in a file name (``NVIDIA H200`` -> ``NVIDIA-H200``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", kind).strip("-") or "device"


def profile_path(repo: ModelRepository, model: str, kind: str, out: Path | None = None) -> Path:
    """``<model dir>/profile-<kind>.json`` (or ``<out>/<model>/profile-<kind>.json``)."""
    base = (out if out is not None else repo.root) / model
    return base / f"profile-{kind_file_name(kind)}.json"
