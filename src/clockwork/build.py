"""Which build of the package is running: pure Python, or with the modules listed in
``mypyc_modules.txt`` compiled by mypyc (``make install-compiled``). Reports say which, since the
simulator's and the controller's speed depend on it."""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES

import clockwork.core.policies.base as _probe  # compiled whenever anything is


def build_kind() -> str:
    """``"mypyc"`` when the scheduler core is a compiled extension, else ``"python"``."""
    path = _probe.__file__ or ""
    return "mypyc" if path.endswith(tuple(EXTENSION_SUFFIXES)) else "python"
