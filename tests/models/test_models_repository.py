from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from clockwork.core.errors import InvalidInputError
from clockwork.models.architectures import get_architecture
from clockwork.models.config import ModelConfig
from clockwork.models.errors import ModelRepositoryError, UnknownModelError
from clockwork.models.repository import ModelRepository

# conftest's ``edit_config(root, name, change) -> path of the edited config.json``
EditConfig = Callable[[Path, str, Callable[[dict[str, Any]], None]], Path]

TRANSFORMERS = ["transformer-0000", "transformer-0001"]
MOBILENETS = ["mobilenet_v2-0000", "mobilenet_v2-0001"]


def _shared_file(root: Path) -> Path:
    (path,) = (root / "_shared").glob("*.safetensors")
    return path


def test_scan_finds_every_model(tiny_repo: Path) -> None:
    repo = ModelRepository(tiny_repo)
    configs = repo.scan()
    assert sorted(configs) == sorted(TRANSFORMERS + MOBILENETS)  # _shared is not a model
    assert repo.scan_errors() == []
    config = configs["transformer-0000"]
    assert config.architecture == "transformer"
    assert config.versions == (1,)
    assert config.batch_sizes == (1, 2, 4, 8, 16)
    assert config.max_batch_size == 16
    assert config.inputs[0].shape == (8,)
    assert config.weights_file is None
    assert configs["mobilenet_v2-0000"].weights_file is not None
    assert config.input_bytes == 8 * 8
    assert config.output_bytes == 3 * 4


@pytest.mark.parametrize(
    ("name", "arch", "seed"),
    [
        ("transformer-0001", "transformer", 2),  # own weights: seed + index
        ("mobilenet_v2-0001", "mobilenet_v2", 7),  # shared weights: the seed itself
    ],
)
def test_round_trip_gives_the_directly_built_module(
    tiny_repo: Path, tiny_params: dict[str, dict[str, Any]], name: str, arch: str, seed: int
) -> None:
    repo = ModelRepository(tiny_repo)
    config = repo.scan()[name]
    loaded = repo.build_module(name, 1)
    direct = get_architecture(arch).build(tiny_params[arch], seed=seed)
    assert not loaded.training
    sd_loaded, sd_direct = loaded.state_dict(), direct.state_dict()
    assert sd_loaded.keys() == sd_direct.keys()
    assert all(torch.equal(sd_loaded[k], sd_direct[k]) for k in sd_direct)
    spec = config.inputs[0]
    gen = torch.Generator().manual_seed(0)
    if spec.dtype == "INT64":
        x = torch.randint(0, 50, (4, *spec.shape), generator=gen)
    else:
        x = torch.randn(4, *spec.shape, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), direct(x), rtol=1e-6, atol=1e-7)


def test_copies_are_distinct_models_with_distinct_or_shared_weights(tiny_repo: Path) -> None:
    repo = ModelRepository(tiny_repo)
    a, b = (repo.load_weights(n, 1) for n in TRANSFORMERS)
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert (
        repo.weights_path(TRANSFORMERS[0], 1) == tiny_repo / "transformer-0000/1/model.safetensors"
    )
    p0, p1 = (repo.weights_path(n, 1) for n in MOBILENETS)
    assert p0.resolve() == p1.resolve() == _shared_file(tiny_repo).resolve()
    assert not (tiny_repo / "mobilenet_v2-0000" / "1").exists()


def test_scan_keeps_good_models_when_some_are_bad(tiny_repo: Path) -> None:
    (tiny_repo / "transformer-0000" / "config.json").write_text("{not json")
    (tiny_repo / "empty").mkdir()
    (tiny_repo / ".hidden").mkdir()
    (tiny_repo / "README.txt").write_text("not a model")
    repo = ModelRepository(tiny_repo)
    configs = repo.scan()
    assert sorted(configs) == sorted(["transformer-0001", *MOBILENETS])
    errors = repo.scan_errors()
    assert sorted(e.model or "" for e in errors) == ["empty", "transformer-0000"]
    assert all(isinstance(e, InvalidInputError) for e in errors)


def _drop_field(field: str) -> Any:
    return lambda d: d.pop(field)


def _set(field: str, value: object) -> Any:
    return lambda d: d.__setitem__(field, value)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_set("name", "transformer-0001"), "does not match its directory"),
        (_set("architecture", "vgg16"), "unknown architecture 'vgg16'"),
        (lambda d: d["inputs"][0].__setitem__("dtype", "FP33"), "unknown dtype 'FP33'"),
        (lambda d: d["inputs"][0].__setitem__("dtype", "TYPE_INT64"), "without 'TYPE_'"),
        (lambda d: d["inputs"][0].__setitem__("dtype", "FP32"), "do not match architecture"),
        (lambda d: d["inputs"][0].__setitem__("shape", [9]), "do not match architecture"),
        (lambda d: d["outputs"][0].__setitem__("shape", [4]), "do not match architecture"),
        (lambda d: d["inputs"][0].__setitem__("shape", [-1]), "positive integers"),
        (lambda d: d["arch_params"].__setitem__("seq_len", 9), "do not match architecture"),
        (lambda d: d["arch_params"].__setitem__("heads", 9), "no parameter 'heads'"),
        (_set("batch_sizes", [2, 4, 8, 16]), "must include 1"),
        (_set("batch_sizes", [1, 4, 2, 16]), "sorted"),
        (_set("batch_sizes", [1, 1, 16]), "sorted"),
        (_set("batch_sizes", [1, 2, 4, 8]), "must end at max_batch_size 16"),
        (_set("batch_sizes", [1, 32]), "must end at max_batch_size 16"),
        (_set("batch_sizes", "1,2"), "list of integers"),
        (_set("max_batch_size", 0), "max_batch_size"),
        (_set("versions", []), "versions"),
        (_set("versions", [0]), "versions"),
        (_set("versions", [1, 1]), "versions repeat"),
        (_set("default_slo_ms", 0), "default_slo_ms"),
        (_set("default_slo_ms", "fast"), "default_slo_ms"),
        (_set("weights_file", "/etc/passwd.safetensors"), "relative path"),
        (_set("weights_file", "w.bin"), ".safetensors"),
        (_set("colour", "blue"), "unknown fields"),
        (_drop_field("architecture"), "missing fields"),
        (lambda d: d.clear(), "missing fields"),
    ],
)
def test_bad_config_names_the_file(
    tiny_repo: Path, edit_config: EditConfig, change: Any, match: str
) -> None:
    path = edit_config(tiny_repo, "transformer-0000", change)
    repo = ModelRepository(tiny_repo)
    with pytest.raises(ModelRepositoryError, match=match) as info:
        repo.load_config("transformer-0000")
    assert str(path) in str(info.value)
    assert info.value.path == path
    assert isinstance(info.value, InvalidInputError)
    # The scan reports it and keeps the others.
    assert "transformer-0000" not in repo.scan()
    (error,) = repo.scan_errors()
    assert error.model == "transformer-0000"
    assert str(path) in str(error)


def test_missing_config(tiny_repo: Path) -> None:
    path = tiny_repo / "transformer-0000" / "config.json"
    path.unlink()
    with pytest.raises(ModelRepositoryError, match="missing config") as info:
        ModelRepository(tiny_repo).load_config("transformer-0000")
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2]", '"a string"'])
def test_bad_json(tiny_repo: Path, text: str) -> None:
    path = tiny_repo / "transformer-0000" / "config.json"
    path.write_text(text)
    with pytest.raises(ModelRepositoryError) as info:
        ModelRepository(tiny_repo).load_config("transformer-0000")
    assert str(path) in str(info.value)


def test_missing_weights_file(tiny_repo: Path) -> None:
    path = tiny_repo / "transformer-0000" / "1" / "model.safetensors"
    path.unlink()
    repo = ModelRepository(tiny_repo)
    for call in (
        lambda: repo.load_config("transformer-0000"),
        lambda: repo.weights_path("transformer-0000", 1),
        lambda: repo.build_module("transformer-0000", 1),
    ):
        with pytest.raises(ModelRepositoryError, match="missing weights file") as info:
            call()
        assert str(path) in str(info.value)


def test_missing_shared_weights_fails_every_sharer(tiny_repo: Path) -> None:
    shared = _shared_file(tiny_repo)
    shared.unlink()
    repo = ModelRepository(tiny_repo)
    assert sorted(repo.scan()) == TRANSFORMERS
    errors = repo.scan_errors()
    assert sorted(e.model or "" for e in errors) == MOBILENETS
    assert all(shared.name in str(e) and "missing weights file" in str(e) for e in errors)


def test_weights_file_outside_repository(tiny_repo: Path, edit_config: EditConfig) -> None:
    outside = tiny_repo.parent / "outside.safetensors"
    _shared_file(tiny_repo).rename(outside)
    path = edit_config(
        tiny_repo, "mobilenet_v2-0000", _set("weights_file", "../../outside.safetensors")
    )
    with pytest.raises(ModelRepositoryError, match="outside the repository") as info:
        ModelRepository(tiny_repo).load_config("mobilenet_v2-0000")
    assert str(path) in str(info.value)


def test_a_model_directory_symlinked_outside_is_refused(tiny_repo: Path) -> None:
    # a valid model, moved out of the repository and linked back in
    outside = tiny_repo.parent / "elsewhere"
    (tiny_repo / "transformer-0001").rename(outside)
    (tiny_repo / "transformer-0001").symlink_to(outside, target_is_directory=True)
    repo = ModelRepository(tiny_repo)
    with pytest.raises(ModelRepositoryError, match="points outside the repository") as info:
        repo.load_config("transformer-0001")
    assert str(outside) in str(info.value)
    with pytest.raises(ModelRepositoryError, match="outside the repository"):
        repo.build_module("transformer-0001", 1)
    # a scan skips it with that error and keeps the others
    assert sorted(repo.scan()) == sorted(["transformer-0000", *MOBILENETS])
    (error,) = repo.scan_errors()
    assert error.model == "transformer-0001" and "outside the repository" in str(error)


def test_a_weights_file_symlinked_outside_is_refused(tiny_repo: Path) -> None:
    weights = tiny_repo / "transformer-0000" / "1" / "model.safetensors"
    outside = tiny_repo.parent / "outside.safetensors"
    weights.rename(outside)
    weights.symlink_to(outside)
    with pytest.raises(ModelRepositoryError, match="outside the repository") as info:
        ModelRepository(tiny_repo).load_config("transformer-0000")
    assert str(weights) in str(info.value)


def test_links_that_stay_inside_the_repository_are_followed(tiny_repo: Path) -> None:
    # a model directory linked from another name inside the repository is that model...
    (tiny_repo / "_store").mkdir()
    (tiny_repo / "transformer-0001").rename(tiny_repo / "_store" / "transformer-0001")
    (tiny_repo / "transformer-0001").symlink_to(Path("_store") / "transformer-0001")
    # ...and a repository reached through a link is still itself
    link = tiny_repo.parent / "repo-link"
    link.symlink_to(tiny_repo, target_is_directory=True)
    repo = ModelRepository(link)
    assert sorted(repo.scan()) == sorted(TRANSFORMERS + MOBILENETS)
    assert repo.scan_errors() == []


def _rewrite_weights(path: Path, change: Any) -> None:
    tensors = {k: v.clone() for k, v in load_file(path).items()}  # not mapped: path is rewritten
    change(tensors)
    save_file(tensors, path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda t: t.pop("head.weight"), "missing tensors head.weight"),
        (
            lambda t: t.__setitem__("extra.weight", torch.zeros(2)),
            "unexpected tensors extra.weight",
        ),
        (
            lambda t: t.__setitem__("head.bias", torch.zeros(4)),
            r"head.bias is F32\[4\], expected F32\[3\]",
        ),
        (
            lambda t: t.__setitem__("head.bias", torch.zeros(3, dtype=torch.float16)),
            r"head.bias is F16\[3\], expected F32\[3\]",
        ),
    ],
)
def test_weights_not_matching_the_architecture(tiny_repo: Path, change: Any, match: str) -> None:
    path = tiny_repo / "transformer-0000" / "1" / "model.safetensors"
    _rewrite_weights(path, change)
    repo = ModelRepository(tiny_repo)
    for call in (
        lambda: repo.load_config("transformer-0000"),
        lambda: repo.load_weights("transformer-0000", 1),
        lambda: repo.build_module("transformer-0000", 1),
    ):
        with pytest.raises(ModelRepositoryError, match=match) as info:
            call()
        assert str(path) in str(info.value)
    assert sorted(repo.scan()) == sorted(["transformer-0001", *MOBILENETS])


@pytest.mark.parametrize(
    "content", [b"", b"not a safetensors file at all", b"\x08" + b"\0" * 7 + b"{}"]
)
def test_file_that_is_not_safetensors(tiny_repo: Path, content: bytes) -> None:
    path = tiny_repo / "transformer-0000" / "1" / "model.safetensors"
    path.write_bytes(content)
    repo = ModelRepository(tiny_repo)
    with pytest.raises(ModelRepositoryError, match="not a valid safetensors file") as info:
        repo.load_config("transformer-0000")
    assert str(path) in str(info.value)
    with pytest.raises(ModelRepositoryError, match="not a valid safetensors file"):
        repo.load_weights("transformer-0000", 1)


def test_truncated_weights_file(tiny_repo: Path) -> None:
    path = tiny_repo / "transformer-0000" / "1" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-16])
    with pytest.raises(ModelRepositoryError, match="not a valid safetensors file") as info:
        ModelRepository(tiny_repo).load_config("transformer-0000")
    assert str(path) in str(info.value)


def test_pickle_is_never_loaded(tiny_repo: Path) -> None:
    path = tiny_repo / "transformer-0000" / "1" / "model.safetensors"
    tensors = {k: v.clone() for k, v in load_file(path).items()}  # not mapped: path is rewritten
    torch.save(tensors, path)  # a pickle under the safetensors name
    with pytest.raises(ModelRepositoryError, match="not a valid safetensors file"):
        ModelRepository(tiny_repo).load_weights("transformer-0000", 1)


def test_unknown_model_and_version(tiny_repo: Path) -> None:
    repo = ModelRepository(tiny_repo)
    with pytest.raises(UnknownModelError, match="no such model directory"):
        repo.load_config("nope")
    with pytest.raises(UnknownModelError):
        repo.load_config("../repo")
    with pytest.raises(UnknownModelError, match="no version 2"):
        repo.weights_path("transformer-0000", 2)
    with pytest.raises(ModelRepositoryError, match="does not exist"):
        ModelRepository(tiny_repo / "missing").scan()


def test_badly_named_model_directory(tiny_repo: Path) -> None:
    (tiny_repo / "bad name").mkdir()
    repo = ModelRepository(tiny_repo)
    assert len(repo.scan()) == 4
    (error,) = repo.scan_errors()
    assert "bad name" in str(error)
    assert not isinstance(error, UnknownModelError)


def test_second_version_in_its_own_directory(tiny_repo: Path, edit_config: EditConfig) -> None:
    src = tiny_repo / "transformer-0001" / "1" / "model.safetensors"
    (tiny_repo / "transformer-0000" / "2").mkdir()
    (tiny_repo / "transformer-0000" / "2" / "model.safetensors").write_bytes(src.read_bytes())
    edit_config(tiny_repo, "transformer-0000", _set("versions", [1, 2]))
    repo = ModelRepository(tiny_repo)
    assert repo.load_config("transformer-0000").versions == (1, 2)
    v1, v2 = repo.load_weights("transformer-0000", 1), repo.load_weights("transformer-0000", 2)
    other = repo.load_weights("transformer-0001", 1)
    assert all(torch.equal(v2[k], other[k]) for k in v2)
    assert any(not torch.equal(v1[k], v2[k]) for k in v1)


def test_config_json_round_trip(tiny_repo: Path) -> None:
    path = tiny_repo / "mobilenet_v2-0000" / "config.json"
    data = json.loads(path.read_text())
    config = ModelConfig.from_json(data)
    assert config.to_json() == data
    assert ModelConfig.from_json(config.to_json()) == config
    assert hash(config) == hash(ModelConfig.from_json(data))


def test_partial_arch_params_take_defaults(tiny_repo: Path, edit_config: EditConfig) -> None:
    def drop_resolution(d: dict[str, Any]) -> None:
        d["arch_params"].pop("resolution")
        d["inputs"][0]["shape"] = [3, 224, 224]

    def drop_classes(d: dict[str, Any]) -> None:
        d["arch_params"].pop("num_classes")
        d["outputs"][0]["shape"] = [1000]

    edit_config(tiny_repo, "mobilenet_v2-0000", drop_resolution)
    edit_config(tiny_repo, "mobilenet_v2-0001", drop_classes)
    repo = ModelRepository(tiny_repo)
    config = repo.load_config("mobilenet_v2-0000")  # the resolution does not change the weights
    assert config.arch_params["resolution"] == 224
    assert config.to_json()["arch_params"]["resolution"] == 224
    with pytest.raises(ModelRepositoryError, match="weights do not match"):
        repo.load_config("mobilenet_v2-0001")  # 1000 classes: the head has another shape


def test_build_module_with_owned_memory_survives_in_place_rewrite(tiny_repo: Path) -> None:
    repo = ModelRepository(tiny_repo)
    module = repo.build_module("transformer-0000", 1, copy=True)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    path = repo.weights_path("transformer-0000", 1)
    path.write_bytes(b"")  # rewritten in place: only owned memory may be read now
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
