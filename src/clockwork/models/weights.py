"""Weights files: safetensors only (never pickle), checked against an architecture's layout.

A *layout* maps each tensor name to (shape, safetensors dtype name). Reading a layout touches only
a file's header, so a repository of thousands of models is checked without reading weights.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from clockwork.models.errors import ModelRepositoryError
from clockwork.models.tensors import SAFETENSORS_DTYPES

Layout = dict[str, tuple[tuple[int, ...], str]]

# How many names a layout mismatch lists before "... and N more".
_MAX_LISTED = 5


def module_layout(module: nn.Module) -> Layout:
    """The layout ``module.state_dict()`` has (works on a meta-device skeleton)."""
    return {
        name: (tuple(t.shape), SAFETENSORS_DTYPES[t.dtype])
        for name, t in module.state_dict().items()
    }


def tensors_layout(tensors: Mapping[str, torch.Tensor]) -> Layout:
    return {name: (tuple(t.shape), SAFETENSORS_DTYPES[t.dtype]) for name, t in tensors.items()}


@contextmanager
def _reading(path: Path, model: str | None) -> Iterator[None]:
    """Turn the ways reading a weights file fails into ModelRepositoryError naming it."""
    try:
        yield
    except FileNotFoundError:
        raise ModelRepositoryError(path, "weights file does not exist", model) from None
    except OSError as e:
        raise ModelRepositoryError(path, f"cannot read weights file: {e}", model) from e
    except safetensors.SafetensorError as e:
        raise ModelRepositoryError(path, f"not a valid safetensors file: {e}", model) from e


def read_layout(path: Path, model: str | None = None) -> Layout:
    """The layout in a safetensors file's header; ModelRepositoryError if it is not one."""
    with _reading(path, model), safetensors.safe_open(str(path), framework="pt") as f:
        layout: Layout = {}
        for name in f.keys():  # noqa: SIM118 (a safe_open handle is not a mapping)
            tensor_slice = f.get_slice(name)
            layout[name] = (tuple(tensor_slice.get_shape()), str(tensor_slice.get_dtype()))
        return layout


def check_layout(path: Path, actual: Layout, expected: Layout, model: str | None = None) -> None:
    """Raise ModelRepositoryError naming ``path`` unless the two layouts are identical."""
    if actual == expected:
        return
    problems: list[str] = []
    missing = [name for name in expected if name not in actual]
    extra = [name for name in actual if name not in expected]
    wrong = [
        f"{name} is {_show(actual[name])}, expected {_show(expected[name])}"
        for name in expected
        if name in actual and actual[name] != expected[name]
    ]
    if missing:
        problems.append(f"missing tensors {_listed(missing)}")
    if extra:
        problems.append(f"unexpected tensors {_listed(extra)}")
    if wrong:
        problems.append(f"mis-shaped tensors: {_listed(wrong)}")
    raise ModelRepositoryError(
        path, "weights do not match the architecture: " + "; ".join(problems), model
    )


def load_tensors(path: Path, model: str | None = None) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, memory-mapped (copy-on-write), on the CPU."""
    with _reading(path, model):
        tensors: dict[str, torch.Tensor] = safetensors.torch.load_file(str(path))
    return tensors


def save_tensors(
    tensors: Mapping[str, torch.Tensor], path: Path, metadata: Mapping[str, str] | None = None
) -> None:
    """Write a safetensors file atomically (a temporary file renamed into place).

    Renaming keeps any memory map of the old file valid: a running worker never sees a file
    change under it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    contiguous = {name: t.detach().contiguous() for name, t in tensors.items()}
    tmp = temporary_sibling(path)
    try:
        safetensors.torch.save_file(contiguous, str(tmp), metadata=dict(metadata or {}))
        tmp.chmod(0o666 & ~_umask())  # safetensors writes private (0600) files
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name beside ``path`` to write into before renaming (respects the umask,
    unlike ``tempfile``'s private 0600 files)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` would, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _show(entry: tuple[tuple[int, ...], str]) -> str:
    shape, dtype = entry
    return f"{dtype}{list(shape)}"


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        shown += f", ... and {len(items) - _MAX_LISTED} more"
    return shown
