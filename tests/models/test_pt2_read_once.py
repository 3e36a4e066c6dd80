"""A ``.pt2`` program is read once per process start: the repository's check, the profiler and
the backend that serves it share it (``torch.export.load`` takes seconds on a real network)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from clockwork.models.model_files import weights_sizes
from clockwork.models.model_import import import_model
from clockwork.models.repository import ModelRepository
from clockwork.worker.assembly import torch_setup

from support.own_models import export_pt2, make_net


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths ``torch.export.load`` reads, in order (it still reads them)."""
    seen: list[str] = []
    real: Callable[..., Any] = torch.export.load

    def counting(f: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(str(f))
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch.export, "load", counting)
    return seen


def test_start_with_profiling_reads_the_program_once(tmp_path: Path, loads: list[str]) -> None:
    pt2 = export_pt2("mlp", make_net("mlp"), tmp_path / "files" / "mlp.pt2")
    repo_dir = tmp_path / "repo"
    import_model(repo_dir, pt2, "mlp", max_batch_size=2)
    assert len(loads) == 1  # the import: signature and both trial runs from one read
    loads.clear()
    # scan (the signature check), profile (weights sizes, a backend), serve (a backend)
    _devices, infos = torch_setup("w0", repo_dir, "cpu", profile_missing=True)
    assert [i.name for i in infos] == ["mlp"]
    assert loads == [str(repo_dir / "mlp" / "1" / "model.pt2")]


def test_a_replaced_file_is_read_again(tmp_path: Path, loads: list[str]) -> None:
    files = tmp_path / "files"
    first = export_pt2("mlp", make_net("mlp", seed=1), files / "a.pt2")
    second = export_pt2("mlp", make_net("mlp", seed=2), files / "b.pt2")
    import_model(tmp_path / "repo", first, "mlp", max_batch_size=2)
    repo = ModelRepository(tmp_path / "repo")
    loads.clear()
    before = repo.pt2_program("mlp", 1)
    assert repo.pt2_program("mlp", 1) is before
    assert sum(n for _, n in weights_sizes(repo, "mlp")) > 0
    assert len(loads) == 1
    target = tmp_path / "repo" / "mlp" / "1" / "model.pt2"
    os.replace(second, target)  # a new file (inode) in its place
    after = repo.pt2_program("mlp", 1)
    assert after is not before and len(loads) == 2
    key = next(iter(after.state_dict))
    assert not torch.equal(after.state_dict[key], before.state_dict[key])
