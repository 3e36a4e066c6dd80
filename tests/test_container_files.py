"""The container image definition, checked without a container engine: it parses, everything it
copies exists (and is not left out of the build context), the make targets it runs exist, its
entrypoint is a real ``clockwork serve`` command line, and it runs as a user, on the ports and
with the health check that the server really has."""

from __future__ import annotations

import ast
import fnmatch
import importlib
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from clockwork.cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
KEYWORDS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions as Docker reads them: ``#`` lines are comments, a trailing backslash joins
    the next line (comment lines inside a continued instruction are dropped)."""
    out: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1]
            continue
        full = (pending + raw).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the file ends inside a continued line"
    return out


def exec_form(args: str) -> list[str]:
    words = json.loads(args)
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), args
    return words


def without_flags(args: str) -> list[str]:
    return [w for w in shlex.split(args) if not w.startswith("--")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore ``patterns`` leave ``path`` (or a folder above it) out."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        p = pattern[1:] if negate else pattern
        if any(fnmatch.fnmatch(prefix, p.rstrip("/")) for prefix in prefixes) or (
            p.startswith("**/") and any(fnmatch.fnmatch(part, p[3:]) for part in parts)
        ):
            result = not negate
    return result


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


def _one(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, (keyword, found)
    return found[0]


def _args(instructions: list[Instruction]) -> dict[str, str]:
    out: dict[str, str] = {}
    for i in instructions:
        if i.keyword == "ARG":
            name, _, default = i.args.partition("=")
            out[name] = default
    return out


def test_it_parses_into_known_instructions(instructions: list[Instruction]) -> None:
    assert instructions
    unknown = [i for i in instructions if i.keyword not in KEYWORDS]
    assert not unknown, unknown
    first = next(i for i in instructions if i.keyword != "ARG")
    assert first.keyword == "FROM" and first.args == "${PYTHON_IMAGE}"
    base = _args(instructions)["PYTHON_IMAGE"]
    # the project needs Python 3.11 or newer (tomllib; pyproject's requires-python)
    match = re.fullmatch(r"python:3\.(\d+)-slim-\w+", base)
    assert match is not None and int(match.group(1)) >= 11, base


def test_every_copied_file_exists_and_is_in_the_build_context(
    instructions: list[Instruction],
) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for i in instructions:
        assert i.keyword != "ADD", "COPY, not ADD: nothing is fetched or unpacked"
        if i.keyword == "COPY":
            *srcs, _dest = without_flags(i.args)
            sources += srcs
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
        assert not ignored(src.rstrip("/"), patterns), f"COPY {src}: left out by .dockerignore"
    # what the install reads: pyproject's readme and license, setup.py's module list
    for needed in ("pyproject.toml", "setup.py", "Makefile", "README.md", "LICENSE", "src/"):
        assert needed in sources, needed
    assert ignored(".venv/bin/python", patterns) and ignored("demo-repo/x", patterns)


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w.-]*):", text, flags=re.MULTILINE))


def test_the_make_targets_it_runs_exist(instructions: list[Instruction]) -> None:
    targets = _makefile_targets()
    run = " ".join(i.args for i in instructions if i.keyword == "RUN")
    called = re.findall(r"\bmake ([a-z][\w-]*)", run)
    entry = exec_form(_one(instructions, "ENTRYPOINT").args)
    assert entry[0] == "make"
    called.append(entry[1])
    assert called == ["install", "serve"]
    missing = [t for t in called if t not in targets]
    assert not missing, missing


def _serve_command(instructions: list[Instruction]) -> list[str]:
    """The command ``make serve`` runs with the image's ENTRYPOINT and CMD, from make itself."""
    command = exec_form(_one(instructions, "ENTRYPOINT").args) + exec_form(
        _one(instructions, "CMD").args
    )
    dry = subprocess.run(
        [*command, "-n", "--always-make", "-o", ".venv/.installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    (line,) = [x for x in dry.splitlines() if "/bin/clockwork serve" in x]
    return shlex.split(line)


def test_the_entrypoint_is_a_real_serve_command_bound_to_every_interface(
    instructions: list[Instruction],
) -> None:
    words = _serve_command(instructions)
    assert words[0].endswith("/bin/clockwork") and words[1] == "serve"
    assert words[2:] == ["--host", "0.0.0.0"]  # explicitly: the code's default is loopback
    exe = str(ROOT / ".venv" / "bin" / "clockwork")
    if not Path(exe).exists():
        exe = str(Path(sys.executable).parent / "clockwork")
    for extra in (["--help"], ["--print-config"]):
        done = subprocess.run(
            [exe, *words[1:], *extra], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
    effective = tomllib.loads(done.stdout)
    assert effective["host"] == "0.0.0.0"
    # the ports it exposes are the server's own defaults
    args = build_parser(["serve"]).parse_args(["serve"])
    exposed = {int(p) for p in _one(instructions, "EXPOSE").args.split()}
    assert exposed == {args.http_port, args.grpc_port} == {8000, 8001}


def test_it_installs_and_runs_as_an_unprivileged_user(instructions: list[Instruction]) -> None:
    keywords = [i.keyword for i in instructions]
    user = _one(instructions, "USER")
    assert user.args not in {"root", "0", "0:0"}
    at = keywords.index("USER")
    install = next(
        n for n, i in enumerate(instructions) if i.keyword == "RUN" and "make install" in i.args
    )
    assert at < install < keywords.index("ENTRYPOINT")
    assert f"useradd --create-home --uid 10001 --shell /usr/sbin/nologin {user.args}" in " ".join(
        i.args for i in instructions[:at]
    )
    for i in instructions[at:]:
        if i.keyword == "COPY":
            assert f"--chown={user.args}:{user.args}" in i.args, i


def test_the_health_check_asks_the_readiness_endpoint(instructions: list[Instruction]) -> None:
    check = _one(instructions, "HEALTHCHECK").args
    flags, _, command = check.partition("CMD ")
    assert "--start-period=" in flags
    words = exec_form(command)
    assert words[1:] == ["scripts/healthcheck.py"]
    assert (ROOT / words[1]).is_file()
    source = (ROOT / "scripts" / "healthcheck.py").read_text()
    assert 'DEFAULT_URL = "http://127.0.0.1:8000/v2/health/ready"' in source


def test_torch_comes_from_the_cpu_index_unless_told(instructions: list[Instruction]) -> None:
    assert _args(instructions)["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    env = " ".join(i.args for i in instructions if i.keyword == "ENV")
    assert "PIP_EXTRA_INDEX_URL=${TORCH_INDEX_URL}" in env
    # the CUDA variant the README and the Dockerfile name is the same file with another index
    readme = (ROOT / "README.md").read_text()
    cuda = "--build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu"
    assert cuda in readme and cuda in DOCKERFILE.read_text()


def test_the_demo_repository_step_names_real_code(instructions: list[Instruction]) -> None:
    (step,) = [i for i in instructions if i.keyword == "RUN" and "python -c" in i.args]
    code = shlex.split(step.args)[-1]
    tree = ast.parse(code)
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert imports
    for node in imports:
        assert node.module is not None
        module = importlib.import_module(node.module)
        for alias in node.names:
            assert hasattr(module, alias.name), f"{node.module}.{alias.name}"


def test_the_parser_reads_continuations_and_comments() -> None:
    parsed = parse_dockerfile('FROM a\n# c\nRUN x \\\n  # inside\n  && y\nCMD ["p", \\\n "q"]\n')
    assert [(i.keyword, i.args, i.line) for i in parsed] == [
        ("FROM", "a", 1),
        ("RUN", "x   && y", 3),
        ("CMD", '["p",  "q"]', 6),
    ]
    assert ignored("a/__pycache__/b.pyc", ["**/__pycache__"])
    assert not ignored("src/x.py", [".venv", "**/__pycache__"])
