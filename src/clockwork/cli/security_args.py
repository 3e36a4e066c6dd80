"""``clockwork serve``'s security options: where the front door listens, its tokens, model control
and TLS, and the banner lines that say what is exposed.

Secrets never come from the command line (other users see it in ``ps``): a token comes from a
file (``--token-file``, ``--control-token-file``) or, without one, from an environment variable
(``CLOCKWORK_TOKEN``, ``CLOCKWORK_CONTROL_TOKEN``).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from clockwork.core.errors import ConfigurationError
from clockwork.frontend.tokens import CONTROL_TOKEN_ENV, TOKEN_ENV, token_from

if TYPE_CHECKING:  # aiohttp and grpc load lazily: `clockwork --help` stays fast
    from clockwork.frontend.auth import FrontDoorSecurity

__all__ = [
    "DEFAULT_HOST",
    "add_security_arguments",
    "exposure_lines",
    "is_loopback",
    "security_from_args",
]

DEFAULT_HOST = "127.0.0.1"


def add_security_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "security",
        "who may reach the front door and what they may do (see README, Security); tokens come "
        "from a file or the environment, never from the command line",
    )
    g.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address the HTTP and gRPC servers bind (0.0.0.0: every interface)",
    )
    g.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"require this bearer token for inference and metadata; without it, ${TOKEN_ENV} "
        "if set, else no token",
    )
    g.add_argument(
        "--allow-model-control",
        action="store_true",
        help="serve repository load/unload (refused by default), to holders of the control token",
    )
    g.add_argument(
        "--control-token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"the model-control token; without it, ${CONTROL_TOKEN_ENV}; needs "
        "--allow-model-control",
    )
    g.add_argument("--tls-cert", type=Path, default=None, metavar="PEM", help="serve TLS: cert")
    g.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="its private key")
    g.add_argument(
        "--tls-ca",
        type=Path,
        default=None,
        metavar="PEM",
        help="require client certificates signed by this CA (mutual TLS)",
    )


def security_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> FrontDoorSecurity:
    """The front door's policy from the parsed options and the environment; ``ConfigurationError``
    for anything that cannot work (model control without a token, half a TLS pair...)."""
    from clockwork.frontend.auth import FrontDoorSecurity
    from clockwork.frontend.tls import load_tls

    env = os.environ if environ is None else environ
    control = token_from(args.control_token_file, CONTROL_TOKEN_ENV, env)
    if control is not None and not args.allow_model_control:
        source = (
            f"--control-token-file {args.control_token_file}"
            if args.control_token_file is not None
            else f"${CONTROL_TOKEN_ENV}"
        )
        raise ConfigurationError(
            f"{source} gives a control token but model control is off: add "
            "--allow-model-control, or drop the token"
        )
    return FrontDoorSecurity(
        token=token_from(args.token_file, TOKEN_ENV, env),
        control_token=control,
        allow_model_control=args.allow_model_control,
        tls=load_tls(args.tls_cert, args.tls_key, args.tls_ca),
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def exposure_lines(host: str, security: FrontDoorSecurity) -> list[str]:
    """The banner's account of what is exposed to whom; a loud warning for a listener beyond
    loopback without TLS or without a token."""
    if is_loopback(host):
        where = f"{host} (loopback: this machine only)"
    elif host in ("0.0.0.0", "::", ""):
        where = f"{host or '*'} (EVERY network interface)"
    else:
        where = f"{host} (reachable from its network)"
    tls = security.tls
    if tls is None:
        transport = "plain TCP, no TLS"
    elif tls.mutual:
        transport = f"TLS, client certificates required (CA {tls.ca_path})"
    else:
        transport = "TLS"
    token = "token required" if security.requires_token else "no token (open to all who reach it)"
    control = (
        "enabled (control token)" if security.allow_model_control else "disabled (load/unload: 403)"
    )
    lines = [
        f"  listening on {where}; {transport}",
        f"  inference and metadata: {token}; model control: {control}; health: open",
    ]
    if not is_loopback(host):
        missing, risks = [], []
        if tls is None:
            missing.append("TLS")
            risks.append("requests, answers and tokens cross the network in clear text")
        if not security.requires_token:
            missing.append("a token")
            risks.append("anyone who reaches the port can run inference and read metadata")
        if missing:
            lines.append(
                f"  WARNING: listening beyond loopback without {' or '.join(missing)}: "
                + "; ".join(risks)
            )
    return lines
