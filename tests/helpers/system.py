"""Making the file system fail on purpose: small tmpfs mounts (full or read-only) and read-only
bind mounts, as root; callers skip when they cannot mount."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted_tmpfs(path: Path, size: str = "1m", read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs at `path` (root only), unmounted afterwards whatever happens."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs ({r.stderr.strip()}); these checks need root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def read_only_view(path: Path) -> Iterator[Path]:
    """`path` itself made read-only by a read-only bind mount over it (root only)."""
    r = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot bind-mount ({r.stderr.strip()}); this check needs root")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(mount: Path, leave: int = 0) -> Path:
    """Fill the file system at `mount`, leaving `leave` bytes (rounded to pages) free."""
    spacer = mount / "spacer"
    if leave:
        spacer.write_bytes(b"s" * leave)
    filler = mount / "filler"
    with open(filler, "ab", buffering=0) as fh:  # unbuffered: nothing left to flush on close
        block = b"f" * 4096
        try:
            while True:
                fh.write(block)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    spacer.unlink(missing_ok=True)
    return filler


def leftovers(root: Path) -> list[Path]:
    """Temporary files of atomic writers (ours: `.NAME.*.tmp`; zarr's: `*.partial`)."""
    return [p for p in root.rglob("*") if p.name.endswith((".tmp", ".partial"))]
