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
