"""The backbone and strategy registries: one YAML file per entry, validated on load.

Backbones live in `progbench/configs/models/*.yaml` plus every folder named in
`$PROGBENCH_MODELS_DIR` (os.pathsep-separated); strategies in `progbench/configs/strategies/`
plus `$PROGBENCH_STRATEGIES_DIR`. A file's name (without .yaml) must equal its `name`.

A tiny twin names its full-size backbone in `twin_of` and inherits every field it does not set,
except those that describe one concrete model (`_NOT_INHERITED`).
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from progbench.config import BackboneSpec, StrategySpec, parse_model, read_yaml
from progbench.errors import ConfigError, RegistryError

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
MODELS_DIR_ENV = "PROGBENCH_MODELS_DIR"
STRATEGIES_DIR_ENV = "PROGBENCH_STRATEGIES_DIR"
_NOT_INHERITED = (
    "name",
    "description",
    "order",
    "hub_id",
    "encoder_params",
    "forward_gflops",
    "twin_of",
    "tiny",
)
_SCHEMA_HINT = "See docs/MODELS.md for the YAML schema and an example."

__all__ = [
    "BackboneSpec",
    "StrategySpec",
    "get_backbone_spec",
    "get_strategy_spec",
    "list_backbones",
    "list_strategies",
    "registry_fingerprint",
]


@dataclass(frozen=True)
class _Registry:
    backbones: dict[str, BackboneSpec]
    strategies: dict[str, StrategySpec]
    files: dict[str, Path]  # "backbone:<name>" / "strategy:<name>" -> source file
    fingerprint: str


def _dirs(builtin: Path, env: str) -> list[Path]:
    extra = [Path(p).expanduser() for p in os.environ.get(env, "").split(os.pathsep) if p]
    for d in extra:
        if not d.is_dir():
            raise RegistryError(f"${env} names {d}, which is not a directory", "Fix the variable.")
    return [builtin, *extra]


def _yaml_files(dirs: list[Path]) -> list[Path]:
    return [f for d in dirs for f in sorted(d.glob("*.yaml"))]


def _read_entries(files: list[Path], what: str) -> dict[str, tuple[Path, dict[str, Any]]]:
    entries: dict[str, tuple[Path, dict[str, Any]]] = {}
    for f in files:
        try:
            data = read_yaml(f)
        except ConfigError as err:
            raise RegistryError(err.message, _SCHEMA_HINT) from err
        name = data.get("name")
        if name != f.stem:
            raise RegistryError(
                f"{f}: `name` is {name!r} but the file is named {f.name}",
                f"Name the file <name>.yaml, here {name}.yaml, or set `name: {f.stem}`.",
            )
        if name in entries:
            raise RegistryError(
                f"{what} {name!r} is defined twice: {entries[name][0]} and {f}",
                "Rename or remove one of them.",
            )
        entries[name] = (f, data)
    return entries


def _parse(model: type, data: dict[str, Any], source: Path) -> Any:
    try:
        return parse_model(model, data, str(source))
    except ConfigError as err:
        raise RegistryError(err.message, _SCHEMA_HINT) from err


def _merge_twin(name: str, raw: dict[str, dict[str, Any]], path: Path) -> dict[str, Any]:
    data = raw[name]
    base_name = data.get("twin_of")
    if base_name is None:
        return data
    if base_name not in raw:
        raise RegistryError(
            f"{path}: twin_of {base_name!r} is not a known backbone",
            f"Known backbones: {', '.join(sorted(raw))}.",
        )
    if raw[base_name].get("twin_of") is not None:
        raise RegistryError(f"{path}: twin_of must name a full-size backbone, not another twin")
    merged = {k: copy.deepcopy(v) for k, v in raw[base_name].items() if k not in _NOT_INHERITED}
    merged.update(data)
    return merged


def _build(model_files: list[Path], strategy_files: list[Path]) -> _Registry:
    bb_entries = _read_entries(model_files, "backbone")
    raw = {n: d for n, (_, d) in bb_entries.items()}
    backbones = {
        n: _parse(BackboneSpec, _merge_twin(n, raw, p), p) for n, (p, _) in bb_entries.items()
    }
    st_entries = _read_entries(strategy_files, "strategy")
    strategies = {n: _parse(StrategySpec, d, p) for n, (p, d) in st_entries.items()}
    files = {f"backbone:{n}": p for n, (p, _) in bb_entries.items()}
    files |= {f"strategy:{n}": p for n, (p, _) in st_entries.items()}
    h = hashlib.sha256()
    for key in sorted(files):
        h.update(key.encode() + b"\0" + files[key].read_bytes() + b"\0")
    return _Registry(backbones, strategies, files, h.hexdigest()[:16])


@lru_cache(maxsize=8)
def _cached(model_files: tuple[tuple[str, int, int], ...], strategy_files: tuple) -> _Registry:
    return _build([Path(p) for p, _, _ in model_files], [Path(p) for p, _, _ in strategy_files])


def _stamp(files: list[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for f in files:
        st = f.stat()
        out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _registry() -> _Registry:
    # Re-parse when a file or an env variable changes; otherwise reuse the parsed registry.
    models = _yaml_files(_dirs(CONFIGS_DIR / "models", MODELS_DIR_ENV))
    strategies = _yaml_files(_dirs(CONFIGS_DIR / "strategies", STRATEGIES_DIR_ENV))
    return _cached(_stamp(models), _stamp(strategies))


def list_backbones(include_tiny: bool = False) -> list[str]:
    """Backbone names in display order (the reference study's order first)."""
    specs = _registry().backbones.values()
    return [
        s.name
        for s in sorted(specs, key=lambda s: (s.tiny, s.order, s.name))
        if include_tiny or not s.tiny
    ]


def get_backbone_spec(name: str) -> BackboneSpec:
    reg = _registry()
    if name not in reg.backbones:
        raise RegistryError(
            f"unknown backbone {name!r}",
            f"Known backbones: {', '.join(list_backbones(include_tiny=True))}. To add one, put a "
            f"<name>.yaml in a folder named by ${MODELS_DIR_ENV}.",
        )
    return reg.backbones[name]


def list_strategies() -> list[str]:
    specs = _registry().strategies.values()
    return [s.name for s in sorted(specs, key=lambda s: (s.order, s.name))]


def get_strategy_spec(name: str) -> StrategySpec:
    reg = _registry()
    if name not in reg.strategies:
        raise RegistryError(
            f"unknown strategy {name!r}",
            f"Known strategies: {', '.join(list_strategies())}. To add one, put a <name>.yaml "
            f"in a folder named by ${STRATEGIES_DIR_ENV}.",
        )
    return reg.strategies[name]


def registry_source(kind: str, name: str) -> Path:
    """The YAML file an entry came from (`kind` is "backbone" or "strategy")."""
    return _registry().files[f"{kind}:{name}"]


def registry_fingerprint() -> str:
    """Hash of every registry file's name and content: any edit changes it."""
    return _registry().fingerprint
