"""Build hook. ``CLOCKWORK_COMPILE=1`` compiles the modules listed in ``mypyc_modules.txt`` with
mypyc (same source, C extensions in place of those modules); without it the package is pure
Python. ``make install-compiled`` builds ``.venv-compiled`` that way.
"""

import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    lines = (HERE / "mypyc_modules.txt").read_text().splitlines()
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def ext_modules() -> list[object]:
    if os.environ.get("CLOCKWORK_COMPILE") != "1":
        return []
    from mypyc.build import mypycify  # only the compiled build needs mypy installed

    os.chdir(HERE)  # mypyc names each module by its path under src/
    return list(mypycify([f"src/{m}" for m in compiled_modules()], opt_level="3"))


setup(ext_modules=ext_modules())
