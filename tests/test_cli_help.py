"""Every option of every command says what it is for in ``--help``."""

from __future__ import annotations

import argparse

import pytest

from clockwork.cli.main import _COMMANDS, build_parser


def _parsers(
    parser: argparse.ArgumentParser, path: str
) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _parsers(sub, f"{path} {name}")
    return out


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_every_option_has_help(command: str) -> None:
    top = build_parser([command])
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{path}: {a.option_strings[0] if a.option_strings else a.dest}"
        for path, parser in _parsers(sub.choices[command], command)
        for a in parser._actions
        if a.help is None
    ]
    assert not missing, missing


def _help_texts(command: str) -> list[tuple[str, str, str]]:
    """(parser path, option, its help as printed) for every option of ``command``."""
    top = build_parser([command])
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    out = []
    for path, parser in _parsers(sub.choices[command], command):
        formatter = parser._get_formatter()
        for a in parser._actions:
            if a.help is None or a.help is argparse.SUPPRESS:
                continue
            name = a.option_strings[0] if a.option_strings else a.dest
            out.append((path, name, " ".join(formatter._expand_help(a).split())))
    return out


def _full_help(command: str) -> str:
    top = build_parser([command])
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return "\n".join(p.format_help() for _, p in _parsers(sub.choices[command], command))


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_no_default_said_twice_nor_empty(command: str) -> None:
    noisy = [
        f"{path}: {name}: {text}"
        for path, name, text in _help_texts(command)
        # "(default: None)" tells nothing; a flag's True/False is its on/off state (on both of a
        # pair sharing one destination); and a default the help describes is said once
        if "(default: None)" in text
        or "(default: True)" in text
        or "(default: False)" in text
        or text.count("(default") > 1
    ]
    assert not noisy, noisy


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_help_is_plain_text(command: str) -> None:
    text = _full_help(command)
    assert "``" not in text  # no raw reST literals (module docstrings used as descriptions)


def test_controller_help_does_not_promise_a_later_api() -> None:
    text = " ".join(_full_help("controller").split())
    assert "later" not in text and "clockwork serve --no-local-worker --workers" in text


def test_bench_binary_and_json_do_not_both_claim_the_default() -> None:
    texts = {name: text for _, name, text in _help_texts("bench")}
    assert "default" in texts["--binary"] and "default" not in texts["--json"]
