"""Feature variants: which tokens a linear head (or a scikit-learn estimator) reads.

The reference study forks DINOv2's linear evaluation: the head input is the concatenation of
the class tokens of the last `n_last_blocks` blocks, optionally followed by the mean of the last
block's patch tokens (`avgpool`). A `VariantGrid` is a set of such variants (the cross product
of its two lists): what a backbone offers (its YAML's `variants:`), what a probe preset or a
strategy preset searches. `TokenLayout` is how a feature store holds everything a backbone's
variants need, one row per image: the class tokens of the last B blocks (oldest first), then
the patch mean, each `token_dim` wide.

Variant `cls1` (n = 1, no avgpool) is always offered: it is the backbone's single feature
(its YAML's `feature:`), the only one a CNN has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field, field_validator

from progbench.config.base import StrictModel
from progbench.config.keys import DESCRIPTIVE, IDENTITY
from progbench.errors import ConfigError


@dataclass(frozen=True, order=True)
class Variant:
    n_last_blocks: int = 1
    avgpool: bool = False

    @property
    def name(self) -> str:
        """`cls1`, `cls4`, `cls1+avg`, `cls4+avg`."""
        return f"cls{self.n_last_blocks}" + ("+avg" if self.avgpool else "")

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_VARIANT

    def slots(self) -> int:
        """Tokens concatenated: n class tokens, plus the patch mean."""
        return self.n_last_blocks + int(self.avgpool)

    def dim(self, token_dim: int) -> int:
        return self.slots() * token_dim

    def to_dict(self) -> dict[str, Any]:
        return {"n_last_blocks": self.n_last_blocks, "avgpool": self.avgpool}

    @classmethod
    def parse(cls, name: str) -> Variant:
        """The inverse of `name`."""
        base, _, avg = name.partition("+")
        if not base.startswith("cls") or not base[3:].isdigit() or avg not in ("", "avg"):
            raise ConfigError(
                f"{name!r} is not a feature variant", "Variants read like cls1, cls4, cls4+avg."
            )
        return cls(int(base[3:]), avg == "avg")


DEFAULT_VARIANT = Variant(1, False)


class VariantGrid(StrictModel):
    """Variants as the cross product of two lists (YAML: `variants: {n_last_blocks: [1, 4],
    avgpool: [false, true]}`), in that order: n outer, avgpool inner."""

    n_last_blocks: Annotated[list[int], IDENTITY] = Field(default_factory=lambda: [1], min_length=1)
    avgpool: Annotated[list[bool], IDENTITY] = Field(default_factory=lambda: [False], min_length=1)
    note: Annotated[str, DESCRIPTIVE] = ""

    @field_validator("n_last_blocks")
    @classmethod
    def _positive_unique(cls, v: list[int]) -> list[int]:
        if min(v) < 1 or len(set(v)) != len(v):
            raise ValueError(f"needs distinct block counts >= 1, got {v}")
        return v

    @field_validator("avgpool")
    @classmethod
    def _unique(cls, v: list[bool]) -> list[bool]:
        if len(set(v)) != len(v):
            raise ValueError(f"has duplicates: {v}")
        return v

    def variants(self) -> list[Variant]:
        return [Variant(n, a) for n in self.n_last_blocks for a in self.avgpool]

    @property
    def is_single(self) -> bool:
        return self.variants() == [DEFAULT_VARIANT]

    def identity(self) -> list[str]:
        return [v.name for v in self.variants()]


def offered(asked: VariantGrid | list[Variant], offer: VariantGrid) -> list[Variant]:
    """The asked variants a backbone offers, in the asked order."""
    have = set(offer.variants())
    wanted = asked.variants() if isinstance(asked, VariantGrid) else asked
    return [v for v in wanted if v in have]


@dataclass(frozen=True)
class TokenLayout:
    """The columns of a feature-store row: B class tokens (blocks L-B+1 .. L), then the patch
    mean when any offered variant uses it; each `token_dim` wide."""

    offer: tuple[Variant, ...]
    token_dim: int

    @classmethod
    def of(cls, grid: VariantGrid, token_dim: int) -> TokenLayout:
        return cls(tuple(grid.variants()), token_dim)

    @classmethod
    def single(cls, token_dim: int) -> TokenLayout:
        return cls((DEFAULT_VARIANT,), token_dim)

    @classmethod
    def of_variant(cls, v: Variant, token_dim: int) -> TokenLayout:
        """Exactly variant `v`'s tokens (a streamed head's input)."""
        return cls((v,), token_dim)

    @property
    def blocks(self) -> int:
        return max(v.n_last_blocks for v in self.offer)

    @property
    def avgpool(self) -> bool:
        return any(v.avgpool for v in self.offer)

    @property
    def slots(self) -> int:
        return self.blocks + int(self.avgpool)

    @property
    def width(self) -> int:
        return self.slots * self.token_dim

    def tokens(self) -> list[str]:
        names = [f"cls_block_-{i}" for i in range(self.blocks, 0, -1)]
        return names + (["patch_mean"] if self.avgpool else [])

    def columns(self, v: Variant) -> np.ndarray:
        """Column indices of variant `v` in a row (DINOv2's create_linear_input order)."""
        if v not in self.offer:
            raise ConfigError(
                f"feature variant {v.name} is not in this store (it holds "
                f"{', '.join(o.name for o in self.offer)})"
            )
        d = self.token_dim
        first = self.blocks - v.n_last_blocks
        cols = [np.arange(first * d, self.blocks * d)]
        if v.avgpool:
            cols.append(np.arange(self.blocks * d, (self.blocks + 1) * d))
        return np.concatenate(cols)

    def select(self, x: np.ndarray, v: Variant) -> np.ndarray:
        """Variant `v`'s features from rows `x` (N, width); a view when it is all of them."""
        if self.slots == v.slots():
            return x
        return x[:, self.columns(v)]

    def variant_dims(self) -> dict[str, int]:
        """Each offered variant's feature dimension (what a head on it reads), by name."""
        return {v.name: v.dim(self.token_dim) for v in self.offer}

    def describe(self) -> str:
        """The feature dimension as a reader needs it: `512` for one feature; per variant for
        several (`cls1 384, cls1+avg 768, cls4 1536, cls4+avg 1920`), never the row width."""
        if len(self.offer) == 1 and self.offer[0] == DEFAULT_VARIANT:
            return str(self.token_dim)
        return ", ".join(f"{name} {dim}" for name, dim in self.variant_dims().items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "variants": [v.name for v in self.offer],
            "tokens": self.tokens(),
            "token_dim": self.token_dim,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, width: int) -> TokenLayout:
        """A store's layout from its attrs; stores without one hold the single feature."""
        if not data:
            return cls.single(width)
        return cls(tuple(Variant.parse(n) for n in data["variants"]), int(data["token_dim"]))
