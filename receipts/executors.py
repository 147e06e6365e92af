"""Where an audit's checks run: this process, a local process pool, or a Dask cluster.

Audit layer, under ``receipts.audit.run_audit``: each executor takes the same ``Task`` values
and runs the same pure function (``receipts.audit.check_batch``) on them, and hands back every
task's ``ItemResult`` keyed by the task's index. Results are therefore the same whichever
executor ran them, however many workers it had and in whatever order batches finished.

A worker that dies loses only the batches it had not returned. The process pool starts a new
pool for those (``attempts`` rounds); Dask reschedules them itself on the workers left. A batch
that finished twice (a worker died after its result was sent) is keyed by task index, so it is
counted once. A task no attempt could finish is reported unchecked, never dropped.

    results = LocalExecutor(workers=2).run(config, tasks, done=lambda n: None)
    results = DaskExecutor("tcp://10.0.0.5:8786").run(config, tasks, done=lambda n: None)
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import pickle
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from receipts.audit import Task, WorkerConfig, check_batch, unchecked_task
from receipts.errors import SchedulerError
from receipts.scorecard import ItemResult

BATCH = 32  # tasks per unit of work: amortizes pickling and scheduling, keeps losses small


def batches(tasks: Sequence[Task], size: int) -> Iterator[Sequence[Task]]:
    for start in range(0, len(tasks), size):
        yield tasks[start : start + size]


class InlineExecutor:
    """Every check in this process, one after another (one worker, no start-up cost)."""

    def describe(self) -> str:
        return "1 worker (this process)"

    def start(self) -> None:
        """Nothing to reach."""

    def run(
        self, config: WorkerConfig, tasks: Sequence[Task], done: Callable[[int], None]
    ) -> dict[int, ItemResult]:
        results: dict[int, ItemResult] = {}
        for batch in batches(tasks, BATCH):
            results.update(check_batch(config, batch))
            done(len(batch))
        return results


class LocalExecutor:
    """A pool of ``workers`` processes on this machine, started by spawn: each worker is a new
    interpreter (no onnxruntime thread pool copied from the parent) with the parent's module
    path. Not forkserver: Python 3.11's forkserver imports its preloads with the working
    folder first on the path, so a folder named ``receipts`` there (a folder of receipts!)
    shadowed this package and every worker failed to start (ADR 0010)."""

    def __init__(self, workers: int, *, batch: int = BATCH, attempts: int = 3) -> None:
        if not 1 <= workers <= 1024:
            raise ValueError("workers must be 1..1024")
        self.workers, self.batch, self.attempts = workers, batch, attempts

    def describe(self) -> str:
        return f"{self.workers} local worker process{'es' if self.workers > 1 else ''}"

    def start(self) -> None:
        """Nothing to reach: the pool starts with the work."""

    def run(
        self, config: WorkerConfig, tasks: Sequence[Task], done: Callable[[int], None]
    ) -> dict[int, ItemResult]:
        results: dict[int, ItemResult] = {}
        pending = list(tasks)
        context = multiprocessing.get_context("spawn")
        for attempt in range(self.attempts):
            if not pending:
                break
            try:
                with ProcessPoolExecutor(self.workers, mp_context=context) as pool:
                    if attempt == 0:
                        self._started(pool)
                    futures = {
                        pool.submit(check_batch, config, batch): len(batch)
                        for batch in batches(pending, self.batch)
                    }
                    for future in as_completed(futures):
                        for index, result in future.result():
                            results.setdefault(index, result)
                        done(futures[future])
            except BrokenProcessPool:
                pass  # a worker died: what it had not returned runs again in a new pool
            pending = [t for t in pending if t.index not in results]
        for task in pending:
            results[task.index] = unchecked_task(
                task, f"a worker process died while checking it ({self.attempts} attempts)"
            )
        return results

    def _started(self, pool: ProcessPoolExecutor) -> None:
        """Raise ``SchedulerError`` if the pool's workers cannot even start (they could not
        import this package): otherwise every receipt would come back "unchecked", the audit
        would exit 0, and a failed receipt would go unseen."""
        try:
            pool.submit(_ready).result()
        except BrokenProcessPool as e:
            raise SchedulerError(
                f"the {self.describe()} could not start (the workers' own error is above)"
            ) from e


def _ready() -> bool:
    """A pool worker's first task: that it started and imported this module."""
    return True


class DaskExecutor:
    """The workers of a Dask distributed cluster at ``address`` (``tcp://host:port``). Every
    worker must be able to import this package and read the store at the same path."""

    def __init__(self, address: str, *, batch: int = BATCH, timeout_s: float = 10.0) -> None:
        self.address, self.batch, self.timeout_s = address, batch, timeout_s

    def describe(self) -> str:
        return f"Dask cluster at {self.address}"

    def start(self) -> None:
        """Ask the address who it is, within ``timeout_s`` whatever answers there, before any
        receipt is read: ``distributed.Client`` retries a refused connection for its whole
        timeout, waits forever on a peer that accepts but does not speak Dask (an HTTP server
        on that port), or fails on it with whatever parsing its reply raised."""
        rpc = _distributed().core.rpc

        async def identity() -> object:
            remote = rpc(self.address, timeout=self.timeout_s)
            try:
                return await remote.identity()
            finally:
                await remote.close_rpc()

        try:
            answer = asyncio.run(asyncio.wait_for(identity(), self.timeout_s))
        except Exception as e:
            why = f"{type(e).__name__}: {e}" if str(e) else f"no answer in {self.timeout_s:g} s"
            raise SchedulerError(f"cannot reach the Dask scheduler at {self.address}: {why}") from e
        if not isinstance(answer, dict) or answer.get("type") != "Scheduler":
            kind = answer.get("type") if isinstance(answer, dict) else None
            raise SchedulerError(f"{self.address} is not a Dask scheduler (it says {kind!r})")

    def run(
        self, config: WorkerConfig, tasks: Sequence[Task], done: Callable[[int], None]
    ) -> dict[int, ItemResult]:
        distributed = _distributed()
        try:
            client = distributed.Client(self.address, timeout=self.timeout_s, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise SchedulerError(f"cannot reach the Dask scheduler at {self.address}: {e}") from e
        token = hashlib.sha256(pickle.dumps(config)).hexdigest()[:16]
        results: dict[int, ItemResult] = {}
        with client:
            work = list(batches(tasks, self.batch))
            futures = {
                client.submit(check_batch, config, batch, key=f"receipts-audit-{token}-{i}"): batch
                for i, batch in enumerate(work)
            }
            for future in distributed.as_completed(futures, loop=client.loop):
                batch = futures[future]
                try:
                    pairs = future.result()
                except distributed.KilledWorker:
                    reason = "Dask workers died while checking it (the scheduler gave up)"
                    pairs = [(t.index, unchecked_task(t, reason)) for t in batch]
                except (OSError, TimeoutError) as e:
                    raise SchedulerError(f"lost the Dask scheduler at {self.address}: {e}") from e
                for index, result in pairs:
                    results.setdefault(index, result)
                done(len(batch))
        return results


def _distributed() -> Any:
    try:
        import distributed  # noqa: PLC0415 - only a cluster audit needs it
        import distributed.core  # noqa: PLC0415
    except ImportError as e:
        raise SchedulerError(
            "Dask distributed is not installed (pip install 'inference-receipts[cluster]')"
        ) from e
    return distributed
