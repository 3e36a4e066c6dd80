"""What a client presents to a secured front door: a bearer token, and for TLS the CA that signed
the server's certificate and optionally a client certificate (mutual TLS).

The token comes from a file or the ``CLOCKWORK_TOKEN`` environment variable, never from the
command line (``ps`` shows it to every user).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clockwork.core.errors import ConfigurationError
from clockwork.frontend.tokens import TOKEN_ENV, token_from

__all__ = ["ClientCredentials", "credentials_from"]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigurationError(f"{what} {path}: {e.strerror or e}") from e


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """``token``: sent as ``Authorization: Bearer`` (HTTP header, gRPC metadata). ``ca``: trust
    this CA for the server's certificate (None: the system's CAs, for https/grpcs URLs).
    ``cert``/``key``: a client certificate for mutual TLS. The token never appears in
    ``repr``."""

    token: str | None = field(default=None, repr=False)
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigurationError("--tls-cert and --tls-key go together: give both or neither")

    @property
    def wants_tls(self) -> bool:
        return self.ca is not None or self.cert is not None

    def http_headers(self) -> dict[str, str]:
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}

    def grpc_metadata(self) -> tuple[tuple[str, str], ...]:
        return () if self.token is None else (("authorization", f"Bearer {self.token}"),)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: the server's certificate checked against ``ca`` (or the system's
        CAs), with the client certificate when there is one."""
        try:
            ctx = ssl.create_default_context(cafile=None if self.ca is None else str(self.ca))
            if self.cert is not None and self.key is not None:
                ctx.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as e:
            raise ConfigurationError(f"client TLS files: {e}") from e
        return ctx

    def grpc_channel_credentials(self) -> Any:
        import grpc  # type: ignore[import-untyped, unused-ignore]

        return grpc.ssl_channel_credentials(
            root_certificates=None if self.ca is None else _read(self.ca, "--tls-ca"),
            private_key=None if self.key is None else _read(self.key, "--tls-key"),
            certificate_chain=None if self.cert is None else _read(self.cert, "--tls-cert"),
        )


def credentials_from(
    token_file: Path | None,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> ClientCredentials:
    """Credentials from the command line's files and, without ``token_file``, from
    ``$CLOCKWORK_TOKEN``."""
    token = token_from(token_file, TOKEN_ENV)
    return ClientCredentials(None if token is None else token.decode("ascii"), ca, cert, key)
