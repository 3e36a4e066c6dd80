"""Where the front door decodes what clients send: off the controller's timed loop.

Parsing JSON, inflating gzip and turning lists of numbers into arrays cost milliseconds per
megabyte, and CPython runs them holding the interpreter lock: done on the loop (or in a thread)
they hold the scheduler up for as long (a 60 MiB gzip bomb froze it 3.5 s). Small bodies are
decoded in place, where shipping them elsewhere would cost more than decoding them; the rest go
to a pool of decode processes, whose answers are the decoded arrays (in shared memory where
large: ``shared_inputs``).

A decode process that dies (killed, out of memory) answers its request 503 and the pool is
rebuilt for the next ones; nothing else is affected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, ParamSpec, TypeVar

from clockwork.frontend.api import ErrorKind, FrontendError
from clockwork.frontend.shared_inputs import discard

log = logging.getLogger(__name__)

#: bodies up to this size are decoded on the loop: a JSON body of 64 KiB parses in well under a
#: millisecond, less than the round trip to a decode process
DEFAULT_INLINE_MAX_BYTES = 64 * 1024

#: what the front door's decoders need (named, not imported: they import this module)
DECODERS = ("clockwork.frontend.http_server", "clockwork.frontend.grpc_server")

#: how much lower than the server's the decode processes' CPU priority is (``os.nice``)
DEFAULT_NICENESS = 10

#: how long closing waits for a decode in progress before its process is ended
CLOSE_TIMEOUT_S = 5.0

#: the cost of a decode that is unknown until it is done (an encoded body): always elsewhere
UNKNOWN_COST = 2**62

P = ParamSpec("P")
T = TypeVar("T")


def _ready() -> bool:
    return True


class DecodePool:
    """``processes`` decode processes (0: decode everything in place, as tests and tools that
    have no loop to protect may), each ``niceness`` below the server in CPU priority. See the
    module docstring."""

    def __init__(
        self,
        processes: int = 1,
        *,
        inline_max_bytes: int = DEFAULT_INLINE_MAX_BYTES,
        preload: tuple[str, ...] = DECODERS,
        niceness: int = DEFAULT_NICENESS,
    ) -> None:
        if processes < 0 or inline_max_bytes < 0:
            raise ValueError("processes >= 0 and inline_max_bytes >= 0 required")
        self.processes = processes
        self.inline_max_bytes = inline_max_bytes
        # modules each process imports at start, rather than its first request
        self.preload = preload
        self.niceness = niceness
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self.offloaded = 0
        self.inline = 0
        self.rebuilt = 0

    async def start(self) -> None:
        """Start the processes and wait until each has imported the decoders (a first request
        would otherwise wait a second for it)."""
        if self.processes == 0 or self._pool is not None:
            return
        self._pool = self._new_pool()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._pool, _ready) for _ in range(self.processes))
        )

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        # spawn, not fork: the parent runs gRPC's threads and an event loop
        return concurrent.futures.ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_process,
            initargs=(self.preload, self.niceness),
        )

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop the processes: queued decodes are cancelled, a running one may finish within
        ``timeout_s``, then its process is ended. Returns once the pool's manager thread is
        gone: left running, it races CPython 3.11's exit hook for the pool, which then writes
        to a pipe the thread has just closed ("Exception ignored ... Bad file descriptor" and a
        traceback when the server stops)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # private to ProcessPoolExecutor, and the only handles there are on its thread and
        # processes; both may be absent once the pool has broken
        manager: threading.Thread | None = getattr(pool, "_executor_manager_thread", None)
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        if manager is None:
            return
        manager.join(timeout_s)
        if manager.is_alive():
            log.warning("a decode process did not stop within %.0f s; ending it", timeout_s)
            for process in processes:
                process.terminate()
            manager.join(timeout_s)

    @property
    def pooled(self) -> bool:
        """Whether decode processes are running."""
        return self._pool is not None

    async def run_elsewhere(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args)`` in a decode process, whatever its size (``pooled`` must be True)."""
        return await self.run(UNKNOWN_COST, fn, *args, **kwargs)

    def in_place(self, size_bytes: int) -> bool:
        """Whether a body of ``size_bytes`` is decoded on the loop."""
        return self._pool is None or size_bytes <= self.inline_max_bytes

    async def run(
        self, size_bytes: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(*args)``: in place for a body of at most ``inline_max_bytes`` (or without a
        pool), else in a decode process. What ``fn`` raises is raised here."""
        if self.in_place(size_bytes):
            self.inline += 1
            return fn(*args, **kwargs)
        pool = self._pool
        assert pool is not None
        self.offloaded += 1
        try:
            done = pool.submit(_call, fn, args, kwargs)
            try:
                return await asyncio.wrap_future(done)
            except asyncio.CancelledError:
                # the caller left (its client went away): a result that comes anyway may hold
                # shared segments that nobody will open
                done.add_done_callback(_discard_result)
                raise
        except BrokenProcessPool:
            if self._pool is pool:
                log.error("a decode process died; starting a new pool")
                self.rebuilt += 1
                pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
            raise FrontendError(
                ErrorKind.UNAVAILABLE,
                "the process decoding this request died; try again",
                "DECODER_LOST",
            ) from None


def _discard_result(done: concurrent.futures.Future[Any]) -> None:
    if not done.cancelled() and done.exception() is None:
        discard(done.result())


def _call(fn: Callable[..., T], args: tuple[object, ...], kwargs: dict[str, object]) -> T:
    return fn(*args, **kwargs)


def _start_process(preload: tuple[str, ...], niceness: int) -> None:
    from clockwork.service.malloc_tuning import pin_malloc_thresholds

    # Ctrl-C reaches the whole process group: the server stops this process itself, and a
    # KeyboardInterrupt here would only print a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    pin_malloc_thresholds()  # a bomb's buffers go back to the system once it is refused
    if niceness:
        # decoding is bulk work: where the cores are short, the timed loop (and the workers)
        # should get them first; raising one's own niceness needs no privilege
        os.nice(niceness)
    for module in preload:
        importlib.import_module(module)
