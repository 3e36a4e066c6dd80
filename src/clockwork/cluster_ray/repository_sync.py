"""A model repository copied to a node that lacks its directory: a manifest of the source's
files (path, size, sha256), and a sync that fetches what the node's cache lacks in chunks,
checks each file's sha256 before keeping it, and lays the repository out from the cache.

The cache is content-addressed (``STORE/<sha256>``), so a file that did not change is never
fetched again, also across restarts of the worker; the repository a worker serves
(``TARGET/<path>``) is made of hard links into it (copies where links fail). A file only in
the target (a profile the worker wrote) is left there.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from clockwork.core.errors import ClockworkError

#: the most bytes one fetch call carries (a model's weights may be GBs)
CHUNK_BYTES = 32 * 2**20

#: fetch(path, offset, size) -> the bytes of the source's file ``path`` from ``offset``
Fetch = Callable[[str, int, int], bytes]


class RepositoryTransferError(ClockworkError):
    """A repository file could not be copied to this node (bad path, checksum mismatch)."""


@dataclass(frozen=True)
class RepositoryFile:
    path: str  # relative, POSIX separators
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class RepositoryManifest:
    files: tuple[RepositoryFile, ...]

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)


@dataclass(frozen=True)
class SyncReport:
    fetched_files: int
    fetched_bytes: int
    cached_files: int


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(2**20):
            h.update(chunk)
    return h.hexdigest()


class ManifestBuilder:
    """Manifests of the repository at ``root``; a file's hash is computed again only when its
    size or modification time changed."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._hashes: dict[str, tuple[int, int, str]] = {}

    def manifest(self) -> RepositoryManifest:
        if not self.root.is_dir():
            raise RepositoryTransferError(f"repository {self.root}: no such directory")
        files = []
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root)
            # hidden files and directories (editors', ours) are not the repository's
            if not path.is_file() or any(part.startswith(".") for part in rel.parts):
                continue
            key = rel.as_posix()
            st = path.stat()
            known = self._hashes.get(key)
            if known is not None and known[:2] == (st.st_size, st.st_mtime_ns):
                digest = known[2]
            else:
                digest = _sha256_file(path)
                self._hashes[key] = (st.st_size, st.st_mtime_ns, digest)
            files.append(RepositoryFile(key, st.st_size, digest))
        return RepositoryManifest(tuple(files))

    def read(self, path: str, offset: int, size: int) -> bytes:
        """``size`` bytes (fewer at the end) of file ``path`` from ``offset``."""
        full = self.root / safe_relative(path)
        with full.open("rb") as f:
            f.seek(offset)
            return f.read(size)


def safe_relative(path: str) -> Path:
    """``path`` as a relative path that stays inside its root; ``RepositoryTransferError`` if it
    is absolute or climbs out (a manifest must not write elsewhere on the node)."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts:
        raise RepositoryTransferError(f"repository path {path!r} is not inside the repository")
    return Path(*p.parts)


def _fetch_verified(file: RepositoryFile, store: Path, fetch: Fetch, chunk_bytes: int) -> Path:
    """Fetch ``file`` into ``store`` under its sha256, checked before it is kept."""
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=store, prefix=".fetch-")
    try:
        with os.fdopen(fd, "wb") as out:
            offset = 0
            while offset < file.size_bytes:
                chunk = fetch(file.path, offset, min(chunk_bytes, file.size_bytes - offset))
                if not chunk:
                    raise RepositoryTransferError(
                        f"{file.path}: source ended at {offset} of {file.size_bytes} bytes"
                    )
                h.update(chunk)
                out.write(chunk)
                offset += len(chunk)
        if h.hexdigest() != file.sha256:
            raise RepositoryTransferError(
                f"{file.path}: sha256 {h.hexdigest()} of the bytes received is not the "
                f"manifest's {file.sha256} (changed at the source while copied?)"
            )
        dest = store / file.sha256
        os.replace(tmp, dest)
        return dest
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sync_repository(
    manifest: RepositoryManifest,
    target: Path,
    store: Path,
    fetch: Fetch,
    chunk_bytes: int = CHUNK_BYTES,
) -> SyncReport:
    """Make ``target`` hold every file of ``manifest``, fetching into the cache ``store`` only
    what it lacks (a cached file is checked against its sha256 too, and fetched again if it
    does not match). Every path is checked before anything is written."""
    paths = [safe_relative(f.path) for f in manifest.files]
    store.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    fetched_files = fetched_bytes = cached_files = 0
    for file, rel in zip(manifest.files, paths, strict=True):
        cached = store / file.sha256
        if cached.is_file() and _sha256_file(cached) == file.sha256:
            cached_files += 1
        else:
            cached = _fetch_verified(file, store, fetch, chunk_bytes)
            fetched_files += 1
            fetched_bytes += file.size_bytes
        dest = target / rel
        if dest.is_file() and os.path.samefile(dest, cached):
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".sync-{dest.name}")
        tmp.unlink(missing_ok=True)
        try:
            os.link(cached, tmp)
        except OSError:
            tmp.write_bytes(cached.read_bytes())
        os.replace(tmp, dest)
    return SyncReport(fetched_files, fetched_bytes, cached_files)
