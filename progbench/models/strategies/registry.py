"""One registry of strategy kinds, like timm's model entrypoints: `@register_kind("lora")` on a
Strategy class; `get_strategy(name)` binds a YAML preset (progbench.models.registry) to the
class of its `kind`. A new preset of an existing kind is a YAML file, not code."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from progbench.config import StrategySpec
from progbench.errors import RegistryError

if TYPE_CHECKING:
    from progbench.models.strategies.base import Strategy

_KINDS: dict[str, type[Strategy]] = {}


def register_kind(kind: str) -> Callable[[type[Strategy]], type[Strategy]]:
    def add(cls: type[Strategy]) -> type[Strategy]:
        if kind in _KINDS:
            raise RegistryError(f"strategy kind {kind!r} is registered twice")
        cls.kind = kind
        _KINDS[kind] = cls
        return cls

    return add


def strategy_kinds() -> list[str]:
    """Kinds registered so far (the package's __init__ imports every built-in kind)."""
    return sorted(_KINDS)


def get_strategy(strategy: str | StrategySpec | Strategy) -> Strategy:
    """The Strategy for a registry name, a parsed preset, or a Strategy (returned as is)."""
    from progbench.models.registry import get_strategy_spec

    if not isinstance(strategy, str | StrategySpec):
        return strategy
    spec = get_strategy_spec(strategy) if isinstance(strategy, str) else strategy
    if spec.kind not in _KINDS:
        raise RegistryError(
            f"strategy {spec.name!r} has kind {spec.kind!r}, which no strategy class implements",
            f"Known kinds: {', '.join(sorted(_KINDS))}.",
        )
    return _KINDS[spec.kind](spec)
