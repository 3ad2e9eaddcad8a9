"""Schemas of progbench/configs/models/*.yaml (backbones) and configs/strategies/*.yaml
(strategy presets); see docs/MODELS.md. The registry (progbench/models/registry.py) finds and
parses the files."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from progbench.config.base import StrictModel
from progbench.config.keys import DESCRIPTIVE, IDENTITY, Identity, Recorded, identity_of
from progbench.config.variants import VariantGrid

REGISTRY_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
AdapterKind = Literal["lora", "vera", "ia3"]  # the built-in adapter kinds (kind: peft: any)
StrategyKind = Literal["lp", "fft", "lora", "vera", "bitfit", "ia3", "sklearn", "peft"]
# Keyword arguments the `peft` kind sets from the backbone's target set, never from options.
PEFT_SET_BY_PROGBENCH = ("target_modules", "feedforward_modules")


class TargetSpec(StrictModel):
    """Where one adapter method goes on a backbone, or why it cannot go there.

    `modules` are matched like peft matches `target_modules`: a module whose full name equals an
    entry or ends with `.` + entry. `feedforward` (IA3, or a `kind: peft` config class that takes
    `feedforward_modules`) is the subset scaled on its input.
    """

    modules: Annotated[list[str], IDENTITY] = Field(default_factory=list)
    feedforward: Annotated[list[str], IDENTITY] = Field(default_factory=list)
    # Why it cannot go there: the strategy is then refused, nothing is made.
    not_applicable: Annotated[str | None, DESCRIPTIVE] = None

    @model_validator(mode="after")
    def _modules_or_reason(self) -> TargetSpec:
        if self.not_applicable is not None:
            if self.modules or self.feedforward:
                raise ValueError("give either `modules` or `not_applicable`, not both")
            if not self.not_applicable.strip():
                raise ValueError("`not_applicable` must say why")
            return self
        if not self.modules:
            raise ValueError("give `modules` (at least one name) or `not_applicable: <reason>`")
        if len(set(self.modules)) != len(self.modules):
            raise ValueError(f"`modules` has duplicates: {self.modules}")
        extra = sorted(set(self.feedforward) - set(self.modules))
        if extra:
            raise ValueError(
                f"`feedforward` must be a subset of `modules`; not in modules: {extra}"
            )
        return self


TARGET_SET_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"


class AdapterTargets(StrictModel):
    """Named target sets: where each adapter method goes, in the module names of the installed
    libraries. The YAML writes them flat (`targets: {study: ..., lora: {modules: [...]}, ...}`);
    every key but `study` is a target set. A set the backbone does not declare is not applicable
    there (`for_kind`), so a new method needs no entry in every backbone."""

    sets: Annotated[dict[str, TargetSpec], IDENTITY] = Field(default_factory=dict)
    study: Annotated[str, DESCRIPTIVE] = ""  # the reference study's own target names

    @model_validator(mode="before")
    @classmethod
    def _flat_sets(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "sets" in data:
            return data
        sets = {k: v for k, v in data.items() if k != "study"}
        out: dict[str, Any] = {"sets": sets}
        if "study" in data:
            out["study"] = data["study"]
        return out

    @field_validator("sets")
    @classmethod
    def _set_names(cls, v: dict[str, TargetSpec]) -> dict[str, TargetSpec]:
        bad = sorted(k for k in v if not re.match(TARGET_SET_PATTERN, k) or k == "sets")
        if bad:
            raise ValueError(f"target set name(s) {bad}: use lowercase names, e.g. lora, oft")
        return v

    def declares(self, name: str) -> bool:
        return name in self.sets

    def for_kind(self, name: str) -> TargetSpec:
        """The target set `name`; an undeclared one is not applicable, with the reason."""
        if name in self.sets:
            return self.sets[name]
        declared = ", ".join(sorted(self.sets)) or "none"
        return TargetSpec(
            not_applicable=f"the backbone declares no `{name}` target set (it declares: {declared})"
        )

    @model_validator(mode="after")
    def _feedforward_is_ia3_only(self) -> AdapterTargets:
        if any(self.sets[k].feedforward for k in ("lora", "vera") if k in self.sets):
            raise ValueError("`feedforward` is an IA3 setting; remove it from lora/vera")
        return self


FEATURE = Identity(part="feature")
TRANSFORM = Identity(part="transform")
WEIGHTS = Identity(part="weights")
DTYPE = Identity(part="dtype")
LATER = Identity(later=True)
SKLEARN = Identity(part="sklearn")
COUNT = Recorded("counted from the built encoder; checked by tests, never in a key")


class FeatureSpec(StrictModel):
    """How the feature is taken: which token or pool, and before or after a projection."""

    pooling: Annotated[Literal["cls", "avg"], IDENTITY]
    projection: Annotated[Literal["none", "after"], IDENTITY]
    note: Annotated[str, DESCRIPTIVE] = ""


class ProjectionSpec(StrictModel):
    """A linear projection applied after pooling (MedCLIP's image projection)."""

    in_features: Annotated[int, IDENTITY] = Field(gt=0)
    out_features: Annotated[int, IDENTITY] = Field(gt=0)
    bias: Annotated[bool, IDENTITY] = False


class BackboneSpec(StrictModel):
    """One backbone of the registry: how to build it, load it, feed it and adapt it."""

    # Each field's role in keys (progbench.config.keys): `feature` fields are the feature
    # definition (feature-store keys, streamed runs), `transform` the input transform, `layout`
    # the token layout of a store row, `dtype` fields enter keys as the resolved dtype, `weights`
    # fields as the weights fingerprint, `adapters` where adapters go.
    name: Annotated[str, Identity(part="name")] = Field(pattern=REGISTRY_NAME_PATTERN)
    description: Annotated[str, DESCRIPTIVE] = ""
    # twins share a family with their full-size backbone: hf-dinov2, torchvision-cnn...
    family: Annotated[str, FEATURE]
    library: Annotated[Literal["torchvision", "transformers", "open_clip"], FEATURE]
    # torchvision: a builder or class in torchvision.models; transformers: a model class;
    # open_clip: "vision_tower" (built from `config_overrides` = open_clip's model_cfg).
    arch: Annotated[str, FEATURE]
    # torchvision weights enum, HF repo id, or a release URL (MedCLIP)
    hub_id: Annotated[str | None, WEIGHTS] = None
    weights_format: Annotated[Literal["native", "medclip"], FEATURE] = "native"
    # torchvision builder keyword arguments
    arch_overrides: Annotated[dict[str, Any], FEATURE] = Field(default_factory=dict)
    # transformers config kwargs / open_clip model_cfg
    config_overrides: Annotated[dict[str, Any], FEATURE] = Field(default_factory=dict)
    # key prefixes of other towers in a checkpoint
    ignore_checkpoint_keys: Annotated[list[str], WEIGHTS] = Field(default_factory=list)
    feature: Annotated[FeatureSpec, FEATURE]
    feature_dim: Annotated[int, FEATURE] = Field(gt=0)
    # The head inputs it offers (docs/MODELS.md); default: the single feature (`cls1`).
    variants: Annotated[VariantGrid, Identity(part="layout")] = Field(default_factory=VariantGrid)
    projection: Annotated[ProjectionSpec | None, FEATURE] = None
    input_size: Annotated[int, TRANSFORM] = Field(gt=0)
    mean: Annotated[tuple[float, float, float], TRANSFORM]
    std: Annotated[tuple[float, float, float], TRANSFORM]
    is_cnn: Annotated[bool, DTYPE]  # autocast only, never bf16 weights; any input side
    # bf16 by casting weights, not autocast (open_clip on CPU)
    bf16_cast_weights: Annotated[bool, DTYPE] = False
    encoder_params: Annotated[int, COUNT] = Field(gt=0)
    # FLOPs of one forward at input_size (batch 1), for cost projections; checked by a test.
    forward_gflops: Annotated[float | None, COUNT] = Field(default=None, gt=0)
    # never reached by the feature path: frozen always
    unused_parameters: Annotated[list[str], Recorded("never reached by the feature path")] = Field(
        default_factory=list
    )
    targets: Annotated[AdapterTargets, Identity(part="adapters")]
    tiny: Annotated[bool, DESCRIPTIVE] = False
    twin_of: Annotated[str | None, DESCRIPTIVE] = None
    order: Annotated[int, DESCRIPTIVE] = 1000  # display order in `progbench models`

    @field_validator("std")
    @classmethod
    def _std_positive(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(v) <= 0:
            raise ValueError("every std value must be > 0")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> BackboneSpec:
        if self.arch_overrides and self.library != "torchvision":
            raise ValueError("`arch_overrides` is for torchvision; use `config_overrides`")
        if self.config_overrides and self.library == "torchvision":
            raise ValueError(
                "`config_overrides` is for transformers/open_clip; use `arch_overrides`"
            )
        if self.library == "open_clip":
            if self.projection is not None:
                raise ValueError("open_clip towers carry their own projection; drop `projection`")
            if self.weights_format != "native":
                raise ValueError("open_clip backbones support weights_format: native only")
        elif (self.projection is not None) != (self.feature.projection == "after"):
            raise ValueError("`feature.projection: after` and a `projection:` block go together")
        if self.projection is not None and self.projection.out_features != self.feature_dim:
            raise ValueError(
                f"projection.out_features ({self.projection.out_features}) must equal "
                f"feature_dim ({self.feature_dim})"
            )
        if self.twin_of is not None and not self.tiny:
            raise ValueError("a backbone with `twin_of` is a tiny twin: set `tiny: true`")
        grid = self.variants
        if 1 not in grid.n_last_blocks or False not in grid.avgpool:
            raise ValueError("`variants` must offer n_last_blocks 1 and avgpool false (`feature:`)")
        if not grid.is_single and self.library == "torchvision":
            raise ValueError("torchvision CNNs have one feature: drop `variants`")
        return self

    def feature_definition(self) -> dict[str, Any]:
        """What, besides the weights and the input transform, decides the feature vector: the
        `feature` fields (feature-store keys and streamed runs' identity; never the notes)."""
        return identity_of(self, "feature")

    def transform(self) -> dict[str, Any]:
        """The input transform's identity: input side, mean and std."""
        return identity_of(self, "transform")


class PeftMethod(StrictModel):
    """Any peft method as data (`kind: peft`): a config class of `peft` by name, its keyword
    arguments, and the backbone target set whose modules it adapts (`targets.<name>` of the
    backbone YAML; a backbone without that set is not applicable)."""

    config: Annotated[str, IDENTITY] = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    options: Annotated[dict[str, Any], IDENTITY] = Field(default_factory=dict)
    targets: Annotated[str, IDENTITY] = Field(pattern=TARGET_SET_PATTERN)

    @model_validator(mode="after")
    def _no_targets_in_options(self) -> PeftMethod:
        own = sorted(set(self.options) & set(PEFT_SET_BY_PROGBENCH))
        if own:
            raise ValueError(
                f"`peft.options` {own}: progbench sets them from the backbone's "
                f"`targets.{self.targets}`; remove them"
            )
        return self


class StrategySpec(StrictModel):
    """An adaptation strategy preset: LP, FFT, LoRA/VeRA at a rank, BitFit, IA3, or a
    scikit-learn estimator on the frozen features (`sklearn`)."""

    # Every field but the descriptive ones is part of each run's identity (another YAML, another
    # run); `later` fields were added after runs were first recorded: left out of a run's
    # identity while at their default, so runs made before them keep matching.
    name: Annotated[str, IDENTITY] = Field(pattern=REGISTRY_NAME_PATTERN)
    kind: Annotated[StrategyKind, IDENTITY]
    description: Annotated[str, DESCRIPTIVE] = ""
    rank: Annotated[int | None, IDENTITY] = Field(default=None, gt=0)  # LoRA / VeRA rank r
    # LoRA alpha (scaling = alpha / r)
    alpha: Annotated[float | None, IDENTITY] = Field(default=None, gt=0)
    dropout: Annotated[float, IDENTITY] = Field(default=0.0, ge=0.0, lt=1.0)  # LoRA / VeRA
    # further keyword arguments of the peft config class
    peft_options: Annotated[dict[str, Any], IDENTITY] = Field(default_factory=dict)
    # kind `peft` only: the peft config class, its options and the backbone target set
    peft: Annotated[PeftMethod | None, LATER] = None
    # study default; None: backbone frozen
    backbone_lr: Annotated[float | None, IDENTITY] = Field(default=None, gt=0)
    # The head input (streamed kinds) or the features read (sklearn), chosen on validation when
    # several; None: `cls1`. LP takes its grid from the probe preset instead.
    variants: Annotated[VariantGrid | None, LATER] = None
    # sklearn only: an importable estimator class, fixed keyword arguments, a grid searched on
    # validation, and class weighting (`balanced`) where the estimator takes `class_weight`.
    # (`sklearn` fields: the identity of a sklearn run, train.estimators; never set otherwise)
    estimator: Annotated[str | None, SKLEARN] = None
    params: Annotated[dict[str, Any], SKLEARN] = Field(default_factory=dict)
    grid: Annotated[dict[str, list[Any]], SKLEARN] = Field(default_factory=dict)
    class_weight: Annotated[Literal["balanced"] | None, SKLEARN] = None
    # sklearn only: p_pos from CalibratedClassifierCV(estimator, method, ensemble=False) on up
    # to 3 stratified folds of the training images (for estimators without predict_proba).
    calibration: Annotated[Literal["sigmoid", "isotonic"] | None, SKLEARN] = None
    order: Annotated[int, DESCRIPTIVE] = 1000

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> StrategySpec:
        k = self.kind
        if (self.rank is None) == (k in ("lora", "vera")):
            raise ValueError(
                f"`rank` is {'required' if k in ('lora', 'vera') else 'not used'} for {k}"
            )
        if (self.alpha is None) == (k == "lora"):
            raise ValueError(f"`alpha` is {'required' if k == 'lora' else 'not used'} for {k}")
        if self.dropout and k not in ("lora", "vera"):
            raise ValueError(f"`dropout` is a LoRA/VeRA setting, not used for {k}")
        if self.peft_options and k not in ("lora", "vera", "ia3"):
            raise ValueError(
                f"`peft_options` apply to lora/vera/ia3 only, not {k}"
                + (" (give `peft.options`)" if k == "peft" else "")
            )
        if (self.peft is None) == (k == "peft"):
            raise ValueError(
                "kind `peft` needs a `peft:` block (config, options, targets)"
                if k == "peft"
                else f"`peft:` is for kind `peft`, not {k}"
            )
        if (self.backbone_lr is None) != (k in ("lp", "sklearn")):
            raise ValueError(
                "`backbone_lr` is required when the backbone trains and not used for lp/sklearn"
            )
        if self.variants is not None and k == "lp":
            raise ValueError("lp takes its variant grid from the probe preset (`--probe`)")
        sklearn_fields = (
            self.estimator or self.params or self.grid or self.class_weight or self.calibration
        )
        if k != "sklearn" and sklearn_fields:
            raise ValueError(
                "`estimator`, `params`, `grid`, `class_weight` and `calibration` are sklearn fields"
            )
        if k == "sklearn":
            check_estimator_shape(self)
        return self

    @property
    def uses_peft(self) -> bool:
        return self.kind in ("lora", "vera", "ia3", "peft")

    @property
    def target_set(self) -> str | None:
        """The backbone target set its adapters go to (None: no adapters)."""
        if self.peft is not None:
            return self.peft.targets
        return self.kind if self.kind in ("lora", "vera", "ia3") else None

    @property
    def variant_grid(self) -> VariantGrid:
        return self.variants or VariantGrid()

    def identity(self) -> dict[str, Any]:
        """The preset's content, descriptions left out: part of every run's identity."""
        return identity_of(self)


def check_estimator_shape(spec: StrategySpec) -> None:
    """What the YAML alone shows: a dotted path, and `params` and `grid` that fit together."""
    module, _, _ = (spec.estimator or "").rpartition(".")
    if not module:
        raise ValueError("`estimator` must be a dotted path, e.g. sklearn.svm.SVC")
    clash = sorted(set(spec.params) & set(spec.grid))
    if clash:
        raise ValueError(f"{clash} are both in `params` and in `grid`")
    if any(not v for v in spec.grid.values()):
        raise ValueError("every `grid` entry needs at least one value")


def check_estimator_fields(spec: StrategySpec) -> None:
    """The estimator imports, is a classifier with predict_proba, and takes every keyword.
    It imports scikit-learn (seconds), so the registry runs it when the preset is looked up
    (models.registry.get_strategy_spec), not when the folder of presets is read."""
    import importlib

    path = spec.estimator or ""
    module, _, attr = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot import estimator {path}: {err}") from err
    from sklearn.base import is_classifier

    if not isinstance(cls, type) or not hasattr(cls, "fit") or not is_classifier(cls()):
        raise ValueError(f"{path} is not a scikit-learn classifier class")
    accepted = set(cls().get_params())
    wanted = set(spec.params) | set(spec.grid) | ({"class_weight"} if spec.class_weight else set())
    unknown = sorted(wanted - accepted)
    if unknown:
        raise ValueError(f"{path} takes no parameter(s) {unknown}; it takes {sorted(accepted)}")
    try:
        est = cls(**spec.params)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} rejects `params`: {err}") from err
    if not spec.calibration and not hasattr(est, "predict_proba"):
        raise ValueError(
            f"{path} with these params has no predict_proba (p_pos); e.g. SVC needs "
            "`calibration: sigmoid` (CalibratedClassifierCV)"
        )
