"""Where stores live: `--cache-dir`, else `$PROGBENCH_CACHE`, else the user cache folder."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "PROGBENCH_CACHE"


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The cache root; `$XDG_CACHE_HOME/progbench` (default `~/.cache/progbench`) when unset."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser().resolve()
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "progbench").resolve()


def image_store_dir(cache_dir: str | Path | None = None) -> Path:
    return cache_root(cache_dir) / "images"


def feature_store_dir(cache_dir: str | Path | None = None) -> Path:
    return cache_root(cache_dir) / "features"
