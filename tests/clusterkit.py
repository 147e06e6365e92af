"""A real Dask cluster on loopback for the audit tests: a scheduler and workers, each its own
process (``python -m distributed.cli.dask_scheduler`` / ``dask_worker``), started and stopped
by the test. Workers run without a nanny, so a worker the test kills stays dead. Also: finding
the local pool's worker processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

START_TIMEOUT_S = 60.0


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def kill_worker(self, index: int = 0) -> None:
        """SIGKILL one worker: no goodbye to the scheduler, its running tasks are lost."""
        self.workers[index].send_signal(signal.SIGKILL)
        self.workers[index].wait(timeout=30)


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )


@contextmanager
def dask_cluster(tmp: Path, workers: int = 2) -> Iterator[Cluster]:
    """A scheduler on 127.0.0.1 (a free port) and ``workers`` one-thread workers."""
    scheduler_file = tmp / "scheduler.json"
    scheduler = _spawn(
        [
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ],
        tmp / "scheduler.log",
    )
    cluster = Cluster(address="", scheduler=scheduler)
    try:
        cluster.address = _address(scheduler_file, scheduler, tmp / "scheduler.log")
        for i in range(workers):
            cluster.workers.append(
                _spawn(
                    [
                        "distributed.cli.dask_worker",
                        cluster.address,
                        "--nthreads",
                        "1",
                        "--no-nanny",
                        "--no-dashboard",
                        "--name",
                        f"w{i}",
                    ],
                    tmp / f"worker{i}.log",
                )
            )
        _wait_for_workers(cluster.address, workers)
        yield cluster
    finally:
        for process in [*cluster.workers, scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*cluster.workers, scheduler]:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _address(path: Path, scheduler: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            raise RuntimeError(f"the scheduler exited: {log.read_text()[-2000:]}")
        if path.exists():
            try:
                return str(json.loads(path.read_text())["address"])
            except (json.JSONDecodeError, KeyError):
                pass  # being written
        time.sleep(0.1)
    raise RuntimeError("the scheduler did not start in time")


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client  # noqa: PLC0415

    with Client(address, timeout=START_TIMEOUT_S, set_as_default=False) as client:
        client.wait_for_workers(count, timeout=START_TIMEOUT_S)


def spawned_workers(parent: psutil.Process) -> list[psutil.Process]:
    """The local pool's workers under ``parent`` (``LocalExecutor`` starts them by spawn: their
    command line runs ``multiprocessing.spawn.spawn_main``; the resource tracker's does not)."""
    found = []
    for child in parent.children():
        with contextlib.suppress(psutil.Error):
            if any("spawn_main" in part for part in child.cmdline()):
                found.append(child)
    return found
