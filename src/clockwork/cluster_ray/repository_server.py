"""The body of the repository server actor (``RayWorkerPool`` wraps it with ``ray.remote`` and
pins it to the controller's node, where the repository's directory is): manifests and chunks of
the files, for workers on nodes without the directory."""

from __future__ import annotations

from pathlib import Path

from clockwork.cluster_ray.repository_sync import ManifestBuilder, RepositoryManifest


class RepositoryServer:
    def __init__(self, root: str) -> None:
        self._builder = ManifestBuilder(Path(root))

    def manifest(self) -> RepositoryManifest:
        return self._builder.manifest()

    def read(self, path: str, offset: int, size: int) -> bytes:
        return self._builder.read(path, offset, size)
