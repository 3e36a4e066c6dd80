"""A TOML configuration file for a command, as an alternative to its flags (``--config FILE``).

The accepted keys are the command's long options without the leading dashes (``http-port = 8000``,
``no-local-worker = true``), read from its argparse parser when the file is applied, so that a
new option is a new key without a change here. A flag given on the command line wins over the
file; the file wins over the defaults. Relative paths in the file are relative to the file's
folder (a file in /etc names its token file beside it), not to where the command runs.

Secrets never appear in the file: a token or cluster secret is named by its file (``token-file``,
``control-token-file``, ``cluster-secret-file``) as on the command line, and an error never echoes
the value of such a key.

``--print-config`` writes the effective configuration (defaults, file and flags merged) as TOML that
``--config`` reads back.

Which options were given on the command line: ``add_config_arguments`` registers, on the parser,
subclasses of argparse's store actions that note their destination in the namespace when they run
(argparse runs an action only for an option the command line names); it must therefore be called
before the parser's other options are added.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from clockwork.core.errors import ConfigurationError

__all__ = [
    "ConfigKey",
    "ValueKind",
    "add_config_arguments",
    "apply_config",
    "config_keys",
    "effective_config_toml",
    "load_config_file",
]

#: the namespace attribute holding the destinations the command line set
_EXPLICIT = "_explicit_options"
#: the namespace attribute holding the parser, to read its options when the file is applied
_PARSER = "_config_parser"
#: options that are not configuration (they choose the file, or print it)
_NOT_KEYS = frozenset({"config", "print_config", "help"})
#: key names that would hold a secret's value: the file names the secret's file instead
_SECRET_VALUE_KEYS = {
    "token": "token-file",
    "control-token": "control-token-file",
    "cluster-secret": "cluster-secret-file",
    "password": "token-file",
    "secret": "cluster-secret-file",
}


class ValueKind(Enum):
    """The TOML type a key takes."""

    BOOL = "a boolean (true or false)"
    INT = "an integer"
    FLOAT = "a number"
    STRING = "a string"
    PATH = "a file path (a string)"


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One option of the parser as a configuration key."""

    key: str  # the long option without its dashes: "http-port"
    dest: str  # the namespace attribute: "http_port"
    kind: ValueKind
    default: object
    choices: tuple[object, ...] | None
    convert: Callable[[str], object] | None  # the option's own type, for a string value

    @property
    def secret_file(self) -> bool:
        """The key names a file that holds a secret: its value is never echoed in an error."""
        return self.kind is ValueKind.PATH and any(
            word in self.key for word in ("token", "secret", "key")
        )


def _tracking(base: type[argparse.Action]) -> type[argparse.Action]:
    class Tracking(base):  # type: ignore[valid-type,misc]
        def __call__(
            self,
            parser: argparse.ArgumentParser,
            namespace: argparse.Namespace,
            values: str | Sequence[Any] | None,
            option_string: str | None = None,
        ) -> None:
            super().__call__(parser, namespace, values, option_string)
            explicit: set[str] = getattr(namespace, _EXPLICIT, set())
            explicit.add(self.dest)
            setattr(namespace, _EXPLICIT, explicit)

    Tracking.__name__ = f"Tracking{base.__name__}"
    return Tracking


# argparse's registry names for the actions a value option or a switch uses (None: the default)
_TRACKED: tuple[tuple[str | None, type[argparse.Action]], ...] = (
    (None, argparse._StoreAction),
    ("store", argparse._StoreAction),
    ("store_const", argparse._StoreConstAction),
    ("store_true", argparse._StoreTrueAction),
    ("store_false", argparse._StoreFalseAction),
)


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` and ``--print-config`` on ``p``, and the tracking of the options given on
    the command line; call it before adding ``p``'s other options."""
    for name, base in _TRACKED:
        p.register("action", name, _tracking(base))
    g = p.add_argument_group("configuration file")
    g.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE.toml",
        help="read options from this TOML file (keys: the long options without '--', e.g. "
        "http-port = 8000); flags on the command line override it",
    )
    g.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration (defaults, --config file and flags) as TOML "
        "and exit",
    )
    p.set_defaults(**{_PARSER: p})


def config_keys(parser: argparse.ArgumentParser) -> dict[str, ConfigKey]:
    """Every option of ``parser`` that takes a value or is a switch, by key, in parser order."""
    keys: dict[str, ConfigKey] = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if not longs or action.dest in _NOT_KEYS or action.dest == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._StoreConstAction):
            kind = ValueKind.BOOL
            convert = None
        elif action.nargs is None or action.nargs == "?":
            # an optional value (``--ray [ADDRESS]``) is a key with a value: the file gives
            # the one the flag alone would (``ray = ""``) or an address
            kind, convert = _kind_of(action.type)
        else:
            continue  # no option of a command takes several values today
        key = longs[0][2:]
        choices = tuple(action.choices) if action.choices is not None else None
        keys[key] = ConfigKey(key, action.dest, kind, action.default, choices, convert)
    return keys


def _kind_of(convert: object) -> tuple[ValueKind, Callable[[str], object] | None]:
    if convert is None or convert is str:
        return ValueKind.STRING, None
    if convert is int:
        return ValueKind.INT, None
    if convert is float:
        return ValueKind.FLOAT, None
    if convert is Path:
        return ValueKind.PATH, None
    if not callable(convert):
        raise TypeError(f"an option of type {convert!r} cannot be a configuration key")
    return ValueKind.STRING, convert  # the option's own parser reads the string


def load_config_file(path: Path, keys: dict[str, ConfigKey]) -> dict[str, object]:
    """The values of the TOML file at ``path``, checked against ``keys``, by destination;
    ``ConfigurationError`` naming the file and the key for anything wrong."""
    where = f"--config {path}"
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigurationError(f"{where}: cannot read it: {e.strerror or e}") from e
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigurationError(f"{where}: not UTF-8 text ({e.reason})") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigurationError(f"{where}: not valid TOML: {e}") from e
    values: dict[str, object] = {}
    for name, value in data.items():
        ck = keys.get(name)
        if ck is None:
            raise ConfigurationError(f"{where}: {_unknown(name, keys)}")
        values[ck.dest] = _checked(ck, value, path.parent, where)
    return values


def _unknown(name: str, keys: dict[str, ConfigKey]) -> str:
    secret_file = _SECRET_VALUE_KEYS.get(name.replace("_", "-").lower())
    if secret_file is not None and secret_file in keys:
        return (
            f"key '{name}': secrets are never written in the configuration file; put it in a "
            f'file of its own and name that file with {secret_file} = "PATH"'
        )
    near = difflib.get_close_matches(name.replace("_", "-"), list(keys), n=1, cutoff=0.6)
    hint = f"; did you mean '{near[0]}'?" if near else ""
    return f"unknown key '{name}'{hint} (the keys are the long options of --help, without '--')"


def _shown(ck: ConfigKey, value: object) -> str:
    if ck.secret_file:
        return "(value not shown: the key names a secret's file)"
    kind = _toml_type_name(value)
    return f"{json.dumps(value, default=str)} ({kind})"


def _toml_type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _checked(ck: ConfigKey, value: object, base: Path, where: str) -> object:
    def wrong() -> ConfigurationError:
        return ConfigurationError(
            f"{where}: key '{ck.key}' must be {ck.kind.value}, not {_shown(ck, value)}"
        )

    out: object
    if ck.kind is ValueKind.BOOL:
        if not isinstance(value, bool):
            raise wrong()
        out = value
    elif ck.kind is ValueKind.INT:
        if not isinstance(value, int) or isinstance(value, bool):
            raise wrong()
        out = value
    elif ck.kind is ValueKind.FLOAT:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise wrong()
        if not math.isfinite(value):
            raise ConfigurationError(f"{where}: key '{ck.key}' must be finite, not {value}")
        out = float(value)
    elif ck.kind is ValueKind.PATH:
        if not isinstance(value, str) or not value:
            raise wrong()
        path = Path(value).expanduser()
        out = path if path.is_absolute() else base / path
    else:
        if not isinstance(value, str):
            raise wrong()
        out = value
        if ck.convert is not None:
            try:
                out = ck.convert(value)
            except (TypeError, ValueError) as e:
                raise ConfigurationError(f"{where}: key '{ck.key}': {e}") from e
    if ck.choices is not None and out not in ck.choices:
        listed = ", ".join(str(c) for c in ck.choices)
        raise ConfigurationError(
            f"{where}: key '{ck.key}' must be one of {listed}, not {json.dumps(value)}"
        )
    return out


def apply_config(args: argparse.Namespace) -> None:
    """Fill ``args`` from its ``--config`` file (if any) for every option the command line did not
    give; ``ConfigurationError`` for a bad file, before anything starts."""
    path: Path | None = getattr(args, "config", None)
    if path is None:
        return
    parser: argparse.ArgumentParser = getattr(args, _PARSER)
    values = load_config_file(path, config_keys(parser))
    explicit: set[str] = getattr(args, _EXPLICIT, set())
    for dest, value in values.items():
        if dest not in explicit:
            setattr(args, dest, value)


def effective_config_toml(args: argparse.Namespace) -> str:
    """The configuration ``args`` holds, as TOML that ``--config`` reads back; an unset option
    is a comment."""
    parser: argparse.ArgumentParser = getattr(args, _PARSER)
    source = f" (with {args.config})" if getattr(args, "config", None) is not None else ""
    lines = [f"# effective configuration of `{parser.prog}`{source}"]
    for key, ck in config_keys(parser).items():
        value = getattr(args, ck.dest, None)
        if value is None:
            lines.append(f"# {key} is not set")
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # a JSON string is a TOML basic string (the same escapes)
    return json.dumps(str(value), ensure_ascii=False)
