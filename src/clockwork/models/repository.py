"""A Triton-like model repository on disk.

Layout::

    REPO/
      <model>/config.json                  (see clockwork.models.config)
      <model>/<version>/model.safetensors  (version directories are positive integers)
      _shared/<file>.safetensors           (weights that several models' configs point at)

or, for a model of one's own (a ``.pt2`` torch.export program or an ``.onnx`` file)::

      <model>/config.json or config.pbtxt  (Triton's layout: clockwork.models.triton_config)
      <model>/<version>/model.pt2          (or model.onnx, or the config's file name)

A model file's signature is checked against its config when the config is loaded (memoized per
file identity, like the weights headers). A ``.pt2`` program is loaded once per file identity
and kept (:meth:`ModelRepository.pt2_program`): the check, the profiler and the backend that
serves it share that one program (``torch.export.load`` takes seconds for a MobileNetV2).

Directories whose names start with ``_`` or ``.`` are not models and are skipped by
:meth:`ModelRepository.scan`, as are plain files at the top level. Every problem raises
:class:`ModelRepositoryError` (an ``InvalidInputError``) naming the offending file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from clockwork.core.errors import InvalidInputError
from clockwork.models.config import ModelConfig, check_model_name
from clockwork.models.errors import ModelRepositoryError, UnknownModelError
from clockwork.models.formats import ModelFormat
from clockwork.models.model_files import (
    check_signature,
    file_signature,
    load_pt2,
    pt2_signature,
)
from clockwork.models.pbtxt import PbtxtError
from clockwork.models.triton_config import PBTXT_FILE, parse_triton_config
from clockwork.models.weights import (
    Layout,
    check_layout,
    load_tensors,
    module_layout,
    read_layout,
    tensors_layout,
)

if TYPE_CHECKING:
    from torch.export import ExportedProgram

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

# (architecture, sorted params) -> expected layout
_ArchKey = tuple[str, tuple[tuple[str, object], ...]]
# (weights path, mtime_ns, size, inode, architecture key): a weights header already checked
_CheckedKey = tuple[str, int, int, int, _ArchKey]


class ModelRepository:
    """Reads and validates the models under ``root``; never writes.

    Reads are not cached across calls except for two small memos: the tensor layout of each
    (architecture, parameters) and which weights files (by path, size, mtime, inode) already
    matched it, so scanning many models that share one weights file reads its header once.
    """

    def __init__(self, root: Path | str) -> None:
        self._root = Path(root)
        self._errors: list[ModelRepositoryError] = []
        self._layouts: dict[_ArchKey, Layout] = {}
        self._checked: set[_CheckedKey] = set()
        # resolved path -> ((mtime_ns, size, inode), program): the last program read there
        self._programs: dict[str, tuple[tuple[int, int, int], ExportedProgram]] = {}

    @property
    def root(self) -> Path:
        return self._root

    def model_dirs(self) -> list[str]:
        """Names of the top-level directories that should be models, sorted."""
        if not self._root.is_dir():
            raise ModelRepositoryError(self._root, "model repository directory does not exist")
        return sorted(
            entry.name
            for entry in self._root.iterdir()
            if entry.is_dir() and not entry.name.startswith(("_", "."))
        )

    def scan(self) -> dict[str, ModelConfig]:
        """Every valid model by name, fully checked (weights by header only).

        A bad model does not stop the scan: its error is kept, one per bad model, in
        :meth:`scan_errors`.
        """
        good: dict[str, ModelConfig] = {}
        errors: list[ModelRepositoryError] = []
        for name in self.model_dirs():
            try:
                good[name] = self.load_config(name)
            except ModelRepositoryError as e:
                errors.append(e)
        self._errors = errors
        return good

    def scan_errors(self) -> list[ModelRepositoryError]:
        """The errors of the last :meth:`scan`, one per bad model directory (``.model``)."""
        return list(self._errors)

    def load_config(self, name: str) -> ModelConfig:
        """The model's validated config; its weights files exist and match (headers only)."""
        config = self._read_config(name)
        for version in config.versions:
            path = self._weights_path(config, version)
            if config.format is ModelFormat.BUILTIN:
                self._check_weights(config, path)
            else:
                self._check_model_file(config, path)
        return config

    def weights_path(self, name: str, version: int) -> Path:
        """Where the weights of ``name`` version ``version`` are (the file exists): the
        safetensors file of a built-in architecture, the model file of a ``.pt2`` or ``.onnx``
        model."""
        config = self._read_config(name)
        return self._weights_path(config, version)

    def pt2_program(self, name: str, version: int) -> ExportedProgram:
        """The ``torch.export`` program of ``.pt2`` model ``name`` version ``version``, read
        with safe loaders (``load_pt2``) once per file identity (path, mtime, size, inode) and
        kept for later calls: a replaced file is read again. A caller must not change the
        program (``ExportedProgram.module()`` makes a new module each call)."""
        config = self._read_config(name)
        if config.format is not ModelFormat.TORCH_EXPORT:
            raise ModelRepositoryError(
                self._root / name, f"a {config.format.value} model, not a .pt2 program", name
            )
        return self._pt2_at(self._weights_path(config, version), name)

    def measure_key(self, config: ModelConfig) -> tuple[object, ...]:
        """``config.measure_key``, except that models of one's own whose latest version is one
        file (links to it, as the demo repository's are) with the same tensors and batch sizes
        share a key too: a profile measured on one serves all."""
        if config.format is ModelFormat.BUILTIN:
            return config.measure_key
        path = self._weights_path(config, max(config.versions))
        try:
            resolved = path.resolve()
            st = resolved.stat()
        except OSError as e:
            raise ModelRepositoryError(path, f"cannot read model file: {e}", config.name) from e
        identity = (str(resolved), st.st_mtime_ns, st.st_size, st.st_ino)
        tensors = (config.inputs, config.outputs, config.max_batch_size)
        return (config.format.value, identity, tensors, config.batch_sizes)

    def _pt2_at(self, path: Path, name: str) -> ExportedProgram:
        try:
            resolved = path.resolve()
            st = resolved.stat()
        except OSError as e:
            raise ModelRepositoryError(path, f"cannot read model file: {e}", name) from e
        identity = (st.st_mtime_ns, st.st_size, st.st_ino)
        known = self._programs.get(str(resolved))
        if known is not None and known[0] == identity:
            return known[1]
        program = load_pt2(path, name)
        self._programs[str(resolved)] = (identity, program)
        return program

    def load_weights(
        self, name: str, version: int, *, copy: bool = False
    ) -> dict[str, torch.Tensor]:
        """The model's tensors on the CPU, checked against its architecture's layout.

        By default they are memory-mapped from the safetensors file (copy-on-write): models that
        share one file share its pages in host memory. A mapping needs the file to stay as it
        is: files must be replaced by renaming a new one into place (as this package's writers
        do), never rewritten in place (``cp`` over it, ``torch.save``), which can crash the
        process that mapped it (SIGBUS). ``copy=True`` returns tensors in owned memory instead.
        """
        config = self._read_config(name)
        path = self._weights_path(config, version)
        if config.format is not ModelFormat.BUILTIN:
            raise ModelRepositoryError(
                path, f"a {config.format.value} model's weights are in its file", name
            )
        tensors = load_tensors(path, name)
        check_layout(path, tensors_layout(tensors), self._layout(config), name)
        if copy:
            tensors = {key: t.clone() for key, t in tensors.items()}
        return tensors

    def build_module(self, name: str, version: int, *, copy: bool = False) -> nn.Module:
        """The model's module in eval mode with its weights loaded (strictly), on the CPU.

        The parameters are the tensors of :meth:`load_weights` themselves (memory-mapped unless
        ``copy``); the structure is built on the meta device, so nothing is initialised twice.
        """
        config = self._read_config(name)
        tensors = self.load_weights(name, version, copy=copy)
        module = config.arch_spec.build_skeleton(config.arch_params)
        module.load_state_dict(tensors, strict=True, assign=True)
        left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
        if left:
            raise ModelRepositoryError(
                self._weights_path(config, version), f"tensors not loaded: {left[:5]}", name
            )
        return module.eval()

    # -- internals ------------------------------------------------------------------------

    def _model_dir(self, name: str) -> Path:
        try:
            check_model_name(name)
        except InvalidInputError as e:
            path = self._root / str(name)
            # A directory of the repository that is badly named is a bad model; anything else
            # (a path elsewhere, a name with separators) is simply not found.
            entry = str(name) not in ("", ".", "..") and "/" not in str(name) and path.is_dir()
            error = ModelRepositoryError if entry else UnknownModelError
            raise error(path, str(e), str(name)) from None
        return self._root / name

    def _read_config(self, name: str) -> ModelConfig:
        model_dir = self._model_dir(name)
        path = model_dir / CONFIG_FILE
        if not model_dir.is_dir():
            raise UnknownModelError(model_dir, "no such model directory", name)
        pbtxt = model_dir / PBTXT_FILE
        if pbtxt.is_file() and self._inside(model_dir):
            if path.exists():
                raise ModelRepositoryError(
                    model_dir, f"both {CONFIG_FILE} and {PBTXT_FILE}: keep one", name
                )
            return self._read_pbtxt(pbtxt, name)
        if not self._inside(model_dir):
            # a symlink (or a link above it) to elsewhere: the repository owns what it serves
            raise ModelRepositoryError(
                model_dir,
                f"model directory points outside the repository (to {model_dir.resolve()})",
                name,
            )
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ModelRepositoryError(
                path, f"missing config file ({CONFIG_FILE} or {PBTXT_FILE})", name
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise ModelRepositoryError(path, f"cannot read config: {e}", name) from e
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ModelRepositoryError(path, f"bad JSON: {e}", name) from e
        try:
            config = ModelConfig.from_json(data)
        except InvalidInputError as e:
            raise ModelRepositoryError(path, str(e), name) from e
        if config.name != name:
            raise ModelRepositoryError(
                path, f"name {config.name!r} does not match its directory {name!r}", name
            )
        return config

    def _read_pbtxt(self, path: Path, name: str) -> ModelConfig:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ModelRepositoryError(path, f"cannot read config: {e}", name) from e
        try:
            return parse_triton_config(text, path.parent)
        except PbtxtError as e:
            raise ModelRepositoryError(path, f"bad config.pbtxt: {e}", name) from e
        except InvalidInputError as e:
            raise ModelRepositoryError(path, str(e), name) from e

    def _checked_key(
        self, config: ModelConfig, path: Path, what: str, checked_for: _ArchKey
    ) -> _CheckedKey | None:
        """The key of ``path``'s check for ``checked_for`` (the file as it is now: path, time,
        size, inode); None if it was checked already."""
        try:
            st = path.stat()
        except OSError as e:
            raise ModelRepositoryError(path, f"cannot read {what}: {e}", config.name) from e
        key: _CheckedKey = (
            str(path.resolve()),
            st.st_mtime_ns,
            st.st_size,
            st.st_ino,
            checked_for,
        )
        return None if key in self._checked else key

    def _check_model_file(self, config: ModelConfig, path: Path) -> None:
        signature = (("config", repr((config.inputs, config.outputs, config.max_batch_size))),)
        key = self._checked_key(config, path, "model file", (config.format.value, signature))
        if key is None:
            return
        if config.format is ModelFormat.TORCH_EXPORT:
            sig = pt2_signature(self._pt2_at(path, config.name))
        else:
            sig = file_signature(config.format, path, config.name)
        try:
            check_signature(sig, config.inputs, config.outputs, config.max_batch_size)
        except InvalidInputError as e:
            raise ModelRepositoryError(path, str(e), config.name) from e
        self._checked.add(key)

    def _weights_path(self, config: ModelConfig, version: int) -> Path:
        model_dir = self._root / config.name
        if version not in config.versions:
            raise UnknownModelError(
                model_dir / CONFIG_FILE,
                f"model {config.name!r} has no version {version!r} (versions: "
                f"{list(config.versions)})",
                config.name,
            )
        if config.format is not ModelFormat.BUILTIN:
            assert config.model_filename is not None
            path = model_dir / str(version) / config.model_filename
            if not self._inside(path):
                raise ModelRepositoryError(
                    path, "model file points outside the repository", config.name
                )
            if not path.is_file():
                raise ModelRepositoryError(path, "missing model file", config.name)
            return path
        if config.weights_file is None:
            path = model_dir / str(version) / WEIGHTS_FILE
            if not self._inside(path):
                raise ModelRepositoryError(
                    path, "weights file points outside the repository", config.name
                )
        else:
            path = model_dir / config.weights_file
            if not self._inside(path):
                raise ModelRepositoryError(
                    model_dir / CONFIG_FILE,
                    f"weights_file {config.weights_file!r} points outside the repository",
                    config.name,
                )
        if not path.is_file():
            raise ModelRepositoryError(path, "missing weights file", config.name)
        return path

    def _inside(self, path: Path) -> bool:
        """Whether ``path``, with every link on the way followed, is under the repository."""
        root = self._root.resolve()
        return Path(os.path.commonpath([path.resolve(), root])) == root

    def _layout(self, config: ModelConfig) -> Layout:
        key = _arch_key(config)
        layout = self._layouts.get(key)
        if layout is None:
            layout = module_layout(config.arch_spec.build_skeleton(config.arch_params))
            self._layouts[key] = layout
        return layout

    def _check_weights(self, config: ModelConfig, path: Path) -> None:
        key = self._checked_key(config, path, "weights file", _arch_key(config))
        if key is None:
            return
        check_layout(path, read_layout(path, config.name), self._layout(config), config.name)
        self._checked.add(key)


def _arch_key(config: ModelConfig) -> _ArchKey:
    return (config.architecture, tuple(sorted(config.arch_params.items())))
