"""Content digests of input files (sha256), remembered by path and by what a file's status says
about its content: size, modification time, status-change time and inode.

An image store is keyed by what its files hold, not by their names or sizes: a DICOM edited in
place at the same size must not reuse the old pixels. Hashing a cohort once costs a read of
every file; after that a file whose status is unchanged is not read again. Size and mtime alone
are not enough: a user (or a tool that preserves timestamps) can restore both after editing a
file. The status-change time (`st_ctime_ns`) cannot be set by hand: the kernel moves it to now
on every write, `utime`, `chmod` or rename, and a file replaced by another has another inode
(`st_ino`). A file whose status changed within the last `RACY_S` seconds is hashed but not
remembered (an edit in the same clock tick would leave every field equal, Git's "racy" files).

The memory is an SQLite table in the cache root (safe for concurrent commands). Its table is
versioned by name (`digests_v2`); entries of an older format are never read, so they simply miss
and the files are hashed again.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

from progbench.cache.paths import cache_root

DB_NAME = "file-digests.sqlite"
TABLE = "digests_v2"  # v1 ("digests"): path, size, mtime only; never read again
RACY_S = 2.0  # a file whose status changed this recently is hashed every time
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _connect(db_path: Path) -> sqlite3.Connection:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(db_path, timeout=60)
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (path TEXT PRIMARY KEY, size INTEGER, "
        "mtime_ns INTEGER, ctime_ns INTEGER, ino INTEGER, sha256 TEXT)"
    )
    return db


@contextmanager
def _named_errors(db_path: Path) -> Iterator[None]:
    """SQLite's errors (a full disk, a read-only folder) as OSErrors naming the database, so
    the command line reports them in one line like any other file it cannot write."""
    try:
        yield
    except sqlite3.OperationalError as err:
        text = str(err)
        code = errno.ENOSPC if "full" in text else errno.EROFS if "readonly" in text else errno.EIO
        raise OSError(code, text, str(db_path)) from err


def file_digests(paths: Sequence[Path], cache_dir: str | Path | None = None) -> list[str]:
    """sha256 of each file, read again whenever its size, mtime, ctime or inode changed since
    the last time."""
    db_path = cache_root(cache_dir) / DB_NAME
    with _named_errors(db_path):
        return _digests(paths, db_path)


Status = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode


def _status(st: os.stat_result) -> Status:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _digests(paths: Sequence[Path], db_path: Path) -> list[str]:
    settled = time.time_ns() - int(RACY_S * 1e9)
    stats = [_status(os.stat(p)) for p in paths]
    keys = [str(Path(p).resolve()) for p in paths]
    with closing(_connect(db_path)) as db:
        known: dict[str, tuple[Status, str]] = {}
        for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            for path, size, mtime, ctime, ino, digest in db.execute(
                f"SELECT path, size, mtime_ns, ctime_ns, ino, sha256 FROM {TABLE} "
                f"WHERE path IN ({marks})",
                part,
            ):
                known[path] = ((size, mtime, ctime, ino), digest)
        out, fresh = [], []
        for key, st in zip(keys, stats, strict=True):
            hit = known.get(key)
            if hit is not None and hit[0] == st:
                out.append(hit[1])
                continue
            digest = file_sha256(Path(key))
            out.append(digest)
            if max(st[1], st[2]) < settled:
                fresh.append((key, *st, digest))
        if fresh:
            with db:
                db.executemany(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?)", fresh)
    return out
