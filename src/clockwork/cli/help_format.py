"""The ``--help`` layout of the commands: argparse's, with each option's default appended only
where it tells the reader something."""

from __future__ import annotations

import argparse

# flags: their default is "off" (or, for a pair sharing one destination, the other flag's state),
# which "(default: False)" / "(default: True)" on both would only muddle
_FLAG_ACTIONS = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._StoreConstAction,
    argparse._CountAction,
    argparse._VersionAction,
    argparse._HelpAction,
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``ArgumentDefaultsHelpFormatter`` without "(default: ...)" where the help already says
    what the default is (it mentions "default"), where there is none (``None``, an empty string
    or list) and on flags."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            isinstance(action, _FLAG_ACTIONS)
            or default is None
            or default is argparse.SUPPRESS
            or default in ("", [], ())
            or "default" in text.lower()
            or "%(default)" in text
        ):
            return action.help
        return super()._get_help_string(action)


def _plain(text: str | None) -> str | None:
    # reStructuredText literals (a module docstring used as a description): shown bare
    return None if text is None else text.replace("``", "")


def plain_help(parser: argparse.ArgumentParser) -> None:
    """Strip reST markup from the descriptions and option help of ``parser`` and its
    subcommands (several reuse their module's docstring)."""
    parser.description = _plain(parser.description)
    parser.epilog = _plain(parser.epilog)
    for action in parser._actions:
        if action.help is not argparse.SUPPRESS:
            action.help = _plain(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                plain_help(sub)
