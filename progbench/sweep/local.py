"""The local executor: a sweep's units on this machine, in phases (image stores, feature stores,
LP cells, streamed cells), each phase on `workers` processes.

One worker runs in this process (no subprocess). Several workers are processes of a pool that
dies with the command (progbench.workers); each takes its share of the CPU threads, and with
`gpus` one worker runs per listed GPU, with `CUDA_VISIBLE_DEVICES` set to it before torch starts.
Two workers never build the same store or compute the same run: stores and runs are locked
(progbench.cache.store, progbench.runs.lifecycle), and a lock whose holder died is taken over.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass

from progbench.locking import set_notice, tell
from progbench.sweep.execute import Unit, UnitResult, run_unit, run_unit_from_file
from progbench.sweep.spec import Sweep
from progbench.workers import worker_pool

OnResult = Callable[[UnitResult], None]
GPU_ENV = "CUDA_VISIBLE_DEVICES"
NOTICE_POLL_S = 1.0  # how often the command passes on its workers' lock-wait notices


@dataclass(frozen=True)
class LocalExecutor:
    workers: int = 1
    gpus: tuple[str, ...] = ()

    @property
    def n_workers(self) -> int:
        return len(self.gpus) if self.gpus else max(1, self.workers)

    @property
    def threads(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.n_workers)


def _init_worker(
    gpus: multiprocessing.Queue | None, threads: int, notices: multiprocessing.Queue | None = None
) -> None:
    """Before torch is imported in the worker: its GPU and its share of the threads; its lock
    waits are passed on to this command (`notices`, progbench.locking)."""
    if notices is not None:
        set_notice(notices.put)
    if gpus is not None:
        os.environ[GPU_ENV] = str(gpus.get())
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _pass_on(notices: multiprocessing.Queue) -> None:
    """The workers' lock-wait notices, told here (where the command's hook prints them)."""
    while True:
        try:
            tell(notices.get_nowait())
        except queue_module.Empty:
            return
        except (OSError, ValueError):  # the queue closed with the pool
            return


def run_phases(
    sweep: Sweep, phases: Sequence[Sequence[Unit]], executor: LocalExecutor, on_result: OnResult
) -> list[UnitResult]:
    """Run every phase in order (a phase starts when the previous one has ended)."""
    results: list[UnitResult] = []
    if executor.n_workers == 1 and not executor.gpus:
        for phase in phases:
            for unit in phase:
                results.append(run_unit(sweep, unit))
                on_result(results[-1])
        return results
    ctx = multiprocessing.get_context("forkserver")
    queue = None
    if executor.gpus:
        queue = ctx.Queue()
        for g in executor.gpus:
            queue.put(g)
    notices = ctx.Queue()
    pool = worker_pool(executor.n_workers, _init_worker, (queue, executor.threads, notices))
    try:
        for phase in phases:
            pending: set[Future[UnitResult]] = {
                pool.submit(run_unit_from_file, str(sweep.source), str(sweep.root), u)
                for u in phase
            }
            while pending:
                done, pending = wait(pending, timeout=NOTICE_POLL_S, return_when=FIRST_COMPLETED)
                _pass_on(notices)
                for future in done:
                    results.append(future.result())
                    on_result(results[-1])
    except BaseException:
        # Ctrl-C or a broken pool: don't wait for running units; the workers end with us.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results
