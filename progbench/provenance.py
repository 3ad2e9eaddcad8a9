"""Fingerprints and provenance: what produced a result, recorded in every output."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

# Libraries whose version can change a number we report.
TRACKED_LIBRARIES = (
    "progbench",
    "torch",
    "torchvision",
    "timm",
    "transformers",
    "open-clip-torch",
    "peft",
    "numpy",
    "scikit-learn",
    "zarr",
    "pydicom",
    "pillow",
)


def fingerprint(obj: Any, length: int = 16) -> str:
    """Stable short hash of a JSON-serialisable object (keys sorted, so order does not matter)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def file_digest(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    out: dict[str, str] = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The progbench source tree's commit, when it runs from a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def host_info() -> dict[str, Any]:
    return {"host": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count()}
