from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import torch

from clockwork.core.errors import InvalidInputError
from clockwork.models.create import create_repository, model_names, shared_weights_name
from clockwork.models.repository import ModelRepository


def test_names_and_layout(tmp_path: Path, tiny_params: dict[str, dict[str, Any]]) -> None:
    names = create_repository(
        tmp_path,
        "transformer",
        3,
        seed=4,
        params=tiny_params["transformer"],
        batch_sizes=(1, 2, 4),
        default_slo_ms=25.0,
    )
    assert names == ["transformer-0000", "transformer-0001", "transformer-0002"]
    shared = list((tmp_path / "_shared").iterdir())
    assert [p.name for p in shared] == [
        shared_weights_name(
            "transformer", ModelRepository(tmp_path).scan()[names[0]].arch_params, 4
        )
    ]
    data = json.loads((tmp_path / names[1] / "config.json").read_text())
    assert data["name"] == names[1]
    assert data["versions"] == [1]
    assert data["batch_sizes"] == [1, 2, 4]
    assert data["max_batch_size"] == 4
    assert data["default_slo_ms"] == 25.0
    assert data["weights_file"] == f"../_shared/{shared[0].name}"
    assert data["arch_params"] == tiny_params["transformer"]  # every parameter, written out
    mode = stat.S_IMODE(shared[0].stat().st_mode)
    assert mode & stat.S_IRGRP, oct(mode)  # not a private 0600 file


def test_model_names_widen_past_ten_thousand() -> None:
    assert model_names("m", 2) == ["m-0000", "m-0001"]
    names = model_names("m", 10_001)
    assert names[0] == "m-00000" and names[-1] == "m-10000"


def test_prefix_and_unshared_seeds(tmp_path: Path, tiny_params: dict[str, dict[str, Any]]) -> None:
    params = tiny_params["transformer"]
    names = create_repository(
        tmp_path, "transformer", 2, seed=10, params=params, name_prefix="bert", share_weights=False
    )
    assert names == ["bert-0000", "bert-0001"]
    assert not (tmp_path / "_shared").exists()
    repo = ModelRepository(tmp_path)
    for i, name in enumerate(names):
        expected = repo.load_config(name).arch_spec.build(params, seed=10 + i).state_dict()
        got = repo.load_weights(name, 1)
        assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_refuses_to_overwrite_and_changes_nothing(
    tmp_path: Path, tiny_params: dict[str, dict[str, Any]]
) -> None:
    params = tiny_params["transformer"]
    create_repository(tmp_path, "transformer", 1, seed=1, params=params)
    before = (tmp_path / "transformer-0000" / "config.json").read_text()
    with pytest.raises(InvalidInputError, match="transformer-0000: model directory already exists"):
        create_repository(tmp_path, "transformer", 3, seed=2, params=params)
    assert not (tmp_path / "transformer-0001").exists()  # checked before writing anything
    assert (tmp_path / "transformer-0000" / "config.json").read_text() == before


def test_overwrite_replaces_the_model(
    tmp_path: Path, tiny_params: dict[str, dict[str, Any]]
) -> None:
    params = tiny_params["transformer"]
    create_repository(tmp_path, "transformer", 1, seed=1, params=params, share_weights=False)
    create_repository(tmp_path, "transformer", 1, seed=2, params=params, overwrite=True)
    assert not (tmp_path / "transformer-0000" / "1").exists()  # old weights went with the dir
    repo = ModelRepository(tmp_path)
    assert list(repo.scan()) == ["transformer-0000"]
    expected = repo.load_config("transformer-0000").arch_spec.build(params, seed=2).state_dict()
    got = repo.load_weights("transformer-0000", 1)
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_shared_file_is_reused_by_later_copies(
    tmp_path: Path, tiny_params: dict[str, dict[str, Any]]
) -> None:
    params = tiny_params["transformer"]
    create_repository(tmp_path, "transformer", 1, seed=1, params=params, name_prefix="a")
    (shared,) = (tmp_path / "_shared").iterdir()
    mtime = shared.stat().st_mtime_ns
    create_repository(tmp_path, "transformer", 1, seed=1, params=params, name_prefix="b")
    assert [p.name for p in (tmp_path / "_shared").iterdir()] == [shared.name]
    assert shared.stat().st_mtime_ns == mtime
    create_repository(tmp_path, "transformer", 1, seed=2, params=params, name_prefix="c")
    assert len(list((tmp_path / "_shared").iterdir())) == 2
    assert sorted(ModelRepository(tmp_path).scan()) == ["a-0000", "b-0000", "c-0000"]


def test_a_damaged_shared_file_is_rewritten(
    tmp_path: Path, tiny_params: dict[str, dict[str, Any]]
) -> None:
    params = tiny_params["transformer"]
    create_repository(tmp_path, "transformer", 1, seed=1, params=params, name_prefix="a")
    (shared,) = (tmp_path / "_shared").iterdir()
    shared.write_bytes(b"garbage")
    create_repository(tmp_path, "transformer", 1, seed=1, params=params, name_prefix="b")
    assert sorted(ModelRepository(tmp_path).scan()) == ["a-0000", "b-0000"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arch": "vgg"}, "unknown architecture"),
        ({"copies": 0}, "copies"),
        ({"seed": -1}, "seed"),
        ({"params": {"resolution": 32}}, "no parameter 'resolution'"),
        ({"batch_sizes": (2, 4)}, "must include 1"),
        ({"batch_sizes": ()}, "batch_sizes"),
        ({"default_slo_ms": 0.0}, "default_slo_ms"),
        ({"name_prefix": "a/b"}, "not valid"),
        ({"name_prefix": "_x"}, "not valid"),
    ],
)
def test_bad_arguments_write_nothing(
    tmp_path: Path, tiny_params: dict[str, dict[str, Any]], kwargs: dict[str, Any], match: str
) -> None:
    args: dict[str, Any] = {
        "arch": "transformer",
        "copies": 2,
        "seed": 0,
        "params": tiny_params["transformer"],
    }
    args.update(kwargs)
    root = tmp_path / "repo"
    with pytest.raises(InvalidInputError, match=match):
        create_repository(root, args.pop("arch"), args.pop("copies"), args.pop("seed"), **args)
    assert not root.exists()
