"""What ``clockwork serve`` checks and waits on while it starts: its ports are free before any
child process starts (a taken port is one clean line, with no worker traceback nor gRPC's C-core
log), and every wait gives way to Ctrl-C at once."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from clockwork.core.errors import ConfigurationError

T = TypeVar("T")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def port_in_use(host: str, port: int) -> str | None:
    """Why ``port`` on ``host`` cannot be listened on now (e.g. "Address already in use"), or
    None when it can. Binds as the servers do (SO_REUSEADDR, no SO_REUSEPORT), so a port another
    process listens on is taken, one merely in TIME_WAIT is not."""
    bind_host = "" if host in ("0.0.0.0", "::") else host
    try:
        infos = socket.getaddrinfo(
            bind_host or None, port, _family(host), socket.SOCK_STREAM, 0, socket.AI_PASSIVE
        )
    except OSError as e:
        return str(e)
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(address)
            except OSError as e:
                if e.errno == errno.EADDRNOTAVAIL:
                    continue  # an address of the name this machine lacks: the server skips it
                return e.strerror or str(e)
    return None


def check_ports_free(host: str, ports: Iterable[tuple[str, int]]) -> None:
    """Refuse to start (ConfigurationError naming the option, host and port) when any of
    ``ports`` (option name, port; 0 is none) is taken."""
    for option, port in ports:
        if port == 0:
            continue
        why = port_in_use(host, port)
        if why is not None:
            # "address already in use": the OS's words, lower-cased inside the sentence
            why = why[:1].lower() + why[1:]
            raise ConfigurationError(
                f"{option} {port}: cannot listen on {host}:{port}: {why} "
                f"(another server running? choose another port with {option})"
            )


async def unless_stopped(waiting: Awaitable[T], stop: asyncio.Event) -> T | None:
    """``waiting``'s result, or None as soon as ``stop`` is set (``waiting`` is cancelled)."""
    task = asyncio.ensure_future(waiting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        stopped.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopped
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None
