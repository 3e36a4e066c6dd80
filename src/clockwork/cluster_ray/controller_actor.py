"""The body of the controller actor (``clockwork serve --ray --ray-controller``): ``clockwork
serve``'s controller and front door, with the Ray worker pool, in a Ray actor that Ray restarts
when it dies. They run on an event loop thread of the actor's own, as in a ``clockwork serve``
process; Ray's calls (``describe``, ``stop``) only look at it from outside.

The workers outlive the actor (the pool names and detaches them, ``detached_prefix``): a
restarted controller finds the same worker actors, connects to them, and learns what each holds
with ``GetWorkerState`` as any controller does after a restart, so that the models that were
resident are not loaded again."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from clockwork.cluster_ray.config import RayPoolConfig
from clockwork.cluster_ray.restart_memo import (
    Memo,
    memo_dir,
    read_memo,
    restart_delay_s,
    write_memo,
)

log = logging.getLogger("clockwork.cluster_ray.controller")

#: how long the actor waits for its event loop to start before its start fails
START_TIMEOUT_S = 60.0
#: how long ``stop`` waits for the front door, the controller and the workers to close
STOP_TIMEOUT_S = 60.0


class RayControllerActor:
    """``clockwork serve`` for ``args`` (parsed and checked by the command, in the driver) with
    remote workers at ``addresses`` besides Ray's, ``secret`` (the cluster secret, through Ray)
    and ``repository`` (the torch workers' source, on this node)."""

    def __init__(
        self,
        args: argparse.Namespace,
        addresses: list[tuple[str, int]],
        secret: bytes | None,
        repository: str | None,
    ) -> None:
        import ray

        from clockwork.cli.log_setup import setup_logging

        setup_logging(args.log_format, args.verbose)
        ctx = ray.get_runtime_context()
        with warnings.catch_warnings():
            # Ray 2.60 warns from inside this property about an API it uses itself
            warnings.simplefilter("ignore", DeprecationWarning)
            self.restarted = bool(ctx.was_current_actor_reconstructed)
        self.starts = self._wait_restart_backoff(ctx.get_job_id())
        if self.restarted:
            log.warning(
                "the controller actor was restarted (start %d): re-learning its workers",
                self.starts,
            )
        self.node_id: str = ctx.get_node_id()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        source = None if repository is None else Path(repository)
        self._thread = threading.Thread(
            target=self._run,
            args=(args, addresses, secret, source, started),
            name="controller",
            daemon=True,
        )
        self._thread.start()
        started.result(timeout=START_TIMEOUT_S)

    def _wait_restart_backoff(self, job_id: str) -> int:
        """Wait before a restart as a worker does (doubling, from the low end again after a
        stable run), so that a controller that cannot start does not spin; its start number."""
        pool = RayPoolConfig()
        path = memo_dir(job_id) / "controller.json"
        memo = read_memo(path) if self.restarted else Memo()
        delay_s = restart_delay_s(memo, pool.restart_backoff_s, pool.stable_s)
        if delay_s > 0:
            time.sleep(delay_s)
        stable = memo.starts > 0 and time.time() - memo.last_start_s >= pool.stable_s
        starts = 1 if stable else memo.starts + 1
        write_memo(path, Memo(starts, time.time(), 0))
        return starts

    # ----------------------------------------------------------------- called through Ray

    def describe(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "node_id": self.node_id,
            "restarted": self.restarted,
            "starts": self.starts,
            "serving": self._thread.is_alive(),
        }

    def stop(self) -> None:
        """Close the front door, the controller and the pool (its workers and their placement
        groups): the orderly end, after which Ray should not restart the actor."""
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            loop.call_soon_threadsafe(task.cancel)
        self._thread.join(timeout=STOP_TIMEOUT_S)

    # ----------------------------------------------------------------- the serving thread

    def _run(
        self,
        args: argparse.Namespace,
        addresses: list[tuple[str, int]],
        secret: bytes | None,
        repository: Path | None,
        started: concurrent.futures.Future[None],
    ) -> None:
        from clockwork.cli import serve_cmd
        from clockwork.cluster_ray.cli_args import ray_pool_from_args
        from clockwork.transport import loop_factory

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            started.set_result(None)
            # the pool joins the Ray this actor runs in; a restarted actor's pool gets the
            # living workers back by name
            pool = ray_pool_from_args(args, secret, repository)
            # the same serving as `clockwork serve --ray` in its own process (no local worker)
            await serve_cmd._serve(args, addresses, None, secret, pool)

        try:
            with (
                asyncio.Runner(loop_factory=loop_factory(not args.no_uvloop)) as runner,
                contextlib.suppress(asyncio.CancelledError),
            ):
                runner.run(serve())
        except BaseException as e:
            if not started.done():
                started.set_exception(e)
            log.exception("the controller stopped")
            # Ray restarts the actor only when its process dies: a controller that failed
            # must not linger as a live actor serving nothing
            os._exit(1)
