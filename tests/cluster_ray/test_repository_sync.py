"""A repository copied to a node without its directory: checksums, cache, bad manifests
(no Ray needed: the fetch is a function)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from clockwork.cluster_ray.repository_sync import (
    ManifestBuilder,
    RepositoryFile,
    RepositoryManifest,
    RepositoryTransferError,
    sync_repository,
)


def make_source(root: Path) -> None:
    (root / "m1" / "1").mkdir(parents=True)
    (root / "m1" / "config.json").write_text('{"name": "m1"}')
    (root / "m1" / "1" / "model.safetensors").write_bytes(bytes(range(256)) * 100)
    (root / "_shared").mkdir()
    (root / "_shared" / "w.safetensors").write_bytes(b"w" * 1000)
    (root / ".hidden").write_text("not shipped")


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def test_sync_copies_verifies_and_caches(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_source(src)
    builder = ManifestBuilder(src)
    manifest = builder.manifest()
    assert [f.path for f in manifest.files] == [
        "_shared/w.safetensors",
        "m1/1/model.safetensors",
        "m1/config.json",
    ]
    calls: list[tuple[str, int, int]] = []

    def fetch(path: str, offset: int, size: int) -> bytes:
        calls.append((path, offset, size))
        return builder.read(path, offset, size)

    target, store = tmp_path / "node" / "repo", tmp_path / "node" / "store"
    report = sync_repository(manifest, target, store, fetch, chunk_bytes=4096)
    assert tree(target) == tree(src)
    assert report.fetched_files == 3 and report.cached_files == 0
    assert report.fetched_bytes == manifest.size_bytes
    assert len(calls) > 3  # the weights came in several chunks
    for f in manifest.files:
        assert hashlib.sha256((store / f.sha256).read_bytes()).hexdigest() == f.sha256

    # nothing changed: nothing fetched; one file changed at the source: only it
    calls.clear()
    again = sync_repository(builder.manifest(), target, store, fetch)
    assert (again.fetched_files, again.cached_files, calls) == (0, 3, [])
    (src / "m1" / "config.json").write_text('{"name": "m1", "v": 2}')
    changed = sync_repository(builder.manifest(), target, store, fetch)
    assert (changed.fetched_files, changed.cached_files) == (1, 2)
    assert tree(target) == tree(src)


def test_corrupt_bytes_are_refused_and_a_corrupt_cache_is_fetched_again(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_source(src)
    builder = ManifestBuilder(src)
    manifest = builder.manifest()
    target, store = tmp_path / "repo", tmp_path / "store"

    def corrupt(path: str, offset: int, size: int) -> bytes:
        data = builder.read(path, offset, size)
        return data[:-1] + b"?" if path.endswith("model.safetensors") else data

    with pytest.raises(RepositoryTransferError, match=r"m1/1/model\.safetensors: sha256"):
        sync_repository(manifest, target, store, corrupt)
    assert not (target / "m1" / "1" / "model.safetensors").exists()
    assert not [p for p in store.iterdir() if p.name.startswith(".fetch-")]

    sync_repository(manifest, target, store, builder.read)
    weights = next(f for f in manifest.files if f.path.endswith("model.safetensors"))
    (store / weights.sha256).unlink()
    (store / weights.sha256).write_bytes(b"rotten")
    report = sync_repository(manifest, tmp_path / "repo2", store, builder.read)
    assert report.fetched_files == 1
    assert tree(tmp_path / "repo2") == tree(src)


@pytest.mark.parametrize("bad", ["../escape", "/etc/passwd", "a/../../b", ""])
def test_a_path_outside_the_repository_writes_nothing(tmp_path: Path, bad: str) -> None:
    good = RepositoryFile("ok.json", 2, hashlib.sha256(b"{}").hexdigest())
    manifest = RepositoryManifest((good, dataclasses.replace(good, path=bad)))
    with pytest.raises(RepositoryTransferError, match="not inside the repository"):
        sync_repository(manifest, tmp_path / "repo", tmp_path / "store", lambda p, o, s: b"{}")
    assert not (tmp_path / "repo").exists()


def test_manifest_of_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(RepositoryTransferError, match="no such directory"):
        ManifestBuilder(tmp_path / "nope").manifest()
