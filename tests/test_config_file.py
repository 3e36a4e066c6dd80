"""``clockwork serve --config FILE.toml``: every option is a key, flags win over the file, a bad
file is refused with an error that names the key, ``--print-config`` round-trips."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from clockwork.cli.config_file import ConfigKey, ValueKind, apply_config, config_keys
from clockwork.cli.main import build_parser, main


def _serve_parser() -> argparse.ArgumentParser:
    top = build_parser(["serve"])
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices["serve"]
    return parser


def _parse(*argv: str) -> argparse.Namespace:
    args = build_parser(["serve"]).parse_args(["serve", *argv])
    apply_config(args)
    return args


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "serve.toml"
    path.write_text(text)
    return path


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clockwork serve: error: --config "), err
    return err


def test_every_serve_option_is_a_key() -> None:
    keys = config_keys(_serve_parser())
    longs = {
        s[2:]
        for a in _serve_parser()._actions
        for s in a.option_strings[:2]
        if s.startswith("--") and a.dest not in {"help", "config", "print_config"}
    }
    assert set(keys) == longs
    assert keys["http-port"].kind is ValueKind.INT
    assert keys["max-body-mb"].kind is ValueKind.FLOAT
    assert keys["no-local-worker"].kind is ValueKind.BOOL
    assert keys["token-file"].kind is ValueKind.PATH
    assert keys["policy"].choices is not None and "clockwork" in keys["policy"].choices


def _two_values(ck: ConfigKey) -> tuple[str, list[str], object]:
    """A TOML value for the file, the command line's different value, and what it parses to."""
    flag = f"--{ck.key}"
    if ck.kind is ValueKind.BOOL:
        return "false", [flag], True
    if ck.choices is not None:
        a, b = (str(c) for c in ck.choices[:2])
        return f'"{a}"', [flag, b], b
    if ck.kind is ValueKind.INT:
        return "7", [flag, "9"], 9
    if ck.kind is ValueKind.FLOAT:
        return "7.5", [flag, "9.5"], 9.5
    if ck.kind is ValueKind.PATH:
        return '"/from/file"', [flag, "/from/flag"], Path("/from/flag")
    return '"from-file"', [flag, "from-flag"], "from-flag"


@pytest.mark.parametrize("key", sorted(config_keys(_serve_parser())))
def test_a_flag_on_the_command_line_wins_over_the_file(tmp_path: Path, key: str) -> None:
    ck = config_keys(_serve_parser())[key]
    in_file, flag, expected = _two_values(ck)
    path = _write(tmp_path, f"{key} = {in_file}\n")
    assert getattr(_parse("--config", str(path), *flag), ck.dest) == expected
    # and without the flag, the file's value
    file_value = tomllib.loads(f"v = {in_file}")["v"]
    got = getattr(_parse("--config", str(path)), ck.dest)
    assert got == (Path(file_value) if ck.kind is ValueKind.PATH else file_value)


def test_a_flag_given_its_default_value_still_wins(tmp_path: Path) -> None:
    path = _write(tmp_path, "http-port = 9000\ngrpc-port = 9001\n")
    args = _parse("--http-port", "8000", "--config", str(path))
    assert (args.http_port, args.grpc_port) == (8000, 9001)


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, 'repository = "models"\ntoken-file = "/abs/token"\n')
    args = _parse("--config", str(path))
    assert args.repository == tmp_path / "models"
    assert args.token_file == Path("/abs/token")


def test_print_config_round_trips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(
        tmp_path, 'http-port = 9000\npolicy = "reactive"\nno-warm = true\nmax-body-mb = 8\n'
    )
    assert main(["serve", "--config", str(path), "--grpc-port", "0", "--print-config"]) == 0
    printed = capsys.readouterr().out
    effective = tomllib.loads(printed)
    assert effective["http-port"] == 9000
    assert effective["grpc-port"] == 0
    assert effective["policy"] == "reactive"
    assert effective["no-warm"] is True
    assert effective["max-body-mb"] == 8.0
    assert effective["host"] == "127.0.0.1"  # a default
    assert "# repository is not set" in printed
    # every key but the unset ones is printed, and the output is itself a valid --config file
    unset = {line.split()[1] for line in printed.splitlines() if line.endswith(" is not set")}
    assert set(effective) | unset == set(config_keys(_serve_parser()))
    again = tmp_path / "again.toml"
    again.write_text(printed)
    assert main(["serve", "--config", str(again), "--print-config"]) == 0
    assert tomllib.loads(capsys.readouterr().out) == effective


def test_print_config_without_a_file_shows_the_defaults(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOCKWORK_TOKEN", "token-from-the-environment")
    assert main(["serve", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "token-from-the-environment" not in printed  # a secret is never configuration
    effective = tomllib.loads(printed)
    assert effective["http-port"] == 8000
    assert effective["allow-model-control"] is False


def test_unknown_key_names_it_and_suggests_the_nearest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "htp-port = 9000\n")
    err = _error(capsys, "--config", str(path))
    assert "unknown key 'htp-port'" in err
    assert "did you mean 'http-port'?" in err
    path = _write(tmp_path, "max_body_mb = 1\n")  # the attribute's spelling
    assert "did you mean 'max-body-mb'?" in _error(capsys, "--config", str(path))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('http-port = "9000"', "key 'http-port' must be an integer, not \"9000\" (a string)"),
        ("http-port = 9000.5", "key 'http-port' must be an integer, not 9000.5 (a float)"),
        ("no-warm = 1", "key 'no-warm' must be a boolean (true or false), not 1 (an integer)"),
        ("max-body-mb = true", "key 'max-body-mb' must be a number, not true (a boolean)"),
        ("host = [1, 2]", "key 'host' must be a string, not [1, 2] (an array)"),
        ('policy = "nope"', "key 'policy' must be one of "),
        ("max-body-mb = nan", "key 'max-body-mb' must be finite"),
    ],
)
def test_a_wrong_type_names_the_key_the_type_and_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, expected: str
) -> None:
    path = _write(tmp_path, line + "\n")
    assert expected in _error(capsys, "--config", str(path))


@pytest.mark.parametrize("key", ["token", "control-token", "cluster-secret", "control_token"])
def test_a_secret_value_is_refused_and_never_echoed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    path = _write(tmp_path, f'{key} = "hunter2-secret"\n')
    err = _error(capsys, "--config", str(path))
    assert "secrets are never written in the configuration file" in err
    assert '-file = "PATH"' in err
    assert "hunter2" not in err


def test_a_secret_file_key_of_the_wrong_type_does_not_echo_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "token-file = 123456789\n")
    err = _error(capsys, "--config", str(path))
    assert "key 'token-file' must be a file path" in err
    assert "123456789" not in err


def test_unreadable_or_malformed_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "cannot read it" in _error(capsys, "--config", str(tmp_path / "missing.toml"))
    path = _write(tmp_path, "http-port = \n")
    assert "not valid TOML" in _error(capsys, "--config", str(path))
    path.write_bytes(b"host = '\xff'\n")
    assert "not UTF-8" in _error(capsys, "--config", str(path))


def test_the_file_reaches_serve_s_own_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A combination serve refuses is refused the same when it comes from the file."""
    for var in ("CLOCKWORK_TOKEN", "CLOCKWORK_CONTROL_TOKEN", "CLOCKWORK_CLUSTER_SECRET"):
        monkeypatch.delenv(var, raising=False)
    path = _write(tmp_path, "no-local-worker = true\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "--no-local-worker needs --workers" in capsys.readouterr().err


def test_the_cli_process_reports_a_bad_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "http-prot = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "clockwork.cli.main", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "unknown key 'http-prot'; did you mean 'http-port'?" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_readme_s_example_file_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    match = re.search(r"```toml\n(# serve\.toml\n.*?)```", readme, flags=re.DOTALL)
    assert match is not None
    path = _write(tmp_path, match.group(1))
    args = _parse("--config", str(path), "--http-port", "9000")
    assert (args.http_port, args.grpc_port, args.host) == (9000, 8001, "0.0.0.0")
    assert args.repository == tmp_path / "models"
    assert args.token_file == Path("/run/secrets/clockwork-token")


def test_an_option_with_an_optional_value_takes_it_from_the_file(tmp_path: Path) -> None:
    # ``--ray [ADDRESS]``: absent is None, the flag alone is "" (a local cluster), or an address
    assert _parse().ray is None
    assert _parse("--config", str(_write(tmp_path, 'ray = ""\n'))).ray == ""
    path = _write(tmp_path, 'ray = "10.0.0.1:6379"\n')
    assert _parse("--config", str(path)).ray == "10.0.0.1:6379"
    assert _parse("--config", str(path), "--ray").ray == ""  # the command line wins
