"""The compiled build (``make test-compiled``) really runs compiled code: the other tests in that
run would pass just as well against the pure-Python package."""

import importlib
import os
from pathlib import Path

import pytest

LISTED = Path(__file__).resolve().parent.parent / "mypyc_modules.txt"


def _listed() -> list[str]:
    lines = (s.strip() for s in LISTED.read_text().splitlines())
    return [s for s in lines if s and not s.startswith("#")]


def test_every_listed_module_exists() -> None:
    src = LISTED.parent / "src"
    missing = [m for m in _listed() if not (src / m).is_file()]
    assert not missing, f"mypyc_modules.txt names files that do not exist: {missing}"


@pytest.mark.skipif(
    os.environ.get("CLOCKWORK_EXPECT_COMPILED") != "1",
    reason="only in the compiled build's test run (make test-compiled)",
)
def test_every_listed_module_is_a_c_extension() -> None:
    for path in _listed():
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert module.__file__ is not None
        assert Path(module.__file__).suffix == ".so", module.__file__


def test_build_kind_names_the_running_build() -> None:
    from clockwork.build import build_kind

    expected = "mypyc" if os.environ.get("CLOCKWORK_EXPECT_COMPILED") == "1" else "python"
    assert build_kind() == expected
