"""What the torch backend runs for each model form, over weights views in the paged cache.

A :class:`Program` is made once per model when the backend registers it; it holds the model's
*host* tensors (the source of every load) and nothing on the device. ``bind(views)`` is called
at each load, once the host tensors have been copied into their views of the cache's pages, and
returns the callable the backend runs (inputs in the config's order, outputs in the config's
order); ``close()`` of that callable at eviction drops whatever the binding holds.

- built-in architectures and ``.pt2`` programs: a :class:`BoundModule` whose parameter and
  buffer slots are pointed at the views on each call, so that nothing is copied per load but
  the weights into the pages. For a ``.pt2`` file, the module is the program's own unlifted
  module (``ExportedProgram.module()``), made once at registration; the program's lifted
  constants (tensors the graph holds that are neither parameters nor buffers, usually tiny)
  stay outside the cache, moved to the device once.
- ``.onnx``: :mod:`clockwork.worker.backends.onnx_program` (an ONNX Runtime session per load,
  its initializers being the views).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch

from clockwork.models.config import ModelConfig
from clockwork.models.errors import ModelRepositoryError
from clockwork.worker.backends.bound_module import BoundModule

if TYPE_CHECKING:
    from torch.export import ExportedProgram


class LoadedProgram(Protocol):
    def __call__(self, *args: torch.Tensor) -> object:
        """Run one batch (inputs in the config's order); tensors in the config's order."""
        ...

    def close(self) -> None:
        """Drop what the binding holds (the model is being evicted)."""
        ...


class Program(Protocol):
    @property
    def host(self) -> Mapping[str, torch.Tensor]:
        """name -> host tensor: what a load copies into the cache's pages."""
        ...

    def bind(self, views: Mapping[str, torch.Tensor]) -> LoadedProgram:
        """What runs the model over ``views`` (the host tensors' copies in the pages)."""
        ...


@dataclass(slots=True)
class _ModuleCall:
    runner: BoundModule
    views: Mapping[str, torch.Tensor]
    arg_order: tuple[int, ...] | None

    def __call__(self, *args: torch.Tensor) -> object:
        if self.arg_order is not None:
            args = tuple(args[i] for i in self.arg_order)
        return self.runner(self.views, *args)

    def close(self) -> None:
        pass


@dataclass(slots=True)
class ModuleProgram:
    """A module run over the views (built-in architectures and ``.pt2`` programs).

    ``arg_order``: which config input goes in each of the module's positions (None: the
    config's order is the module's).
    """

    host: Mapping[str, torch.Tensor]
    runner: BoundModule
    arg_order: tuple[int, ...] | None = None

    def bind(self, views: Mapping[str, torch.Tensor]) -> LoadedProgram:
        return _ModuleCall(self.runner, views, self.arg_order)


def open_pt2(
    path: Path, program: ExportedProgram, config: ModelConfig, device: torch.device
) -> ModuleProgram:
    """What runs ``program`` (read from ``path``; see the module docstring); the host tensors
    are the program's parameters and buffers, owned (not memory-mapped) CPU tensors, shared
    with the program the repository keeps."""
    host = {name: t.detach() for name, t in program.state_dict.items()}
    module = program.module()
    if device.type != "cpu":
        for fqn in program.constants:
            owner, _, attr = fqn.rpartition(".")
            holder = module.get_submodule(owner) if owner else module
            value = getattr(holder, attr, None)
            if isinstance(value, torch.Tensor):
                setattr(holder, attr, value.to(device))
    try:
        runner = BoundModule(module, host.keys(), copy_module=False)
    except ValueError as e:
        raise ModelRepositoryError(path, f"cannot bind the program's tensors: {e}") from e
    # the config's inputs are the program's positional arguments, in order
    return ModuleProgram(host, runner)
