"""Who writes a feature-path grid's runs (LP, scikit-learn): two worker processes kept for the
life of the command, or one thread.

Writing a run (pandas, parquet, scikit-learn metrics) holds the GIL and costs more than solving
it, so big grids write in two processes while this one solves. A process pool costs seconds to
start (each worker imports pandas, pyarrow and scikit-learn on its first run), so it is started
once per command and reused by every later grid: a sweep's cells, or the full-data and few-shot
calls of one `train`. Small grids write in one thread unless the pool is already up. A grid that
fails or is interrupted discards the pool (its queue may hold the grid's runs); the next grid
starts another.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager

from progbench.workers import worker_pool

# Runs at or above this count are written by worker processes (measured: the 130-run
# AIforCOVID-sized grid took 10 s with a writer thread, 7 s with two processes on 2 cores).
PROCESS_WRITERS_FROM = 60
N_PROCESS_WRITERS = 2

_pool: ProcessPoolExecutor | None = None


def _discard() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


atexit.register(_discard)


@contextmanager
def feature_writer(n_runs: int) -> Iterator[Executor]:
    """The executor a grid of `n_runs` writes its runs with (see the module docstring)."""
    global _pool
    if _pool is None and n_runs < PROCESS_WRITERS_FROM:
        with ThreadPoolExecutor(1, thread_name_prefix="feature-writer") as thread:
            yield thread
        return
    if _pool is None:
        _pool = worker_pool(N_PROCESS_WRITERS)
    try:
        yield _pool
    except BaseException:
        _discard()
        raise
