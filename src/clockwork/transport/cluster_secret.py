"""The cluster secret: where the worker and controller commands find it, and how a parent that
spawns workers makes one for them.

The secret is read from the file ``--cluster-secret-file PATH`` names, else from the environment
variable ``CLOCKWORK_CLUSTER_SECRET``; never from the command line (argv is visible to every
local user in ``ps``). Surrounding whitespace is dropped; what is left must be at least
``MIN_SECRET_BYTES`` long.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from clockwork.core.errors import ConfigurationError

ENV_VAR = "CLOCKWORK_CLUSTER_SECRET"
FILE_FLAG = "--cluster-secret-file"
INSECURE_FLAG = "--insecure-no-auth"
#: shorter secrets are refused: they could be guessed
MIN_SECRET_BYTES = 16


def _check(secret: bytes, where: str) -> bytes:
    secret = secret.strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"the cluster secret from {where} is {len(secret)} bytes long; at least "
            f"{MIN_SECRET_BYTES} are needed (make one with: python -c "
            "'import secrets; print(secrets.token_hex(32))')"
        )
    return secret


def load_secret(file: Path | None, env: Mapping[str, str] | None = None) -> bytes | None:
    """The secret from ``file`` if given, else from ``$CLOCKWORK_CLUSTER_SECRET``; None if
    neither is set. ``ConfigurationError`` for an unreadable file or a secret too short."""
    if file is not None:
        try:
            raw = file.read_bytes()
        except OSError as e:
            raise ConfigurationError(f"{FILE_FLAG} {file}: {e.strerror or e}") from e
        return _check(raw, f"{FILE_FLAG} {file}")
    value = (os.environ if env is None else env).get(ENV_VAR)
    if value is None or not value.strip():
        return None
    return _check(value.encode(), f"${ENV_VAR}")


def require_secret(file: Path | None, insecure: bool, command: str) -> bytes | None:
    """The secret for ``clockwork <command>``: loaded as ``load_secret`` does; None only with
    ``--insecure-no-auth``; ``ConfigurationError`` naming the ways to set it otherwise."""
    secret = load_secret(file)
    if insecure:
        if secret is not None:
            raise ConfigurationError(f"{INSECURE_FLAG} given, but a cluster secret is set too")
        return None
    if secret is None:
        raise ConfigurationError(
            f"no cluster secret: set the environment variable {ENV_VAR} or pass {FILE_FLAG} "
            f"PATH (the same secret on every worker and controller), or run "
            f"'clockwork {command} {INSECURE_FLAG}' to let any process that can reach the "
            "port act as a controller"
        )
    return secret


def add_secret_arguments(p: argparse.ArgumentParser, insecure: bool = True) -> None:
    """``--cluster-secret-file`` (and ``--insecure-no-auth`` if ``insecure``) on ``p``."""
    p.add_argument(
        FILE_FLAG,
        type=Path,
        default=None,
        metavar="PATH",
        help=f"file holding the cluster secret (default: ${ENV_VAR}); never on the command line",
    )
    if insecure:
        p.add_argument(
            INSECURE_FLAG,
            action="store_true",
            help="run without a cluster secret: any process that can reach a worker's port can "
            "then drive it (for a trusted, isolated network only)",
        )


def serve_secret(file: Path | None, remote_workers: bool) -> bytes:
    """The secret ``clockwork serve`` links with: the configured one if set (and it must be with
    remote workers: they hold it), else a new random one that only its local worker gets."""
    secret = load_secret(file)
    if secret is not None:
        return secret
    if remote_workers:
        raise ConfigurationError(
            f"--workers: the remote workers' cluster secret is needed; set {ENV_VAR} or pass "
            f"{FILE_FLAG} PATH"
        )
    return new_secret()


def new_secret() -> bytes:
    """A fresh random secret (hex text, so it can travel in an environment variable)."""
    return secrets.token_hex(32).encode()


def child_env(secret: bytes, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: our environment) with ``secret`` as the cluster secret: the
    environment to spawn a worker with."""
    env = dict(os.environ if base is None else base)
    env[ENV_VAR] = secret.decode()
    return env


__all__ = [
    "ENV_VAR",
    "FILE_FLAG",
    "INSECURE_FLAG",
    "MIN_SECRET_BYTES",
    "add_secret_arguments",
    "child_env",
    "load_secret",
    "new_secret",
    "require_secret",
    "serve_secret",
]
