"""The link handshake: both ends prove they hold the cluster secret before any frame is decoded.

It runs on the raw socket, before the stream and its msgpack frames exist, and uses fixed-size
messages only, each read with exact-size ``recv`` calls under one timeout: a peer that sends
anything else is closed having had at most ``MAX_HANDSHAKE_READ_BYTES`` read from it (a few
hundred bytes), whatever it sent. The controller always connects (the *client*), the worker
always listens (the *server*)::

    client -> server   HELLO  (HELLO_BYTES)   magic, version, role, flags, nonce, sender id
    server -> client   HELLO  + MAC(server)   the server's own hello, and its proof
    client -> server   MAC(client)            the client's proof
    server -> client   VERDICT + MAC(verdict) accepted, or refused with a reason

A MAC is HMAC-SHA256 with the cluster secret over a label naming who proves what, then both
hellos (each with its random nonce), so neither proof can be replayed on another connection or
reflected back as the other side's. The verdict lets the server's application refuse an
authenticated peer with a reason the peer can log (a worker that already serves a controller);
``flags`` carry the client's wish to take over such a worker.

Without a secret (``secret=None``, the ``--insecure-no-auth`` mode) the same messages flow with an
empty key and the ``AUTH`` flag clear: the framing checks still hold, but anyone can connect. Two
ends that disagree on whether there is a secret refuse each other, naming why.

The pure parts (building and parsing the messages, the MACs) take and return bytes; only
``client_handshake`` and ``server_handshake`` touch a socket.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import os
import socket
import struct
from dataclasses import dataclass

from clockwork.transport.errors import HandshakeError, LinkRefusedError

#: first bytes of every hello; read as a frame length prefix it says over 1 GiB, so a worker that
#: predates the handshake refuses it at once as oversized instead of waiting for its payload
MAGIC = b"CWLK"
HANDSHAKE_VERSION = 1
NONCE_BYTES = 32
ID_BYTES = 64
MAC_BYTES = 32
REASON_BYTES = 252
#: magic, version, role, flags, reserved, nonce, sender id (UTF-8, zero padded)
_HELLO = struct.Struct(f">4sBBBx{NONCE_BYTES}s{ID_BYTES}s")
HELLO_BYTES = _HELLO.size
#: accepted (0) or refused (1), reserved, reason (UTF-8, zero padded)
_VERDICT = struct.Struct(f">B3x{REASON_BYTES}s")
VERDICT_BYTES = _VERDICT.size
#: the most either side reads before the handshake has succeeded or failed
MAX_HANDSHAKE_READ_BYTES = HELLO_BYTES + MAC_BYTES + VERDICT_BYTES + MAC_BYTES
#: the whole handshake must finish within this (a peer that stalls it is closed)
HANDSHAKE_TIMEOUT_S = 5.0

_LABEL_SERVER = b"clockwork link v1: server proof"
_LABEL_CLIENT = b"clockwork link v1: client proof"
_LABEL_VERDICT = b"clockwork link v1: verdict"


class LinkRole(enum.IntEnum):
    """Which end a hello comes from."""

    CONTROLLER = 1
    WORKER = 2


class LinkFlag(enum.IntFlag):
    NONE = 0
    #: the sender holds a cluster secret (clear: ``--insecure-no-auth``)
    AUTH = 1
    #: the client asks to take over a worker that already serves another controller
    TAKE_OVER = 2


@dataclass(frozen=True, slots=True)
class Hello:
    """One side's fixed-size hello."""

    role: LinkRole
    flags: LinkFlag
    nonce: bytes
    sender_id: str

    def pack(self) -> bytes:
        return _HELLO.pack(
            MAGIC, HANDSHAKE_VERSION, self.role, self.flags, self.nonce, _pad_id(self.sender_id)
        )


@dataclass(frozen=True, slots=True)
class LinkPeer:
    """What the handshake established about the other end of a connection."""

    #: the peer's id as it said (controller id, or worker id)
    peer_id: str
    #: the peer's address, ``host:port``
    address: str
    #: whether both ends proved the same cluster secret (False only in insecure mode)
    authenticated: bool
    #: the client asked to take over (meaningful on the server side)
    take_over: bool


def _pad_id(sender_id: str) -> bytes:
    raw = sender_id.encode()
    if len(raw) > ID_BYTES:
        raise ValueError(f"id {sender_id!r} is over {ID_BYTES} bytes of UTF-8")
    return raw


def check_id(sender_id: str) -> None:
    """``ValueError`` if ``sender_id`` cannot travel in a hello."""
    _pad_id(sender_id)


def new_hello(role: LinkRole, sender_id: str, secret: bytes | None, take_over: bool) -> Hello:
    flags = LinkFlag.NONE
    if secret is not None:
        flags |= LinkFlag.AUTH
    if take_over:
        flags |= LinkFlag.TAKE_OVER
    return Hello(role, flags, os.urandom(NONCE_BYTES), sender_id)


def check_magic(head: bytes) -> None:
    """``HandshakeError`` unless ``head`` (the first bytes a peer sent) is our magic."""
    if head != MAGIC:
        raise HandshakeError(
            f"not a clockwork link handshake (first bytes {head.hex()}; a peer without the "
            "link handshake, or not a clockwork peer at all)"
        )


def parse_hello(data: bytes, expect: LinkRole) -> Hello:
    """The hello in ``data`` (``HELLO_BYTES``), from a peer that must be ``expect``."""
    magic, version, role, flags, nonce, raw_id = _HELLO.unpack(data)
    check_magic(magic)
    if version != HANDSHAKE_VERSION:
        raise HandshakeError(
            f"link handshake version {version}, this end speaks {HANDSHAKE_VERSION}"
        )
    if role != expect:
        got = LinkRole(role).name.lower() if role in LinkRole._value2member_map_ else str(role)
        raise HandshakeError(f"peer says it is a {got}, expected a {expect.name.lower()}")
    try:
        sender_id = raw_id.rstrip(b"\0").decode()
    except UnicodeDecodeError as e:
        raise HandshakeError("peer id is not UTF-8") from e
    return Hello(
        LinkRole(role), LinkFlag(flags & (LinkFlag.AUTH | LinkFlag.TAKE_OVER)), nonce, sender_id
    )


def check_auth_modes(ours: Hello, theirs: Hello, peer: str) -> None:
    """``HandshakeError`` if one end has a cluster secret and the other has none."""
    mine = bool(ours.flags & LinkFlag.AUTH)
    if mine == bool(theirs.flags & LinkFlag.AUTH):
        return
    if mine:
        raise HandshakeError(
            f"{peer} runs without a cluster secret (--insecure-no-auth) and this end has one"
        )
    raise HandshakeError(
        f"{peer} requires the cluster secret and this end has none (--insecure-no-auth)"
    )


def mac(secret: bytes | None, label: bytes, *parts: bytes) -> bytes:
    h = hmac.new(secret or b"", label, hashlib.sha256)
    for p in parts:
        h.update(p)
    return h.digest()


def _verify(secret: bytes | None, got: bytes, label: bytes, *parts: bytes) -> bool:
    return hmac.compare_digest(got, mac(secret, label, *parts))


def pack_verdict(reason: str | None) -> bytes:
    """The verdict: accepted (``reason`` None), or refused for ``reason`` (cut to fit)."""
    if reason is None:
        return _VERDICT.pack(0, b"")
    raw = reason.encode()[:REASON_BYTES]
    return _VERDICT.pack(1, raw.decode(errors="ignore").encode())


def parse_verdict(data: bytes) -> str | None:
    """None if accepted, else the reason the peer gave."""
    status, raw = _VERDICT.unpack(data)
    if status == 0:
        return None
    return raw.rstrip(b"\0").decode(errors="replace") or "no reason given"


# ---- over a socket -------------------------------------------------------------------------------


class HandshakeClosedError(HandshakeError):
    """The peer closed the connection before it sent anything at all."""


async def _recv_exactly(sock: socket.socket, n: int, first: bool = False) -> bytes:
    loop = asyncio.get_running_loop()
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, n - len(buf))
        if not chunk:
            error = HandshakeClosedError if first and not buf else HandshakeError
            raise error(
                f"peer closed the connection during the link handshake ({len(buf)} of {n} "
                "bytes of a handshake message received)"
            )
        buf += chunk
    return bytes(buf)


async def _recv_hello(sock: socket.socket, expect: LinkRole) -> Hello:
    # the magic first: a peer that sends anything else is refused without waiting for more
    head = await _recv_exactly(sock, len(MAGIC), first=expect is LinkRole.CONTROLLER)
    check_magic(head)
    return parse_hello(head + await _recv_exactly(sock, HELLO_BYTES - len(MAGIC)), expect)


async def client_handshake(
    sock: socket.socket,
    *,
    address: str,
    sender_id: str,
    secret: bytes | None,
    take_over: bool = False,
) -> LinkPeer:
    """Run the controller's side on connected ``sock`` (non-blocking); the worker as a
    ``LinkPeer``. ``HandshakeError`` if the worker fails to prove the secret or breaks the
    handshake, ``LinkRefusedError`` if it refuses us. The caller applies the timeout."""
    loop = asyncio.get_running_loop()
    ours = new_hello(LinkRole.CONTROLLER, sender_id, secret, take_over)
    ch = ours.pack()
    await loop.sock_sendall(sock, ch)
    theirs = await _recv_hello(sock, LinkRole.WORKER)
    sh = theirs.pack()
    check_auth_modes(ours, theirs, f"worker at {address}")
    server_mac = await _recv_exactly(sock, MAC_BYTES)
    if not _verify(secret, server_mac, _LABEL_SERVER, ch, sh):
        raise HandshakeError(
            f"worker at {address} ({theirs.sender_id!r}) did not prove the cluster secret "
            "(its secret differs from ours)"
        )
    await loop.sock_sendall(sock, mac(secret, _LABEL_CLIENT, ch, sh))
    verdict = await _recv_exactly(sock, VERDICT_BYTES)
    if not _verify(secret, await _recv_exactly(sock, MAC_BYTES), _LABEL_VERDICT, ch, sh, verdict):
        raise HandshakeError(f"worker at {address}: the verdict's MAC does not match")
    reason = parse_verdict(verdict)
    if reason is not None:
        raise LinkRefusedError(f"worker {theirs.sender_id!r} at {address} refused us: {reason}")
    return LinkPeer(theirs.sender_id, address, secret is not None, take_over=False)


@dataclass(slots=True)
class ServerHandshake:
    """The server's side, split where its application decides: ``accept`` proves the secret and
    returns the peer; ``verdict(reason)`` gives the bytes that tell the peer the decision."""

    secret: bytes | None
    sender_id: str
    _ch: bytes = b""
    _sh: bytes = b""

    async def accept(self, sock: socket.socket, address: str) -> LinkPeer:
        loop = asyncio.get_running_loop()
        theirs = await _recv_hello(sock, LinkRole.CONTROLLER)
        ours = new_hello(LinkRole.WORKER, self.sender_id, self.secret, take_over=False)
        self._ch, self._sh = theirs.pack(), ours.pack()
        # our hello and proof go out even to a peer about to be refused for its auth mode, so
        # that it can say why as well
        await loop.sock_sendall(
            sock, self._sh + mac(self.secret, _LABEL_SERVER, self._ch, self._sh)
        )
        check_auth_modes(ours, theirs, f"controller {theirs.sender_id!r}")
        proof = await _recv_exactly(sock, MAC_BYTES)
        if not _verify(self.secret, proof, _LABEL_CLIENT, self._ch, self._sh):
            raise HandshakeError(
                f"controller {theirs.sender_id!r} did not prove the cluster secret "
                "(its secret differs from ours)"
            )
        return LinkPeer(
            theirs.sender_id,
            address,
            self.secret is not None,
            take_over=bool(theirs.flags & LinkFlag.TAKE_OVER),
        )

    def verdict(self, reason: str | None) -> bytes:
        v = pack_verdict(reason)
        return v + mac(self.secret, _LABEL_VERDICT, self._ch, self._sh, v)


__all__ = [
    "HANDSHAKE_TIMEOUT_S",
    "HELLO_BYTES",
    "MAGIC",
    "MAX_HANDSHAKE_READ_BYTES",
    "LinkFlag",
    "LinkPeer",
    "LinkRole",
    "ServerHandshake",
    "check_id",
    "client_handshake",
]
