"""A command waiting for a lock another process holds says so: what it waits for (the lock file
and what it guards) and for whom (the holder's pid and host, recorded beside the lock)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from progbench.cache.store import lock_for
from progbench.locking import holder_file, read_holder, set_notice
from progbench.runs import Claims

HOLD = """
import sys, time
from pathlib import Path
from progbench.cache.store import lock_for
from progbench.runs import Claims
kind, target, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
if kind == "store":
    lock = lock_for(target)
    lock.acquire()
else:
    claims = Claims(target.parent)
    claims.wait(target)
ready.touch()
time.sleep(float(sys.argv[4]))
"""


def _holder(tmp_path: Path, kind: str, target: Path, seconds: float) -> subprocess.Popen[bytes]:
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, kind, str(target), str(ready), str(seconds)], env=env
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the holder did not start"
        time.sleep(0.05)
    return proc


@pytest.fixture
def told() -> list[str]:
    texts: list[str] = []
    set_notice(texts.append)
    yield texts
    set_notice(None)


def test_a_store_lock_wait_names_the_lock_and_its_holder(tmp_path: Path, told: list[str]) -> None:
    store = tmp_path / "features" / "3fa2c0ffee.zarr"
    store.parent.mkdir()
    proc = _holder(tmp_path, "store", store, 1.5)
    lock = lock_for(store)
    holder = read_holder(lock.lock_file)
    assert holder is not None and holder["pid"] == proc.pid
    with lock:
        assert read_holder(lock.lock_file)["pid"] == os.getpid()  # type: ignore[index]
    proc.wait(timeout=30)
    assert len(told) == 2
    assert told[0].startswith(f"waiting for feature store 3fa2c0ffee: its lock {store}.lock")
    assert f"held by pid {proc.pid} on {socket.gethostname()}" in told[0]
    assert "lock released after" in told[1]
    assert not holder_file(lock.lock_file).exists()  # released: no holder on record


def test_a_free_lock_says_nothing(tmp_path: Path, told: list[str]) -> None:
    with lock_for(tmp_path / "images" / "k.zarr"):
        pass
    assert told == []


def test_a_run_claim_wait_names_the_run(tmp_path: Path, told: list[str]) -> None:
    run_dir = tmp_path / "runs" / "fold-0"
    run_dir.mkdir(parents=True)
    proc = _holder(tmp_path, "run", run_dir, 1.0)
    claims = Claims(tmp_path / "runs")
    claims.wait(run_dir)
    claims.release_all()
    proc.wait(timeout=30)
    assert told and told[0].startswith(f"waiting for run {run_dir}")
    assert f"pid {proc.pid}" in told[0]


def test_the_cli_tells_lock_waits_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from progbench import locking
    from progbench.cli import main

    with contextlib.suppress(SystemExit):
        main(["cache", "ls", "--cache-dir", str(tmp_path)])
    assert locking._notice  # the root callback installed the hook
    locking.tell("waiting for feature store k: its lock k.lock is held by pid 1 on h")
    assert "note: waiting for feature store k" in capsys.readouterr().err
    set_notice(None)


def test_a_sweep_workers_lock_waits_reach_the_command(told: list[str]) -> None:
    """Local sweep workers are processes: their notices travel back to the command's hook."""
    import multiprocessing

    from progbench import locking
    from progbench.sweep.local import _init_worker, _pass_on
    from progbench.workers import worker_pool

    notices = multiprocessing.get_context("forkserver").Queue()
    pool = worker_pool(1, _init_worker, (None, 1, notices))
    try:
        pool.submit(locking.tell, "waiting for run r: its lock r.lock is held by pid 7").result()
    finally:
        pool.shutdown(wait=True)
    deadline = time.monotonic() + 10
    while not told and time.monotonic() < deadline:
        _pass_on(notices)
        time.sleep(0.05)
    assert told == ["waiting for run r: its lock r.lock is held by pid 7"]
