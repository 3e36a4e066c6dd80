"""What the front door says about a model's availability: truthful, and never a false 404.

A model is *registered* once a worker that serves it has joined; it stays registered after that
worker is lost (its signature is still known), but it is ready only while a joined worker can
run it: the scheduler's ``unservable`` says why not ("no connected worker serves model ...").
The repository index and ``model_ready`` report exactly that, and an inference request for such
a model is refused at once as ``UNAVAILABLE`` (503), with that reason.

A name no worker has registered is not necessarily unknown: right after the controller starts,
before its workers have joined, every model is unregistered. Until each configured worker has
joined at least once, such a name is refused as ``UNAVAILABLE`` (503, retry), not ``NOT_FOUND``
(404, which Triton's clients treat as final). The models a deployment expects (``clockwork
serve``: the directories of its repository, read at start without loading anything) are listed
in the index meanwhile, as ``UNAVAILABLE`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from clockwork.core.events import DeviceInfo
from clockwork.core.requests import ResponseStatus
from clockwork.frontend.api import ErrorKind, FrontendError

if TYPE_CHECKING:
    from clockwork.service.controller_service import ControllerService

NOT_READY = "MODEL_NOT_READY"
#: the reason of a name refused while workers are still joining
WORKERS_JOINING = "WORKERS_JOINING"
CONFIG_FILE = "config.json"
PBTXT_FILE = "config.pbtxt"  # a Triton-layout model (clockwork.models.triton_config)


def repository_model_names(root: Path) -> frozenset[str]:
    """The models of the repository at ``root`` by their directory names: each top-level
    directory (not named ``_...`` nor ``.…``, as ``ModelRepository`` skips) that holds a config
    file. Nothing is parsed, loaded nor validated; a missing repository names no model."""
    try:
        entries = list(root.iterdir())
    except OSError:
        return frozenset()
    return frozenset(
        e.name
        for e in entries
        if not e.name.startswith(("_", "."))
        and ((e / CONFIG_FILE).is_file() or (e / PBTXT_FILE).is_file())
    )


class Availability:
    """Availability of ``controller``'s models; ``expected_models`` are those its deployment
    names before any worker has joined (may be empty)."""

    def __init__(self, controller: ControllerService, expected_models: Iterable[str] = ()) -> None:
        self._controller = controller
        self.expected_models = frozenset(expected_models)
        # the ids of the workers that have joined since start (one that joined and left
        # between two calls here is seen through the hook)
        self._seen: set[str] = set(controller.workers)
        controller.observers.add_hook("on_worker_joined", self._joined)
        # why a repository model is broken ("" if it is not), blocking: set where the
        # repository is at hand (``clockwork serve``: clockwork.models.problems); the last
        # answer per model is kept for the index
        self.broken: Callable[[str], str] | None = None
        self._broken_reasons: dict[str, str] = {}

    def broken_error(self, model: str) -> FrontendError | None:
        """The refusal (400, with the file and the problem) of loading a broken model. Blocks
        while the check runs: call it from a thread."""
        why = self.broken(model) if self.broken is not None else ""
        if not why:
            self._broken_reasons.pop(model, None)
            return None
        self._broken_reasons[model] = why
        return FrontendError(
            ErrorKind.INVALID_ARGUMENT, f"model {model!r} cannot be served: {why}", "MODEL_INVALID"
        )

    def _joined(self, worker: str, devices: tuple[DeviceInfo, ...]) -> None:
        self._seen.add(worker)

    def joining(self) -> str:
        """ "" once every configured worker has joined at least once since start; else how
        many have."""
        seen = self._seen
        seen.update(self._controller.workers)
        configured = self._controller.configured_workers
        if len(seen) >= configured:
            return ""
        return f"{len(seen)} of {configured} workers have joined since the server started"

    def why_unavailable(self, model: str) -> str:
        """Why registered ``model`` cannot be served now ("" if it can)."""
        unservable: Callable[[str], str] | None = getattr(
            self._controller.scheduler, "unservable", None
        )
        if unservable is not None:
            try:
                return unservable(model)
            except KeyError:  # not registered with the scheduler: the controller decides
                pass
        return "" if self._controller.workers else "no worker is connected"

    def not_ready(self, model: str, why: str) -> FrontendError:
        return FrontendError(
            ErrorKind.UNAVAILABLE, f"model {model!r} is not ready: {why}", NOT_READY
        )

    def why_unregistered(self, model: str) -> str:
        """Why an expected ``model`` is not registered (for the index)."""
        joining = self.joining()
        if joining:
            return f"no worker serving it has joined yet ({joining})"
        why = self._broken_reasons.get(model, "")  # from the last load of it
        if why:
            return why
        return "no worker serves it (see the workers' logs for why)"

    def unknown(self, model: str) -> FrontendError:
        """The refusal of a name no worker has registered: ``NOT_FOUND``, unless workers are
        still joining (then ``UNAVAILABLE``: it may yet be registered)."""
        joining = self.joining()
        if joining:
            if model in self.expected_models:
                return self.not_ready(model, f"no worker serving it has joined yet ({joining})")
            return FrontendError(
                ErrorKind.UNAVAILABLE,
                f"model {model!r} is not known yet: {joining}; try again",
                WORKERS_JOINING,
            )
        where = (
            " (the repository has a directory of that name, but no worker serves it: see the "
            "workers' logs)"
            if model in self.expected_models
            else ""
        )
        return FrontendError(
            ErrorKind.NOT_FOUND,
            f"unknown model {model!r}{where}",
            ResponseStatus.MODEL_NOT_FOUND.value,
        )


__all__ = ["NOT_READY", "WORKERS_JOINING", "Availability", "repository_model_names"]
