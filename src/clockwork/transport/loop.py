"""Event loop choice: uvloop when asked for, never implicitly (importing this does nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def install_uvloop() -> bool:
    """Make uvloop the event loop policy of this process, if it is installed; True if it is."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def loop_factory(use_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop]:
    """A loop factory for ``asyncio.Runner``/``asyncio.run(loop_factory=...)``: uvloop's if asked
    for (``ImportError`` if it is not installed), else asyncio's default."""
    if use_uvloop:
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop
