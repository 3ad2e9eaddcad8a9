"""Content digests of input files (sha256), remembered by path, size and modification time.

An image store is keyed by what its files hold, not by their names or sizes: a DICOM edited in
place at the same size must not reuse the old pixels. Hashing a cohort once costs a read of
every file; after that a file whose size and mtime are unchanged is not read again. The memory
is an SQLite table in the cache root (safe for concurrent commands).
"""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

from progbench.cache.paths import cache_root

DB_NAME = "file-digests.sqlite"
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
        "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, "
        "mtime_ns INTEGER, sha256 TEXT)"
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
    """sha256 of each file, read only when its size or mtime changed since the last time."""
    db_path = cache_root(cache_dir) / DB_NAME
    with _named_errors(db_path):
        return _digests(paths, db_path)


def _digests(paths: Sequence[Path], db_path: Path) -> list[str]:
    stats = [os.stat(p) for p in paths]
    keys = [str(Path(p).resolve()) for p in paths]
    with closing(_connect(db_path)) as db:
        known: dict[str, tuple[int, int, str]] = {}
        for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            part = keys[start : start + 500]
            marks = ",".join("?" * len(part))
            for path, size, mtime, digest in db.execute(
                f"SELECT path, size, mtime_ns, sha256 FROM digests WHERE path IN ({marks})", part
            ):
                known[path] = (size, mtime, digest)
        out, fresh = [], []
        for key, st in zip(keys, stats, strict=True):
            hit = known.get(key)
            if hit is not None and hit[:2] == (st.st_size, st.st_mtime_ns):
                out.append(hit[2])
                continue
            digest = file_sha256(Path(key))
            out.append(digest)
            fresh.append((key, st.st_size, st.st_mtime_ns, digest))
        if fresh:
            with db:
                db.executemany("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?)", fresh)
    return out
