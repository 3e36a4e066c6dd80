"""``clockwork.models`` names its parts lazily: a controller that imports the configuration
check or the errors does not import torch with the built-in architectures."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _imports_torch(statement: str) -> bool:
    code = f"import sys\n{statement}\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def test_the_controller_s_imports_leave_torch_out() -> None:
    assert not _imports_torch(
        "import clockwork.models.problems, clockwork.models.errors, "
        "clockwork.frontend.availability, clockwork.frontend.server"
    )
    # and reading a configuration still brings it in where it is needed
    assert _imports_torch("from clockwork.models.repository import ModelRepository")


def test_the_package_s_names_still_resolve() -> None:
    from clockwork import models

    assert callable(models.build_model) and callable(models.create_repository)
    assert "resnet18" in models.ARCHITECTURES
    assert models.ModelRepository.__name__ == "ModelRepository"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        models.nothing  # noqa: B018
