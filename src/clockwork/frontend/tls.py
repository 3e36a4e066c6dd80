"""TLS for the front door: one certificate and key for HTTPS and gRPC, and optionally a CA whose
client certificates are then required (mutual TLS).

``load_tls`` reads and checks the files once, at start, so that a wrong path, a key that does not
match its certificate or a file that is not PEM is a clear error before anything listens, not a
failed handshake later. HTTP gets an ``ssl.SSLContext`` (TLS 1.2 at least); gRPC gets
``grpc.ssl_server_credentials`` from the same bytes.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from clockwork.core.errors import ConfigurationError

__all__ = ["TlsFiles", "grpc_server_credentials", "load_tls", "server_ssl_context"]


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM bytes of the server's certificate chain and key, and of the CA that signs the
    clients' certificates (None: no client certificate asked for). The key never appears in
    ``repr``."""

    cert_path: Path
    key_path: Path
    ca_path: Path | None
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    ca_pem: bytes | None = field(default=None, repr=False)

    @property
    def mutual(self) -> bool:
        return self.ca_pem is not None


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigurationError(f"{what} {path}: {e.strerror or e}") from e
    if b"-----BEGIN " not in data:
        raise ConfigurationError(f"{what} {path} is not a PEM file (no '-----BEGIN' line)")
    return data


def load_tls(cert: Path | None, key: Path | None, ca: Path | None = None) -> TlsFiles | None:
    """The TLS files of ``--tls-cert``/``--tls-key``/``--tls-ca``, read and checked (None if
    neither certificate nor key is given). ``ConfigurationError`` if only one of the pair is
    given, a file cannot be read, or the key does not match the certificate."""
    if cert is None and key is None:
        if ca is not None:
            raise ConfigurationError("--tls-ca needs --tls-cert and --tls-key")
        return None
    if cert is None or key is None:
        raise ConfigurationError("--tls-cert and --tls-key go together: give both or neither")
    files = TlsFiles(
        cert,
        key,
        ca,
        _read(cert, "--tls-cert"),
        _read(key, "--tls-key"),
        None if ca is None else _read(ca, "--tls-ca"),
    )
    server_ssl_context(files)  # the checks: the pair matches, the CA parses
    return files


def _encrypted(path: Path) -> Callable[[], str]:
    # without a password callback OpenSSL would prompt on the terminal for an encrypted key
    def refuse() -> str:
        raise ConfigurationError(
            f"--tls-key {path} is encrypted; give an unencrypted key (readable by this user only)"
        )

    return refuse


def server_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """A server context of ``tls``: TLS 1.2 or later, client certificates required and checked
    against the CA when it has one. ``ConfigurationError`` for files OpenSSL refuses."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        # load_cert_chain reads files only; the paths are the ones read above
        ctx.load_cert_chain(tls.cert_path, tls.key_path, password=_encrypted(tls.key_path))
    except ssl.SSLError as e:
        detail = "the key does not match the certificate" if "MISMATCH" in str(e) else str(e)
        raise ConfigurationError(
            f"--tls-cert {tls.cert_path} / --tls-key {tls.key_path}: {detail}"
        ) from e
    except OSError as e:
        raise ConfigurationError(f"--tls-cert/--tls-key: {e.strerror or e}") from e
    if tls.ca_pem is not None:
        try:
            ctx.load_verify_locations(cadata=tls.ca_pem.decode("ascii", "replace"))
        except ssl.SSLError as e:
            raise ConfigurationError(f"--tls-ca {tls.ca_path}: {e}") from e
        ctx.verify_mode = ssl.CERT_REQUIRED
    # aiohttp speaks HTTP/1.1 only
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def grpc_server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """gRPC server credentials of ``tls``; with a CA, clients must present a certificate it
    signed."""
    return grpc.ssl_server_credentials(
        [(tls.key_pem, tls.cert_pem)],
        root_certificates=tls.ca_pem,
        require_client_auth=tls.ca_pem is not None,
    )
