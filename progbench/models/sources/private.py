"""Every private (underscore) API of another library that progbench uses, in one place.

Each entry names the distribution, the module, the symbol and the parameters progbench passes.
`resolve` checks all of that before use, and tests/test_weights.py resolves every entry, so a
library release that renames or changes one fails with a message naming library, version and
symbol instead of an AttributeError deep in a load.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from progbench.errors import RegistryError


@dataclass(frozen=True)
class PrivateSymbol:
    distribution: str  # the name pip knows it by
    module: str
    name: str
    params: tuple[str, ...]  # the parameters progbench passes
    why: str  # what progbench needs it for

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


OPEN_CLIP_VISION_TOWER = PrivateSymbol(
    "open_clip_torch",
    "open_clip.model",
    "_build_vision_tower",
    ("embed_dim", "vision_cfg", "quick_gelu"),
    "building a CLIP model's image tower alone (open_clip has no public builder for it)",
)

PRIVATE_SYMBOLS = (OPEN_CLIP_VISION_TOWER,)


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "(not installed)"


def resolve(sym: PrivateSymbol) -> Callable[..., Any]:
    """The symbol, after checking it still exists and takes the parameters progbench passes."""
    problem = None
    try:
        fn = getattr(importlib.import_module(sym.module), sym.name, None)
    except ImportError as err:
        fn, problem = None, f"cannot import {sym.module} ({err})"
    if fn is None or not callable(fn):
        problem = problem or f"has no callable {sym.qualname}"
    else:
        missing = [p for p in sym.params if p not in inspect.signature(fn).parameters]
        if missing:
            problem = f"changed {sym.qualname}: it no longer takes {', '.join(missing)}"
    if problem or fn is None:
        raise RegistryError(
            f"{sym.distribution} {_version(sym.distribution)} {problem}; progbench uses this "
            f"private function for {sym.why}",
            f"Install the {sym.distribution} version progbench was tested with (see "
            "pyproject.toml), or update progbench/models/sources/private.py.",
        )
    return fn


def open_clip_vision_tower(embed_dim: int, vision_cfg: dict[str, Any], quick_gelu: bool) -> Any:
    return resolve(OPEN_CLIP_VISION_TOWER)(embed_dim, vision_cfg, quick_gelu=quick_gelu)
