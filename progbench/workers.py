"""Process pools whose workers die with the process that started them.

A `kill -9` of a progbench command must not leave its workers running (they would keep
writing runs and holding the caller's pipes open). forkserver workers are children of the
fork server, not of the command, so no parent-death signal reaches them: each worker watches
the command's process (pid and start time, against pid reuse) and exits as soon as it is gone.
Workers ignore SIGINT: Ctrl-C is handled once, by the command, which shuts the pool down.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import psutil

WATCH_INTERVAL_S = 0.5


def _parent_alive(pid: int, started: float) -> bool:
    try:
        return psutil.Process(pid).create_time() == started
    except psutil.NoSuchProcess:
        return False


def _watch(pid: int, started: float) -> None:
    while _parent_alive(pid, started):
        time.sleep(WATCH_INTERVAL_S)
    os._exit(1)  # the command is gone: nothing of ours needs this worker any more


def _init_worker(
    pid: int, started: float, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch, args=(pid, started), daemon=True, name="parent-watch").start()
    if initializer is not None:
        initializer(*initargs)


def worker_pool(
    n_workers: int,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple[Any, ...] = (),
) -> ProcessPoolExecutor:
    """A forkserver process pool (safe after torch or zarr threads started in this process)."""
    me = psutil.Process()
    return ProcessPoolExecutor(
        n_workers,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_init_worker,
        initargs=(me.pid, me.create_time(), initializer, initargs),
    )
