"""The resumable store protocol shared by the image store and the feature store.

A store is a Zarr v3 group at `<kind root>/<key>.zarr`: a data array (`images` or `features`)
chunked along rows, `image_id`, a `done` mask, and attrs (its key and provenance). Building:

1. **Lock.** A file lock beside the store (`<key>.zarr.lock`, fcntl: released when its holder
   dies) serialises builders of one key; a second one waits, saying so and for whom (the
   holder's pid and host, from `<key>.zarr.lock.holder`), then finds the work done.
2. **Atomic creation.** An empty store is made under a temporary name and renamed into place,
   so a kill during creation leaves nothing a rerun has to clean; a store left half-made by an
   older version (no key) is taken over.
3. **Resume.** Rows are written a chunk at a time, then marked in `done`; a rerun computes the
   rows not done. Before reuse, every done row's chunk must exist on disk: rows of a missing
   chunk are marked not done and recomputed (Zarr would read a missing chunk as zeros). A
   feature store (small) is also read back chunk by chunk before reuse (`bad_chunks`, the
   check `cache verify` makes): rows of a truncated or corrupt chunk are recomputed too.
4. **Complete** is set last.

Every array is written with a crc32c checksum per chunk (Zarr's `crc32c` codec), so a damaged
chunk fails on read with a CacheError that names the store and the rows, instead of returning
garbage or a raw decompression error.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.core.buffer import Buffer
from zarr.storage import LocalStore

from progbench.cache.paths import cache_root
from progbench.errors import CacheError
from progbench.locking import NamedLock

COMPRESSORS = (ZstdCodec(level=0), Crc32cCodec())


def create_array(
    group: zarr.Group,
    name: str,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    dtype: Any,
    fill: Any,
) -> zarr.Array:
    return group.create_array(
        name, shape=shape, chunks=chunks, dtype=dtype, fill_value=fill, compressors=COMPRESSORS
    )


def array_in(group: zarr.Group, name: str) -> zarr.Array:
    """`group[name]`, which must be an array (a store's data, `image_id`, `done`)."""
    found = group[name]
    if not isinstance(found, zarr.Array):
        raise CacheError(
            f"store {group.store_path}: {name!r} is a group, not an array",
            "The store is damaged; remove it with `progbench cache rm` and build it again.",
        )
    return found


def write_strings(group: zarr.Group, name: str, values: list[str] | np.ndarray) -> zarr.Array:
    arr = group.create_array(name, shape=(len(values),), dtype=str, compressors=COMPRESSORS)
    arr[:] = np.asarray([str(v) for v in values])
    return arr


def read_strings(array: zarr.Array) -> np.ndarray:
    """A Zarr string array as a numpy object array of Python str."""
    return np.array([str(v) for v in np.asarray(array[:]).tolist()], dtype=object)


class NamedLocalStore(LocalStore):
    """A LocalStore whose failed writes name the file: zarr's own say only "No space left on
    device", so a full disk could not be told apart from any other."""

    async def set(self, key: str, value: Buffer) -> None:
        try:
            await super().set(key, value)
        except OSError as err:
            if err.filename is not None:
                raise
            raise OSError(err.errno, err.strerror or str(err), str(self.root / key)) from err


def open_writable(path: Path) -> zarr.Group:
    return zarr.open_group(NamedLocalStore(path), mode="r+")


def lock_for(path: Path) -> NamedLock:
    """The build lock of the store at `path`; a command that must wait for it says so, naming
    the lock file and its holder (progbench.locking)."""
    kind = {"images": "image store", "features": "feature store"}.get(path.parent.name, "store")
    return NamedLock(str(path) + ".lock", f"{kind} {path.stem}")


def rebuild_hint(path: Path, attrs: dict[str, Any]) -> str:
    """The command that repairs a damaged or incomplete store (in the cache root it is in)."""
    root = path.parent.parent
    where = "" if root == cache_root() else f" --cache-dir {root}"
    return (
        f"Repair it with `progbench cache verify {path.stem} --repair{where}` (it recomputes "
        f"the damaged rows), or rebuild it: {rebuild_command(attrs)}{where}"
    )


def rebuild_command(attrs: dict[str, Any]) -> str:
    manifest = attrs.get("manifest", "MANIFEST")
    if "feature" in str(attrs.get("kind", "")):
        size = (attrs.get("transform") or {}).get("store_size", 224)
        return (
            f"progbench extract {manifest} --backbone {attrs.get('backbone')} --weights "
            f"{attrs.get('weights')} --image-size {size}"
        )
    crop = "" if attrs.get("crop", True) else " --no-crop"
    equalize = " --equalize" if attrs.get("equalize") else ""
    return f"progbench cache images {manifest} --size {attrs.get('size', 224)}{crop}{equalize}"


def chunk_folder(array: zarr.Array) -> Path:
    """The folder of an array's chunk files (`<array>/c`, one entry per chunk along rows)."""
    store = array.store
    if not isinstance(store, LocalStore):
        raise TypeError(f"{array.path}: chunk files need a local store, not {store!r}")
    return Path(store.root) / array.path / "c"


def chunk_present(array: zarr.Array) -> np.ndarray:
    """For each chunk along the first axis, whether every one of its chunk files exists."""
    root = chunk_folder(array)
    n = array.cdata_shape[0]
    present = np.zeros(n, dtype=bool)
    if not root.is_dir():
        return present
    rest = array.cdata_shape[1:]
    for entry in os.scandir(root):
        if entry.name.isdigit() and int(entry.name) < n:
            i = int(entry.name)
            present[i] = _all_files(Path(entry.path), rest)
    return present


def _all_files(folder: Path, rest: tuple[int, ...]) -> bool:
    if not rest:
        return folder.is_file()
    return all(_all_files(folder / str(j), rest[1:]) for j in range(rest[0]))


def missing_rows(group: zarr.Group, data: str) -> np.ndarray:
    """Rows marked done whose data chunk is gone from disk."""
    array = array_in(group, data)
    rows_per_chunk = array.chunks[0]
    present = np.repeat(chunk_present(array), rows_per_chunk)[: array.shape[0]]
    done = np.asarray(array_in(group, "done")[:])
    return np.flatnonzero(done & ~present)


def repair_missing(group: zarr.Group, data: str) -> int:
    """Mark the rows of missing chunks not done (and the store incomplete); how many rows."""
    rows = missing_rows(group, data)
    if len(rows):
        done = np.asarray(array_in(group, "done")[:])
        done[rows] = False
        array_in(group, "done")[:] = done
        group.attrs["complete"] = False
    return len(rows)


def bad_chunks(
    array: zarr.Array,
    only: np.ndarray | None = None,
    inspect: Callable[[slice, np.ndarray], None] | None = None,
) -> tuple[list[int], list[int]]:
    """(missing, corrupt): the chunks along the rows whose files are gone, and those that cannot
    be read back (a crc32c mismatch, a truncated or undecodable file). Every chunk is read, as
    every reader of the store does (`read_checked`); `only` (one bool per chunk) limits the check
    to those chunks, `inspect(rows, block)` sees each block that reads.

    The one check of a store's data before it is trusted: `extract` makes it before reusing a
    feature store (the rows of bad chunks are recomputed, `repair_damaged`), `cache verify`
    reports it (`--repair` recomputes them), and `train` meets the same checksums on read."""
    step, n = array.chunks[0], array.cdata_shape[0]
    present = chunk_present(array)
    missing, corrupt = [], []
    for c in range(n):
        if only is not None and not only[c]:
            continue
        rows = slice(c * step, min((c + 1) * step, array.shape[0]))
        if not present[c]:
            missing.append(c)
            continue
        try:
            block = np.asarray(array[rows])
        except Exception:  # a checksum mismatch, a truncated chunk file, an I/O error
            corrupt.append(c)
            continue
        if inspect is not None:
            inspect(rows, block)
    return missing, corrupt


def repair_damaged(group: zarr.Group, data: str) -> int:
    """Mark the rows of done chunks that are missing or cannot be read (`bad_chunks`) not done,
    and the store incomplete, so that a build recomputes them; how many rows."""
    array = array_in(group, data)
    step = array.chunks[0]
    done = np.asarray(array_in(group, "done")[:])
    padded = np.zeros(array.cdata_shape[0] * step, dtype=bool)
    padded[: len(done)] = done
    missing, corrupt = bad_chunks(array, only=np.asarray(padded.reshape(-1, step).any(axis=1)))
    bad = np.zeros(len(done), dtype=bool)
    for c in missing + corrupt:
        bad[c * step : (c + 1) * step] = True
    rows = np.flatnonzero(done & bad)
    if len(rows):
        done[rows] = False
        array_in(group, "done")[:] = done
        group.attrs["complete"] = False
    return len(rows)


def open_for_build(path: Path, key: str, create: Callable[[Path], None]) -> zarr.Group:
    """The store at `path` opened for writing, created atomically when absent. The caller holds
    `lock_for(path)`. A store of another key at this path is refused by name."""
    if (path / "zarr.json").is_file():
        group = open_writable(path)
        found = group.attrs.get("key")
        if found == key:
            return group
        if found is not None:
            raise CacheError(
                f"store {path} holds key {found!r}, expected {key!r}",
                f"It was renamed or damaged; remove it with `progbench cache rm {path.stem}`.",
            )
    if path.exists():  # half-made by a killed build: nothing of it is worth keeping
        shutil.rmtree(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        create(tmp)
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is not None and not str(err.filename).startswith(str(tmp)):
            raise
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return open_writable(path)


def discard_if_empty(path: Path) -> bool:
    """Remove a store in which no row was ever done (a failed build leaves nothing behind)."""
    try:
        done = np.asarray(array_in(zarr.open_group(path, mode="r"), "done")[:])
    except Exception:  # unreadable: nothing in it can be reused either
        done = np.zeros(1, dtype=bool)
    if done.any():
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


def open_complete(path: Path, data: str, what: str, build_hint: str) -> zarr.Group:
    """A complete, intact store opened for reading (every chunk of its data on disk)."""
    if not (path / "zarr.json").is_file():
        raise CacheError(f"no {what} at {path}", build_hint)
    group = zarr.open_group(path, mode="r")
    attrs = dict(group.attrs)
    if not attrs.get("complete"):
        raise CacheError(
            f"{what} {path} is incomplete", f"Run it again to finish it: {rebuild_command(attrs)}"
        )
    missing = missing_rows(group, data)
    if len(missing):
        raise CacheError(
            f"{what} {path} is damaged: the chunks of {len(missing)} row(s) are missing "
            f"(rows {_ranges(missing)})",
            rebuild_hint(path, attrs),
        )
    return group


READ_ERRORS = (ValueError, RuntimeError, OSError)  # checksum, decompression, I/O


def read_checked(
    array: zarr.Array, selection: Any, path: Path, attrs: dict[str, Any]
) -> np.ndarray:
    """`array[selection]`, with a damaged chunk reported by store and rows."""
    try:
        return np.asarray(array[selection])
    except READ_ERRORS as err:
        raise CacheError(
            f"store {path}: damaged {array.path!r} chunk(s), {_damaged(array, selection)} "
            f"({type(err).__name__}: {str(err).splitlines()[0][:120]})",
            rebuild_hint(path, attrs),
        ) from err


def _damaged(array: zarr.Array, selection: Any) -> str:
    """'rows A-B, C': the rows of the chunks of `selection` that fail to read."""
    if not isinstance(selection, slice):
        return "in the rows read"
    start, stop, _ = selection.indices(array.shape[0])
    step = array.chunks[0]
    bad: list[int] = []
    for lo in range(start - start % step, stop, step):
        hi = min(lo + step, array.shape[0])
        try:
            array[lo:hi]
        except READ_ERRORS:
            bad.extend(range(lo, hi))
    return f"rows {_ranges(np.asarray(bad))}" if bad else f"in rows {start}-{stop - 1}"


def _ranges(rows: np.ndarray, limit: int = 5) -> str:
    rows = np.sort(rows)
    out, start = [], rows[0]
    for a, b in zip(rows, np.append(rows[1:], -1), strict=True):
        if b != a + 1:
            out.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ", ".join(out[:limit]) + (
        f" and {len(out) - limit} more ranges" if len(out) > limit else ""
    )
