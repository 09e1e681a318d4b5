"""Dynamic batching with backpressure.

Requests put single images (preprocessed ``float32`` CHW arrays) into one queue; a loop takes up to
``max_batch_size`` of them — waiting at most ``max_delay`` after the oldest arrived — and runs one
forward pass for the whole group on a dedicated inference thread, so the event loop never blocks.

Admission is bounded: :meth:`DynamicBatcher.admit` reserves room for a request's images *before*
they are decoded and refuses (:class:`~res2net.serve.errors.QueueFull`, i.e. 503 /
RESOURCE_EXHAUSTED) when ``max_queue`` images are already admitted. Memory therefore stays bounded
however many clients push, and an overloaded server answers fast instead of timing out slowly.

Batch sizes are restricted to powers of two up to ``max_batch_size`` (and ``max_batch_size``
itself): when 7 images wait, 4 go now and the rest right after. Engines that compile one static
shape per batch size (OpenVINO here, TensorRT elsewhere) then see only a handful of shapes, all
compiled during warm-up, instead of recompiling whenever the load changes; engines with dynamic
shapes lose nothing, as nothing is padded.

Isolation: if a batched forward raises, its images are retried one by one, so one poisoned input
cannot fail the requests it happened to be grouped with. A request that times out or is cancelled
leaves the queue without being computed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from res2net.serve.errors import QueueFull

log = logging.getLogger(__name__)

InferFn = Callable[[np.ndarray], np.ndarray]


def allowed_batch_sizes(max_batch_size: int) -> tuple[int, ...]:
    """Powers of two up to ``max_batch_size``, plus ``max_batch_size``: the shapes the engine will see."""
    sizes = {1 << i for i in range(max_batch_size.bit_length()) if 1 << i <= max_batch_size}
    return tuple(sorted(sizes | {max_batch_size}))


@dataclass
class _Item:
    x: np.ndarray
    future: asyncio.Future
    enqueued: float


class DynamicBatcher:
    """Group concurrent single-image requests into batches for ``infer_fn(batch) -> rows``.

    Args:
        infer_fn: ``[B, ...] float32 -> [B, ...]`` rows; called on one background thread only.
        max_batch_size: images per forward pass.
        max_delay_s: how long the oldest queued image may wait for companions.
        max_queue: images admitted at once (decoding + queued + in the running batch).
        metrics: optional :class:`res2net.serve.metrics.Metrics`.
    """

    def __init__(
        self,
        infer_fn: InferFn,
        *,
        max_batch_size: int = 8,
        max_delay_s: float = 0.005,
        max_queue: int = 64,
        metrics=None,
    ):
        self.infer_fn = infer_fn
        self.max_batch_size = max_batch_size
        self.batch_sizes = allowed_batch_sizes(max_batch_size)
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.metrics = metrics
        self._queue: deque[_Item] = deque()
        self._admitted = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="res2net-infer")

    # ------------------------------------------------------------------------------------ admission
    @property
    def admitted(self) -> int:
        """Images currently admitted (decoding, waiting, or in the running batch)."""
        return self._admitted

    @property
    def queued(self) -> int:
        return len(self._queue)

    def has_room(self, n: int = 1) -> bool:
        return self._admitted + n <= self.max_queue

    @contextlib.contextmanager
    def admit(self, n: int) -> Iterator[None]:
        """Reserve room for ``n`` images for the duration of the ``with`` block, or raise ``QueueFull``."""
        if not self.has_room(n):
            if self.metrics:
                self.metrics.rejected.labels("queue_full").inc()
            raise QueueFull(
                f"server at capacity ({self._admitted}/{self.max_queue} images admitted); retry shortly"
                if n <= self.max_queue
                else f"request holds {n} images, more than the queue's {self.max_queue}"
            )
        self._admitted += n
        self._report()
        try:
            yield
        finally:
            self._admitted -= n
            self._report()

    def _report(self) -> None:
        if self.metrics:
            self.metrics.queue_depth.set(len(self._queue))
            self.metrics.admitted.set(self._admitted)

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        if self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="res2net-batcher")

    async def stop(self) -> None:
        """Stop the loop (callers should have drained first); pending futures get an error."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(RuntimeError("server shutting down"))
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------------------------ requests
    async def submit(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        """Queue images (each one model input without the batch axis) and await their output rows.

        Call inside :meth:`admit`. Cancelling the awaiting task (e.g. a timeout) withdraws the
        images that have not been computed yet.
        """
        if self._task is None:
            raise RuntimeError("DynamicBatcher.start() was not called")
        loop = asyncio.get_running_loop()
        now = loop.time()
        futures = []
        for x in rows:
            fut = loop.create_future()
            self._queue.append(_Item(x, fut, now))
            futures.append(fut)
        self._report()
        self._wakeup.set()
        try:
            return list(await asyncio.gather(*futures))
        finally:
            for f in futures:
                f.cancel()  # no-op when done; otherwise the loop skips the item

    # ---------------------------------------------------------------------------------- the loop
    def _drop_withdrawn(self) -> None:
        while self._queue and self._queue[0].future.done():  # timed out / cancelled before their turn
            self._queue.popleft()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._drop_withdrawn()
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                self._drop_withdrawn()
            deadline = self._queue[0].enqueued + self.max_delay_s
            while len(self._queue) < self.max_batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            live = sum(not item.future.done() for item in self._queue)
            size = max((s for s in self.batch_sizes if s <= live), default=0)
            items: list[_Item] = []
            while self._queue and len(items) < size:
                item = self._queue.popleft()
                if not item.future.done():
                    items.append(item)
            self._report()
            if items:
                await self._run_batch(items, loop)

    async def _run_batch(self, items: list[_Item], loop: asyncio.AbstractEventLoop) -> None:
        start = time.perf_counter()
        try:
            out = await loop.run_in_executor(self._executor, self._forward, [it.x for it in items])
        except Exception as e:  # noqa: BLE001 - isolate the failure to the input that causes it
            if len(items) == 1:
                log.warning("inference failed: %s", e)
                if not items[0].future.done():
                    items[0].future.set_exception(e)
                return
            log.warning("batched inference of %d images failed (%s); retrying one by one", len(items), e)
            for item in items:
                await self._run_batch([item], loop)
            return
        if self.metrics:
            self.metrics.batch_size.observe(len(items))
            self.metrics.batch_seconds.observe(time.perf_counter() - start)
        for item, row in zip(items, out):
            if not item.future.done():
                item.future.set_result(row)

    def _forward(self, xs: list[np.ndarray]) -> np.ndarray:
        batch = np.stack(xs)
        out = self.infer_fn(batch)
        if len(out) != len(xs):
            raise RuntimeError(f"model returned {len(out)} rows for a batch of {len(xs)}")
        return out
