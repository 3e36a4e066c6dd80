"""``clockwork serve``'s security options: the policy they build (with the environment) and the
banner lines that say what is exposed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from clockwork.cli.security_args import (
    DEFAULT_HOST,
    add_security_arguments,
    exposure_lines,
    security_from_args,
)
from clockwork.core.errors import ConfigurationError
from clockwork.frontend.auth import FrontDoorSecurity

from support.certs import make_pki


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_security_arguments(p)
    return p.parse_args(list(argv))


def test_defaults_are_loopback_no_token_no_control() -> None:
    args = parse()
    assert args.host == DEFAULT_HOST == "127.0.0.1"
    s = security_from_args(args, {})
    assert s == FrontDoorSecurity()
    text = "\n".join(exposure_lines(args.host, s))
    assert "loopback" in text and "no TLS" in text and "disabled" in text
    assert "WARNING" not in text


def test_tokens_come_from_files_or_the_environment(tmp_path: Path) -> None:
    env = {"CLOCKWORK_TOKEN": "from-env", "CLOCKWORK_CONTROL_TOKEN": "control-env"}
    s = security_from_args(parse("--allow-model-control"), env)
    assert s.token == b"from-env" and s.control_token == b"control-env"
    f = tmp_path / "t"
    f.write_text("from-file\n")
    f.chmod(0o600)
    s = security_from_args(parse("--allow-model-control", "--token-file", str(f)), env)
    assert s.token == b"from-file"
    with pytest.raises(ConfigurationError, match=r"CLOCKWORK_CONTROL_TOKEN gives a control token"):
        security_from_args(parse(), env)
    with pytest.raises(ConfigurationError, match="no control token"):
        security_from_args(parse("--allow-model-control"), {})
    # there is no option that takes a token itself (argparse reads --token as --token-file)
    with pytest.raises(ConfigurationError, match="token file secret"):
        security_from_args(parse("--token", "secret"), {})


def test_the_banner_warns_beyond_loopback(tmp_path: Path) -> None:
    open_all = "\n".join(exposure_lines("0.0.0.0", FrontDoorSecurity()))
    assert "EVERY network interface" in open_all
    assert "WARNING" in open_all and "TLS or a token" in open_all
    assert "clear text" in open_all and "anyone who reaches the port" in open_all
    token_only = "\n".join(exposure_lines("10.1.2.3", FrontDoorSecurity(token=b"t")))
    assert "WARNING: listening beyond loopback without TLS:" in token_only
    pki = make_pki(tmp_path)
    args = parse(
        "--host", "0.0.0.0", "--tls-cert", str(pki.server_cert), "--tls-key",
        str(pki.server_key), "--tls-ca", str(pki.ca),
    )  # fmt: skip
    s = security_from_args(args, {"CLOCKWORK_TOKEN": "t"})
    lines = "\n".join(exposure_lines(args.host, s))
    assert "client certificates required" in lines and "token required" in lines
    assert "WARNING" not in lines
    assert "listening on ::1 (loopback" in exposure_lines("::1", FrontDoorSecurity())[0]


@pytest.mark.parametrize("command", ["serve", "controller", "worker", "bench"])
def test_a_token_typed_on_the_command_line_is_not_taken_for_a_file_and_echoed(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from clockwork.cli.main import main

    with pytest.raises(SystemExit) as e:
        main([command, "--token", "s3cr3t-value"])
    assert e.value.code == 2  # a usage error, not an attempt to read a token file named so
    err = capsys.readouterr().err
    assert "No such file" not in err and "token file" not in err
