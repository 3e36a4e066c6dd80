"""Whether the demo repository is ready for this machine, decided without importing torch.

``clockwork serve`` asks this on every start, in the process that becomes the controller and the
front door: importing torch there to learn the device kind would cost that process about 190 MB
and a second of start-up for nothing, since the worker (its own process) runs the models. Only
when the repository must be made, or its recorded device kind may not be this one (a GPU host),
does the caller import the machinery of ``clockwork.cli.demo_repository``.
"""

from __future__ import annotations

import json
from pathlib import Path

#: where the demo's exported forms and its choice record live, inside the repository
FORMS_DIR = "_demo"
CHOICE_FILE = "choice.json"


def read_choice(root: Path) -> dict[str, object] | None:
    """The recorded choice of the demo repository at ``root`` (None: none or unreadable)."""
    try:
        data = json.loads((root / FORMS_DIR / CHOICE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def has_models(root: Path) -> bool:
    return root.is_dir() and any(
        (d / "config.json").is_file() or (d / "config.pbtxt").is_file()
        for d in root.iterdir()
        if d.is_dir()
    )


def cpu_for_sure(device: str) -> bool:
    """Whether ``device`` is the CPU without asking torch: ``cpu``, or ``auto`` on a machine
    with no NVIDIA device node (CUDA cannot be available there)."""
    if device == "cpu":
        return True
    return device == "auto" and not any(Path("/dev").glob("nvidia[0-9]*"))


def ready_without_torch(root: Path, device: str) -> bool:
    """True when the demo repository at ``root`` surely needs nothing made for ``device``: it
    holds models and either records no choice (made before forms were chosen) or one made for
    the CPU, on a machine where ``device`` is surely the CPU. False: ask
    ``clockwork.cli.demo_repository`` (which may find it ready all the same)."""
    if not has_models(root):
        return False
    recorded = read_choice(root)
    return recorded is None or (recorded.get("device_kind") == "cpu" and cpu_for_sure(device))
