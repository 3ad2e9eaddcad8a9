"""File locks that say who holds them, and a word when a command has to wait for one.

A lock (filelock's `FileLock`, fcntl: the operating system releases a dead holder's lock) is
taken without waiting when it is free. When another process holds it, the waiter is told once,
through the notice hook the CLI installs (`set_notice`), what it waits for (the lock file and
what it guards) and for whom (the holder's pid, host, command and since when, read from the
`<lock>.holder` file that every holder writes beside its lock); then it blocks until the lock is
released, and says so. Library code never prints: without a hook nobody is told.

The holder file is advisory: it is written after the lock is taken and removed before it is
released; a holder that died leaves its file behind, and the next holder overwrites it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from filelock import FileLock, Timeout

Notice = Callable[[str], None]
HOLDER_SUFFIX = ".holder"
_notice: list[Notice] = []


def set_notice(fn: Notice | None) -> None:
    """Install (or with None remove) the hook told when a lock makes a command wait."""
    _notice.clear()
    if fn is not None:
        _notice.append(fn)


def tell(text: str) -> None:
    """Pass `text` to the installed hook (a worker process passes on its parent's notices)."""
    for fn in _notice:
        fn(text)


def holder_file(lock_file: str | os.PathLike[str]) -> Path:
    return Path(str(lock_file) + HOLDER_SUFFIX)


def read_holder(lock_file: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the current holder recorded (pid, host, command, since), or None."""
    try:
        data = json.loads(holder_file(lock_file).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "a process that did not record itself"
    where = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    since = f", since {holder['since']}" if holder.get("since") else ""
    command = f" ({holder['command']})" if holder.get("command") else ""
    return where + since + command


def _record(lock_file: str) -> None:
    data = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "",
    }
    # Advisory: a read-only or full folder must not stop the work.
    with contextlib.suppress(OSError):
        holder_file(lock_file).write_text(json.dumps(data))


def _forget(lock_file: str) -> None:
    with contextlib.suppress(OSError):
        holder_file(lock_file).unlink(missing_ok=True)


def acquire(lock: FileLock, what: str) -> None:
    """Take `lock` (guarding `what`, e.g. "feature store 3fa2..."), waiting as long as its holder
    needs; when it must wait, the notice hook is told before and after."""
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = describe_holder(read_holder(lock.lock_file))
        tell(f"waiting for {what}: its lock {lock.lock_file} is held by {holder}")
        start = time.monotonic()
        lock.acquire()
        tell(f"{what}: lock released after {time.monotonic() - start:.0f} s; going on")
    _record(lock.lock_file)


def release(lock: FileLock) -> None:
    if lock.is_locked and getattr(lock, "lock_counter", 1) <= 1:
        _forget(lock.lock_file)
    lock.release()


class NamedLock:
    """A FileLock used as `with NamedLock(path, what):`: waits with a word, records its holder."""

    def __init__(self, lock_file: str | os.PathLike[str], what: str, **kwargs: Any) -> None:
        self.lock = FileLock(str(lock_file), **kwargs)
        self.what = what

    @property
    def lock_file(self) -> str:
        return str(self.lock.lock_file)

    def acquire(self, timeout: float | None = None) -> None:
        """`timeout=0` tries once (raising filelock.Timeout); None waits with a notice."""
        if timeout is None:
            acquire(self.lock, self.what)
            return
        self.lock.acquire(timeout=timeout)
        _record(self.lock_file)

    def release(self) -> None:
        release(self.lock)

    def __enter__(self) -> NamedLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
