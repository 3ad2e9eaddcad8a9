"""Writing a report folder: refuse folders that hold something else, write every file
atomically, drop the previous build's files that this one lacks, write the manifest last."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from progbench.atomic import atomic_write_bytes
from progbench.errors import ConfigError

MANIFEST = "report-manifest.json"


def check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} is a file", "Give a folder for the report.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise ConfigError(
            f"--out {out_dir} is not empty and holds no progbench report ({MANIFEST} is missing)",
            "Give an empty or new folder, or the folder of an earlier report to update it.",
        )


def _previous(manifest: Path) -> dict[str, str]:
    if not manifest.is_file():
        return {}
    try:
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return files if isinstance(files, dict) else {}


def _remove_stale(out_dir: Path, rel: str) -> None:
    """Remove a file of the previous build, and the folders it leaves empty."""
    # Only names this module writes, never a path that leaves the folder.
    if ".." in Path(rel).parts or Path(rel).is_absolute():
        return
    stale = out_dir / rel
    if not stale.is_file():
        return
    stale.unlink()
    parent = stale.parent
    while parent != out_dir and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent


def publish(out_dir: Path, files: dict[str, bytes]) -> list[Path]:
    """Write `files` (relative path -> bytes) under `out_dir`; returns the paths written."""
    manifest = out_dir / MANIFEST
    old = _previous(manifest)
    written = []
    for rel in sorted(files):
        path = out_dir / rel
        atomic_write_bytes(path, files[rel])
        written.append(path)
    for rel in sorted(set(old) - set(files)):
        _remove_stale(out_dir, rel)
    digests = {rel: hashlib.sha256(files[rel]).hexdigest() for rel in sorted(files)}
    atomic_write_bytes(
        manifest, (json.dumps({"files": digests}, indent=2, sort_keys=True) + "\n").encode()
    )
    return written
