"""Write models into a repository: N distinct copies of one architecture, seeded weights."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from clockwork.core.errors import InvalidInputError
from clockwork.models.architectures import get_architecture
from clockwork.models.config import ModelConfig
from clockwork.models.errors import ModelRepositoryError
from clockwork.models.repository import CONFIG_FILE, WEIGHTS_FILE
from clockwork.models.weights import (
    Layout,
    check_layout,
    module_layout,
    read_layout,
    save_tensors,
    temporary_sibling,
)

DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 2, 4, 8, 16)
DEFAULT_COPIES = 1
DEFAULT_SEED = 0
SHARED_DIR = "_shared"
VERSION = 1
# Seeds go to torch.Generator.manual_seed; keep seed + copies inside a signed 64-bit range.
_MAX_SEED = (1 << 63) - 1


def model_names(prefix: str, copies: int) -> list[str]:
    """``prefix-0000`` .. ``prefix-NNNN`` (at least 4 digits, more when ``copies`` needs them)."""
    width = max(4, len(str(copies - 1)))
    return [f"{prefix}-{i:0{width}d}" for i in range(copies)]


def shared_weights_name(arch: str, params: Mapping[str, object], seed: int) -> str:
    """File name under ``_shared/`` for (arch, params, seed): equal inputs give equal weights."""
    canonical = json.dumps(dict(params), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{arch}:{canonical}".encode()).hexdigest()[:8]
    return f"{arch}-seed{seed}-{digest}.safetensors"


def create_repository(
    root: Path,
    arch: str,
    copies: int,
    seed: int,
    *,
    params: Mapping[str, object] | None = None,
    name_prefix: str | None = None,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    default_slo_ms: float | None = None,
    share_weights: bool = True,
    overwrite: bool = False,
) -> list[str]:
    """Write ``copies`` models of ``arch`` into the repository at ``root``; return their names.

    With ``share_weights`` every copy's config points at one file,
    ``_shared/<arch>-seed<seed>-<params digest>.safetensors`` (reused if it is already there
    and matches; the copies are still distinct models to a server). Without it, copy ``i`` gets
    its own weights in ``<name>/1/model.safetensors``, seeded ``seed + i``.

    Everything is checked before anything is written. An existing model directory is refused
    unless ``overwrite``, which replaces it (and rewrites the shared weights file). Files are
    written atomically and each config last, so an interrupted run leaves no half-written file
    and no config pointing at missing weights.
    """
    root = Path(root)
    spec = get_architecture(arch)
    resolved = spec.resolve_params(params)
    if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
        raise InvalidInputError(f"copies must be an integer >= 1, got {copies!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= _MAX_SEED - copies:
        raise InvalidInputError(f"seed must be an integer in [0, 2**63 - 1 - copies], got {seed!r}")
    if root.exists() and not root.is_dir():
        raise InvalidInputError(f"{root}: not a directory")

    names = model_names(name_prefix if name_prefix is not None else arch, copies)
    shared_name = shared_weights_name(arch, resolved, seed) if share_weights else None
    configs = [
        ModelConfig.from_architecture(
            name,
            arch,
            resolved,
            batch_sizes=batch_sizes,
            default_slo_ms=default_slo_ms,
            weights_file=f"../{SHARED_DIR}/{shared_name}" if shared_name else None,
        )
        for name in names
    ]
    if not overwrite:
        existing = [root / name for name in names if (root / name).exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise InvalidInputError(
                f"{existing[0]}: model directory already exists{more}; "
                "overwrite (--overwrite) replaces"
            )

    root.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": "pt",
        "clockwork.architecture": arch,
        "clockwork.arch_params": json.dumps(resolved, sort_keys=True),
    }
    if shared_name is not None:
        path = root / SHARED_DIR / shared_name
        if overwrite or not _matches(path, module_layout(spec.build_skeleton(resolved))):
            module = spec.build(resolved, seed)
            save_tensors(module.state_dict(), path, {**metadata, "clockwork.seed": str(seed)})
    for i, config in enumerate(configs):
        model_dir = root / config.name
        if model_dir.is_dir() and not model_dir.is_symlink():
            shutil.rmtree(model_dir)
        elif model_dir.exists() or model_dir.is_symlink():
            model_dir.unlink()
        if shared_name is None:
            module = spec.build(resolved, seed + i)
            save_tensors(
                module.state_dict(),
                model_dir / str(VERSION) / WEIGHTS_FILE,
                {**metadata, "clockwork.seed": str(seed + i)},
            )
        write_text_atomic(model_dir / CONFIG_FILE, json.dumps(config.to_json(), indent=2) + "\n")
    return names


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        with tmp.open("x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _matches(path: Path, layout: Layout) -> bool:
    """Whether ``path`` is a safetensors file with exactly ``layout`` (False if absent)."""
    if not path.is_file():
        return False
    try:
        check_layout(path, read_layout(path), layout)
    except ModelRepositoryError:
        return False
    return True
