"""LoRA, VeRA and IA3 through Hugging Face peft (`get_peft_model` on the encoder;
`inject_adapter_in_model` cannot do VeRA), and any other peft method as data (`kind: peft`: a
config class of peft named in the preset YAML, its options, and a backbone target set).
Targets come from the backbone's YAML; each must match at least one module (of a type the method
supports, where progbench knows them), and peft must adapt exactly those modules."""

from __future__ import annotations

import os
import tempfile
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from progbench.config import BackboneSpec, StrategySpec, Variant
from progbench.config.models import PEFT_SET_BY_PROGBENCH
from progbench.errors import ConfigError, ProgbenchError, RegistryError
from progbench.models.strategies.base import (
    Resolution,
    Strategy,
    check_unclaimed,
    claim_encoder,
    unused_parameters,
)
from progbench.models.strategies.kinds import HEAD_FILE
from progbench.models.strategies.registry import register_kind
from progbench.models.strategies.tensors import HEAD_NAME, save_tensors

if TYPE_CHECKING:
    from peft import PeftModel
    from torch import nn

    from progbench.models.loaders import LoadedBackbone
    from progbench.models.strategies.classifier import ClassifierModel

PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _matches(name: str, target: str) -> bool:
    # peft's rule for a list of target_modules (tuners_utils.check_target_module_exists).
    return name == target or name.endswith("." + target)


class PeftStrategy(Strategy):
    """An adapter method of peft. Subclasses give the layer types it supports and its config."""

    method: str  # the target set of the backbone YAML's `targets`
    config_class: str  # peft's config class, in messages
    set_by_progbench: ClassVar[tuple[str, ...]]  # config arguments peft_options cannot set

    @property
    def uses_peft(self) -> bool:
        return True

    @property
    def target_set(self) -> str | None:
        return self.method

    @abstractmethod
    def supported_types(self) -> tuple[type, ...] | None:
        """The layer types the method can adapt (None: peft's own check decides)."""

    @abstractmethod
    def peft_config(self, res: Resolution) -> Any:
        """The peft config object for the resolved targets."""

    def resolve(self, spec: BackboneSpec, encoder: nn.Module | None = None) -> Resolution:
        base = self._base(spec)
        t = spec.targets.for_kind(self.method)
        if t.not_applicable is not None:
            return Resolution(**base, applicable=False, reason=t.not_applicable.strip())
        if (why := self.variant_reason(spec)) is not None:
            return Resolution(**base, applicable=False, reason=why)
        base |= {"target_modules": list(t.modules), "feedforward_modules": list(t.feedforward)}
        if encoder is None:
            return Resolution(**base, applicable=True)
        unused_parameters(spec, encoder)
        matched = self._match_targets(spec, t.modules, encoder)
        return Resolution(**base, applicable=True, matched_modules=matched, checked=True)

    def _match_targets(
        self, spec: BackboneSpec, targets: list[str], encoder: nn.Module
    ) -> list[str]:
        modules = dict(encoder.named_modules())
        allowed = self.supported_types()
        matched: list[str] = []
        for t in targets:
            hits = [n for n in modules if _matches(n, t)]
            if not hits:
                leaves = [n for n, m in modules.items() if n and not list(m.children())][:8]
                raise RegistryError(
                    f"backbone {spec.name!r}: {self.method} target {t!r} matches no module",
                    f"Targets are module names or suffixes, e.g. {', '.join(leaves)} ...",
                )
            wrong = sorted(
                {type(modules[n]).__name__ for n in hits if not isinstance(modules[n], allowed)}
                if allowed is not None
                else ()
            )
            if wrong and allowed is not None:
                raise RegistryError(
                    f"backbone {spec.name!r}: {self.method} target {t!r} matches "
                    f"{', '.join(wrong)} modules, which {self.method} cannot adapt (it supports "
                    f"{', '.join(c.__name__ for c in allowed)})",
                    f"Choose other targets, or set `targets.{self.method}.not_applicable: "
                    "<reason>` in the YAML.",
                )
            matched.extend(hits)
        return sorted(set(matched))

    def preflight(self, spec: BackboneSpec) -> None:
        """Apply the peft config to the backbone built weightless (no memory, no download), so
        a preset peft cannot apply fails before a command writes splits or runs."""
        from progbench.models.encoders import build_weightless, weightless
        from progbench.models.sources import LoadedBackbone

        loaded = LoadedBackbone(build_weightless(spec), spec, "random", "meta")
        with weightless():
            self.build(loaded)

    def adapt(self, encoder: nn.Module, res: Resolution) -> nn.Module:
        from peft import get_peft_model

        try:
            config = self.peft_config(res)
        except (TypeError, ValueError) as err:
            raise self.peft_error(res, f"{self.config_class} rejects the settings: {err}") from err
        try:
            backbone = get_peft_model(encoder, config)
        except ProgbenchError:
            raise
        except Exception as err:  # peft's own checks: ValueError, TypeError, KeyError, ...
            raise self.peft_error(res, f"get_peft_model failed: {err}") from err
        adapted = set(backbone.base_model.targeted_module_names)
        if adapted != set(res.matched_modules):
            missed = sorted(set(res.matched_modules) - adapted)[:8]
            extra = sorted(adapted - set(res.matched_modules))[:8]
            raise self.peft_error(
                res,
                f"peft adapted {len(adapted)} module(s), the backbone's targets.{self.method} "
                f"match {len(res.matched_modules)}"
                + (f"; not adapted: {missed}" if missed else "")
                + (f"; adapted beyond the targets: {extra}" if extra else ""),
            )
        return backbone

    def peft_error(self, res: Resolution, detail: str) -> ConfigError:
        """One error for whatever peft refuses: the preset's file, the backbone, the option to
        fix, and peft's own words as the detail."""
        from progbench.models.registry import get_backbone_spec, registry_source

        def source(kind: Literal["backbone", "strategy"], name: str) -> str:
            try:
                return str(registry_source(kind, name))
            except KeyError:  # a preset built in code, not read from a file
                return f"{kind} {name!r}"

        strategy_file = source("strategy", self.name)
        spec = get_backbone_spec(res.backbone)
        backbone_files = [source("backbone", spec.name)]
        if spec.twin_of:
            backbone_files.append(f"inherited from {source('backbone', spec.twin_of)}")
        targets = f"the backbone's `targets.{self.method}` ({', '.join(backbone_files)})"
        if self.spec.peft is not None:
            hint = (
                f"Fix `peft.options` ({', '.join(sorted(self.spec.peft.options)) or 'none'}) "
                f"in {strategy_file} ({self.config_class} keyword arguments), or {targets}, or "
                f"set `targets.{self.method}.not_applicable: <reason>` there."
            )
            return ConfigError(
                f"strategy {self.name!r} ({strategy_file}) cannot be applied to backbone "
                f"{res.backbone!r}:\n  {detail}",
                hint,
            )
        own = sorted(set(self.spec.peft_options) & set(self.set_by_progbench))
        if own:
            hint = (
                f"Remove {', '.join(f'`peft_options.{k}`' for k in own)} from {strategy_file}: "
                f"progbench sets {'it' if len(own) == 1 else 'them'} (targets from {targets}; "
                "rank, alpha and dropout from the preset's own fields)."
            )
        elif self.spec.peft_options:
            keys = ", ".join(sorted(self.spec.peft_options))
            hint = (
                f"Fix `peft_options` ({keys}) in {strategy_file} ({self.config_class} keyword "
                f"arguments), or {targets}."
            )
        else:
            hint = f"Fix {targets}, or the preset's fields in {strategy_file}."
        return ConfigError(
            f"strategy {self.name!r} ({strategy_file}) cannot be applied to backbone "
            f"{res.backbone!r}:\n  {detail}",
            hint,
        )

    def save(self, model: ClassifierModel, out_dir: Path) -> None:
        """peft's save_pretrained layout (PeftModel.from_pretrained loads it), plus the head."""
        # peft writes its files directly: write them beside, then move each into place.
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".peft-") as tmp:
            backbone = cast("PeftModel", model.backbone)  # what adapt() made of the encoder
            backbone.save_pretrained(tmp, safe_serialization=True)
            for name in PEFT_FILES:
                os.replace(Path(tmp) / name, out_dir / name)
        save_tensors(out_dir / HEAD_FILE, head_state(model))

    def load(self, out_dir: Path, loaded: LoadedBackbone, num_classes: int) -> ClassifierModel:
        from peft import PeftModel
        from torch import nn

        from progbench.models.checkpoints import load_strict, read_state_dict, take_prefixed
        from progbench.models.strategies.classifier import ClassifierModel

        check_unclaimed(loaded)
        res = self.resolve(loaded.spec, loaded.encoder)
        claim_encoder(loaded)
        loaded.encoder.requires_grad_(False)
        backbone = PeftModel.from_pretrained(loaded.encoder, str(out_dir), is_trainable=True)
        first = next(loaded.encoder.parameters())
        variant = self.variant_for(loaded.spec)
        dim = variant.dim(loaded.spec.feature_dim)
        head = nn.Linear(dim, num_classes, device=first.device, dtype=first.dtype)
        state = take_prefixed(read_state_dict(out_dir / HEAD_FILE), f"{HEAD_NAME}.")
        load_strict(head, state, str(out_dir / HEAD_FILE))
        return ClassifierModel(
            backbone,
            head,
            loaded.spec,
            self,
            res,
            loaded.weights,
            loaded.weights_fingerprint,
            variant,
        )


def _conv1d() -> type:
    from transformers.pytorch_utils import Conv1D

    return Conv1D


@register_kind("lora")
class LoRA(PeftStrategy):
    method = "lora"
    config_class = "LoraConfig"
    set_by_progbench = ("r", "lora_alpha", "lora_dropout", "target_modules", "bias")

    def supported_types(self) -> tuple[type, ...]:
        from torch import nn

        # peft 0.21: lora `_create_new_module`.
        return (
            nn.Linear,
            nn.Conv1d,
            nn.Conv2d,
            nn.Conv3d,
            nn.Embedding,
            nn.MultiheadAttention,
            _conv1d(),
        )

    def peft_config(self, res: Resolution) -> Any:
        from peft import LoraConfig

        s = self.spec
        assert s.rank is not None and s.alpha is not None  # StrategySpec requires both for lora
        return LoraConfig(
            r=s.rank,
            # peft annotates lora_alpha as int, but any number works (scaling = alpha / r)
            lora_alpha=s.alpha,  # type: ignore[arg-type]
            lora_dropout=s.dropout,
            target_modules=res.target_modules,
            bias="none",
            **s.peft_options,
        )


@register_kind("vera")
class VeRA(PeftStrategy):
    method = "vera"
    config_class = "VeraConfig"
    set_by_progbench = ("r", "vera_dropout", "target_modules", "save_projection")

    def supported_types(self) -> tuple[type, ...]:
        from torch import nn

        return (nn.Linear, _conv1d())

    def peft_config(self, res: Resolution) -> Any:
        from peft import VeraConfig

        s = self.spec
        assert s.rank is not None  # StrategySpec requires it for vera
        return VeraConfig(
            r=s.rank,
            vera_dropout=s.dropout,
            target_modules=res.target_modules,
            save_projection=True,  # the adapter file then reproduces the model on its own
            **s.peft_options,
        )


@register_kind("ia3")
class IA3(PeftStrategy):
    method = "ia3"
    config_class = "IA3Config"
    set_by_progbench = ("target_modules", "feedforward_modules")

    def supported_types(self) -> tuple[type, ...]:
        from torch import nn

        return (nn.Linear, nn.Conv2d, nn.Conv3d, _conv1d())

    def peft_config(self, res: Resolution) -> Any:
        from peft import IA3Config

        # IA3 on a model that is not a transformers PreTrainedModel needs explicit feed-forward
        # modules; an empty list is allowed.
        return IA3Config(
            target_modules=res.target_modules,
            feedforward_modules=res.feedforward_modules,
            **self.spec.peft_options,
        )


# peft methods that train correctly only with calls the streamed trainer does not make.
NEEDS_THE_TRAINER = {
    "AdaLoraConfig": "AdaLoRA reallocates ranks through PeftModel.update_and_allocate(step) after "
    "each optimizer step, which progbench's trainer does not call; without it AdaLoRA would "
    "silently be a fixed-rank SVD-style LoRA",
}


@register_kind("peft")
class PeftMethodStrategy(PeftStrategy):
    """Any peft method from the preset alone: `peft.config` names a config class of `peft`
    (LoraConfig with use_dora, LoHaConfig, LoKrConfig, OFTConfig...), `peft.options` are its
    keyword arguments, `peft.targets` the backbone target set handed to it as `target_modules`
    (and `feedforward_modules`, where the class takes them). Which layer types the method can
    adapt is peft's to say: whatever it adapts must equal what the targets match."""

    set_by_progbench = PEFT_SET_BY_PROGBENCH

    def __init__(self, spec: StrategySpec, variant: Variant | None = None) -> None:
        super().__init__(spec, variant)
        assert spec.peft is not None  # StrategySpec requires it for kind peft
        self.method = spec.peft.targets
        self.config_class = spec.peft.config

    def supported_types(self) -> tuple[type, ...] | None:
        return None

    def peft_config(self, res: Resolution) -> Any:
        import dataclasses

        import peft

        cls = getattr(peft, self.config_class, None)
        if not (isinstance(cls, type) and issubclass(cls, peft.PeftConfig)):
            known = sorted(n for n in dir(peft) if n.endswith("Config") and n != "PeftConfig")
            raise ValueError(
                f"peft {peft.__version__} has no config class {self.config_class!r}; "
                f"it has {', '.join(known)}"
            )
        if self.config_class in NEEDS_THE_TRAINER:
            raise ValueError(f"{self.config_class}: {NEEDS_THE_TRAINER[self.config_class]}")
        assert self.spec.peft is not None
        kwargs: dict[str, Any] = {**self.spec.peft.options, "target_modules": res.target_modules}
        if "feedforward_modules" in {f.name for f in dataclasses.fields(cls)}:
            kwargs["feedforward_modules"] = res.feedforward_modules
        elif res.feedforward_modules:
            raise ValueError(f"{self.config_class} takes no `feedforward` modules")
        return cls(**kwargs)


def head_state(model: ClassifierModel) -> dict[str, Any]:
    return {f"{HEAD_NAME}.{k}": v for k, v in model.progbench_head.state_dict().items()}
