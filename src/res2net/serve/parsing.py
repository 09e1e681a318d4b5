"""Parse large request bodies without stalling the event loop.

``json.loads`` holds the GIL from start to end: a 30 MB JSON tensor body takes ~0.3 s on one Zen 4
core (seconds on a busy machine), during which no other request — health probes included — is
served. A thread would not help (it holds the same GIL), so bodies from :data:`OFF_LOOP_BYTES` up
are parsed in one helper process, started on first need; smaller ones, parsed in milliseconds,
stay in-line.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from res2net.serve.errors import Unavailable

OFF_LOOP_BYTES = 1 << 20
T = TypeVar("T")


class BodyParser:
    """``await parse(parser, body, *args)``: ``parser(body, *args)``, in the helper process for large bodies."""

    def __init__(self, off_loop_bytes: int = OFF_LOOP_BYTES):
        self.off_loop_bytes = off_loop_bytes
        self._pool: ProcessPoolExecutor | None = None

    async def __call__(self, parser: Callable[..., T], body: bytes, *args) -> T:
        """``parser`` must be a module-level function (it is pickled by reference), and should raise the
        server's own errors (``BadRequest``) for malformed input: they come back as they were raised."""
        if len(body) < self.off_loop_bytes:
            return parser(body, *args)
        if self._pool is None:
            # spawn: never fork a process that runs threads (torch, grpc, the decode pool)
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, parser, body, *args)
        except BrokenProcessPool:  # killed (by the OOM killer, say): the next large body starts another
            self._pool = None
            raise Unavailable("the request parser process died; retry") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
