"""Shared fixtures of the model tests: tiny architectures so the folder runs in seconds."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from clockwork.models.create import create_repository

# A transformer of a few thousand parameters and an image model at 32x32.
TINY_TRANSFORMER: dict[str, Any] = {
    "vocab_size": 50,
    "seq_len": 8,
    "d_model": 16,
    "num_layers": 1,
    "num_heads": 2,
    "ffn_dim": 32,
    "num_classes": 3,
}
TINY_MOBILENET: dict[str, Any] = {"num_classes": 10, "resolution": 32, "width_mult": 0.25}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One torch thread here (small ops, 2-core machines); other folders keep theirs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_params() -> dict[str, dict[str, Any]]:
    """Small parameters per architecture, for fast builds and forwards."""
    return {
        "transformer": dict(TINY_TRANSFORMER),
        "mobilenet_v2": dict(TINY_MOBILENET),
        "resnet18": {"num_classes": 10, "resolution": 32},
        "resnet50": {"num_classes": 7, "resolution": 32},
    }


@pytest.fixture(scope="session")
def _tiny_repo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "repo"
    create_repository(root, "transformer", 2, seed=1, params=TINY_TRANSFORMER, share_weights=False)
    create_repository(root, "mobilenet_v2", 2, seed=7, params=TINY_MOBILENET, share_weights=True)
    return root


@pytest.fixture
def tiny_repo(tmp_path: Path, _tiny_repo_template: Path) -> Path:
    """A fresh copy of: two transformer models with their own weights files (seeds 1 and 2),
    and two mobilenets sharing one (seed 7)."""
    root = tmp_path / "repo"
    shutil.copytree(_tiny_repo_template, root)
    return root


EditConfig = Callable[[Path, str, Callable[[dict[str, Any]], None]], Path]


@pytest.fixture
def edit_config() -> EditConfig:
    """``edit_config(root, name, change)``: apply ``change`` to the model's config.json."""

    def edit(root: Path, name: str, change: Callable[[dict[str, Any]], None]) -> Path:
        path = root / name / "config.json"
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))
        return path

    return edit
