"""Bearer tokens from files and the environment, checked to be sendable in a header.

No heavy imports here: the command line reads tokens before anything starts.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from clockwork.core.errors import ConfigurationError

__all__ = [
    "CONTROL_TOKEN_ENV",
    "MAX_TOKEN_BYTES",
    "TOKEN_ENV",
    "check_token",
    "read_token_file",
    "token_from",
]

TOKEN_ENV = "CLOCKWORK_TOKEN"
CONTROL_TOKEN_ENV = "CLOCKWORK_CONTROL_TOKEN"
#: a token longer than this is a wrong file (a certificate, a log), not a secret
MAX_TOKEN_BYTES = 4096

_log = logging.getLogger(__name__)


def check_token(token: bytes, what: str) -> bytes:
    """``token`` if it can travel in a header: 1 to ``MAX_TOKEN_BYTES`` visible ASCII
    characters, else ``ConfigurationError`` naming ``what``."""
    if not token:
        raise ConfigurationError(f"{what} is empty")
    if len(token) > MAX_TOKEN_BYTES:
        raise ConfigurationError(f"{what} is {len(token)} bytes long, over {MAX_TOKEN_BYTES}")
    if any(not 0x21 <= b <= 0x7E for b in token):
        raise ConfigurationError(
            f"{what} holds a space, a control or a non-ASCII character; a bearer token is "
            "visible ASCII only (base64 or hex, for example: openssl rand -hex 32)"
        )
    return token


def read_token_file(path: Path) -> bytes:
    """The token in ``path``: its bytes less one trailing newline (``\\n`` or ``\\r\\n``, what
    ``echo`` and editors add). ``ConfigurationError`` if unreadable, empty or not a token. A
    file that others may read is accepted with a warning: Kubernetes and Docker mount secrets
    world-readable (0644/0444) inside the container by default."""
    try:
        raw = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as e:
        raise ConfigurationError(f"token file {path}: {e.strerror or e}") from e
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    token = check_token(raw, f"token file {path}")
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        _log.warning(
            "token file %s is readable by other users (mode %o); chmod 600 it unless it is a "
            "mounted secret",
            path,
            stat.S_IMODE(mode),
        )
    return token


def token_from(
    path: Path | None, env_var: str, environ: Mapping[str, str] | None = None
) -> bytes | None:
    """A token from ``path`` if given, else from the environment variable ``env_var`` (an empty
    variable is an error, not "no token": it is a mistake more often than a choice), else
    None."""
    if path is not None:
        return read_token_file(path)
    env = os.environ if environ is None else environ
    value = env.get(env_var)
    if value is None:
        return None
    return check_token(value.strip().encode("utf-8", "surrogateescape"), f"${env_var}")
