"""What a strategy touches on a backbone (its own module: the Strategy classes and the torch
classifier both name it, and neither imports the other's module)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Resolution:
    """What a strategy touches on a backbone, or why it cannot be used there."""

    backbone: str
    strategy: str
    kind: str
    applicable: bool
    reason: str | None = None
    target_modules: list[str] = field(default_factory=list)  # names handed to peft (suffixes)
    feedforward_modules: list[str] = field(default_factory=list)  # IA3 only
    matched_modules: list[str] = field(default_factory=list)  # full module names they match
    trainable_parameters: list[str] = field(default_factory=list)  # bitfit / fft, by name
    checked: bool = False  # True when matched against a built encoder
