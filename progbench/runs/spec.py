"""What a run is (RunSpec), what it cost (RunCost), and how two runs' identities are compared.

A run's identity is every setting that can change its predictions: the fields that place it in
the tree (task, scheme, backbone, strategy, regime, fold, shots, repeat), its weights
fingerprint and seed, and `settings` (the data the fold holds, the split and task definitions,
the strategy preset, the features or image store, every hyper-parameter). `extra` records what
cannot change the predictions (device, workers, the test centre, what was selected on
validation). A finished run is reused only when its identity equals the one asked for.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from progbench.config import StrictModel
from progbench.data.splits import Scheme
from progbench.provenance import fingerprint

Regime = Literal["full", "fewshot", "fewshot-center"]
FEWSHOT_REGIMES = ("fewshot", "fewshot-center")

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-")
# Spec fields outside `settings` that identify a run beyond its place in the tree.
IDENTITY_FIELDS = ("weights_fingerprint", "seed", "scheme")
# Runs made by progbench up to commit babab05, before identities were derived from declarations
# (progbench.config.keys), lack these settings (of the one feature definition, the input
# transform, and the adapters' targets; their values then were the backbone's YAML's, as now)
# and record descriptive `note`s that are no key: such a run is compared without them (a name
# or any setting under it). docs/DESIGN_NOTES.md, 14.
NOT_RECORDED_BEFORE = (
    "backbone.family",
    "backbone.weights_format",
    "backbone.input_size",
    "adapters",
)
DESCRIPTIVE_SETTINGS = ("note", "description")
# `extra` entry of a new run: per setting, older values that name the same input (the key
# babab05 gave the same feature store); a finished run recording one of them is of this identity.
ALIASES = "aliases"


def _json_safe(v: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(v, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"must be JSON-serialisable ({err})") from err
    return v


class RunSpec(StrictModel):
    """What a run is: enough to place it in the tree, group it, compare it, and rerun it."""

    task: str
    backbone: str
    weights: str  # hub id, local path, or "random"
    weights_fingerprint: str | None = None
    strategy: str
    regime: Regime
    fold: int = Field(ge=0)
    shots: int | None = Field(default=None, ge=1)
    repeat: int | None = Field(default=None, ge=0)
    seed: int = 42
    scheme: Scheme
    settings: dict[str, Any] = Field(default_factory=dict)  # identity: see the module docstring
    extra: dict[str, Any] = Field(default_factory=dict)  # records: test centre, selection, ...

    @field_validator("task", "backbone", "strategy")
    @classmethod
    def _path_safe(cls, v: str) -> str:
        # These become directory names; a slash or `..` would escape the run tree.
        if not v or v.startswith(".") or not set(v) <= _NAME_CHARS:
            raise ValueError(
                "must be non-empty, not start with '.', and use only letters, digits and . _ + -"
            )
        return v

    @field_validator("settings", "extra")
    @classmethod
    def _json_fields(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _json_safe(v)

    @model_validator(mode="after")
    def _regime_fields(self) -> RunSpec:
        fewshot = self.regime in FEWSHOT_REGIMES
        if fewshot and (self.shots is None or self.repeat is None):
            raise ValueError(f"regime {self.regime!r} needs shots and repeat")
        if not fewshot and (self.shots is not None or self.repeat is not None):
            raise ValueError("regime 'full' takes no shots or repeat (leave them None)")
        return self

    def key(self) -> str:
        """Content fingerprint of the spec (a resume key)."""
        return fingerprint(self.model_dump(mode="json"))


class RunCost(StrictModel):
    """What a run cost, written into metrics.json by the trainer. Every field is optional."""

    wall_time_s: float | None = None
    device_time_s: float | None = None
    peak_host_mb: float | None = None
    peak_device_mb: float | None = None
    images_per_s: float | None = None
    trainable: int | None = None
    total: int | None = None
    trainable_percent: float | None = None


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k in sorted(value):
            _flat(f"{prefix}.{k}" if prefix else str(k), value[k], out)
    else:
        out[prefix] = value


def _canonical(v: Any) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def identity_diff(old: RunSpec, new: RunSpec) -> list[str]:
    """Each identity setting on which `old` and `new` differ, as 'name: OLD there, NEW now'."""
    a: dict[str, Any] = {f: getattr(old, f) for f in IDENTITY_FIELDS}
    b: dict[str, Any] = {f: getattr(new, f) for f in IDENTITY_FIELDS}
    _flat("", old.settings, a)
    _flat("", new.settings, b)
    if not old.settings and new.settings:
        return ["settings: none recorded there (an older progbench made it), recorded now"]
    missing = object()
    aliases = new.extra.get(ALIASES) or {}
    diffs = []
    for name in sorted(set(a) | set(b), key=lambda n: (n not in IDENTITY_FIELDS, n)):
        va, vb = a.get(name, missing), b.get(name, missing)
        if va is missing and any(
            name == p or name.startswith(f"{p}.") for p in NOT_RECORDED_BEFORE
        ):
            continue
        if vb is missing and name.rpartition(".")[2] in DESCRIPTIVE_SETTINGS:
            continue
        if va is not missing and va in aliases.get(name, ()):
            continue
        if va is missing or vb is missing or _canonical(va) != _canonical(vb):
            shown_a = "unset" if va is missing else repr(va)
            shown_b = "unset" if vb is missing else repr(vb)
            diffs.append(f"{name}: {shown_a} there, {shown_b} now")
    return diffs
