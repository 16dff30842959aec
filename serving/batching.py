"""Dynamic batching: requests for the same model / version / signature are merged into one model call.

A queue per (model, version, signature). `num_batch_threads` workers per queue take the oldest request and every
compatible request behind it (same input names, dtypes and non-batch dimensions: variable-length inputs of a
different length wait for their own batch, nothing is padded), up to `max_batch_size` rows; a worker waits at most
`batch_timeout_micros` after the oldest request arrived for the batch to fill. The merged call runs in the thread
executor, off the event loop; the outputs are split back by rows. Requests that cannot be batched (no leading batch
dimension, inputs of different leading sizes, more rows than max_batch_size) are run on their own by the caller.
If a merged call fails, each request in it is re-run on its own so one bad request does not fail its neighbours.
"""
import asyncio
import collections
import dataclasses
import os

import numpy as np


def batch_key(inputs):
    """Compatibility key of a request's inputs; None when they have no common leading (batch) dimension."""
    rows = None
    parts = []
    for name in sorted(inputs):
        a = inputs[name]
        if a.ndim == 0:
            return None, 0
        if rows is None:
            rows = a.shape[0]
        elif a.shape[0] != rows:
            return None, 0
        parts.append((name, a.dtype.str, a.shape[1:]))
    if not rows:
        return None, 0
    return tuple(parts), rows


@dataclasses.dataclass
class _Item:
    key: tuple
    rows: int
    inputs: dict
    future: asyncio.Future
    enqueued: float


class _Queue:
    def __init__(self):
        self.items = collections.deque()
        self.cond = asyncio.Condition()
        self.workers = []


class BatchStats:
    def __init__(self, keep=10000):
        self.calls = 0              # merged model calls made
        self.requests = 0           # requests that went through the batcher
        self.batch_sizes = collections.deque(maxlen=keep)   # rows per merged call, most recent last
        self.requests_per_batch = collections.deque(maxlen=keep)


class Batcher:
    def __init__(self, executor, max_batch_size=32, batch_timeout_micros=1000, num_batch_threads=1):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.timeout_s = max(0, batch_timeout_micros) / 1e6
        self.num_batch_threads = max(1, num_batch_threads or os.cpu_count() or 1)   # 0: one per CPU, as TF Serving
        self.queues = {}
        self.stats = BatchStats()
        self._closed = False
        self.idle_exit_s = 30.0

    def can_batch(self, inputs):
        key, rows = batch_key(inputs)
        return key is not None and rows <= self.max_batch_size

    async def submit(self, queue_key, run_fn, inputs):
        """Queue `inputs` (dict of arrays with a common leading dimension) for `run_fn(merged_inputs) -> outputs`.

        `queue_key` names the model/version/signature; `run_fn` must be the same callable for one queue_key.
        Returns this request's slice of the outputs.
        """
        key, rows = batch_key(inputs)
        assert key is not None
        loop = asyncio.get_running_loop()
        q = self.queues.get(queue_key)
        if q is None:
            q = self.queues[queue_key] = _Queue()
            q.workers = [loop.create_task(self._worker(queue_key, q, run_fn))
                         for _ in range(self.num_batch_threads)]
        item = _Item(key, rows, inputs, loop.create_future(), loop.time())
        q.items.append(item)
        self.stats.requests += 1
        async with q.cond:
            q.cond.notify_all()
        return await item.future

    def _ready_rows(self, q, key):
        return sum(it.rows for it in q.items if it.key == key and not it.future.done())

    async def _worker(self, queue_key, q, run_fn):
        loop = asyncio.get_running_loop()
        while not self._closed:
            async with q.cond:
                while not q.items:
                    if self.queues.get(queue_key) is not q:
                        return
                    try:
                        await asyncio.wait_for(q.cond.wait(), self.idle_exit_s)
                    except (asyncio.TimeoutError, TimeoutError):
                        if not q.items and self.queues.get(queue_key) is q:
                            # idle: drop the queue (and with it the reference to the model version)
                            del self.queues[queue_key]
                            q.cond.notify_all()
                            return
                first = q.items[0]
                if first.future.done():      # cancelled while queued
                    q.items.popleft()
                    continue
                # wait for the batch to fill, at most timeout after the oldest request arrived
                while self._ready_rows(q, first.key) < self.max_batch_size:
                    remaining = first.enqueued + self.timeout_s - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        await asyncio.wait_for(q.cond.wait(), remaining)
                    except (asyncio.TimeoutError, TimeoutError):
                        break
                if not q.items or q.items[0] is not first:   # another worker took it
                    continue
                batch, rows, keep = [], 0, collections.deque()
                for it in q.items:
                    if it.future.done():
                        continue
                    if it.key == first.key and rows + it.rows <= self.max_batch_size:
                        batch.append(it)
                        rows += it.rows
                    else:
                        keep.append(it)
                q.items = keep
            if batch:
                await self._run_batch(batch, rows, run_fn, loop)

    async def _run_batch(self, batch, rows, run_fn, loop):
        if len(batch) == 1:
            merged = batch[0].inputs
        else:
            merged = {n: np.concatenate([it.inputs[n] for it in batch], axis=0) for n in batch[0].inputs}
        self.stats.calls += 1
        self.stats.batch_sizes.append(rows)
        self.stats.requests_per_batch.append(len(batch))
        try:
            outputs = await loop.run_in_executor(self.executor, run_fn, merged)
        except Exception as e:  # noqa: BLE001 - passed on to the requests
            if len(batch) == 1:
                _set_exception(batch[0].future, e)
                return
            outputs = None
        if outputs is not None and all(np.ndim(v) >= 1 and v.shape[0] == rows for v in outputs.values()):
            offset = 0
            for it in batch:
                _set_result(it.future, {n: v[offset:offset + it.rows] for n, v in outputs.items()})
                offset += it.rows
            return
        # merged call failed, or outputs without a batch dimension: run each request on its own
        for it in batch:
            try:
                _set_result(it.future, await loop.run_in_executor(self.executor, run_fn, it.inputs))
            except Exception as e:  # noqa: BLE001
                _set_exception(it.future, e)

    async def close(self):
        self._closed = True
        tasks = [t for q in self.queues.values() for t in q.workers]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for q in self.queues.values():
            for it in q.items:
                if not it.future.done():
                    it.future.cancel()


def _set_result(fut, value):
    if not fut.done():
        fut.set_result(value)


def _set_exception(fut, exc):
    if not fut.done():
        fut.set_exception(exc)
