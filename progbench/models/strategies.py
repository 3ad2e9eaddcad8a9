"""Adaptation strategies: resolve a (backbone, strategy) pair and build the classifier.

LoRA, VeRA and IA3 come from HF peft (`get_peft_model` on the encoder; `inject_adapter_in_model`
cannot do VeRA). BitFit trains the backbone's biases, FFT everything, LP nothing; the linear head
(`progbench_head`, a name no library uses) always trains.

Nothing is a silent no-op: every adapter target must match at least one module of a type the
method supports, peft must adapt exactly the modules we matched, and parameters the feature path
never reaches (the spec's `unused_parameters`) stay frozen.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from progbench.config import BackboneSpec, StrategySpec
from progbench.errors import ConfigError, NotApplicableError, ProgbenchError, RegistryError
from progbench.models.loaders import LoadedBackbone
from progbench.models.registry import get_strategy_spec

HEAD_NAME = "progbench_head"
_CLAIMED = "_progbench_claimed"


def _supported_types(kind: str) -> tuple[type, ...]:
    """Layer types each peft method can adapt (peft 0.21: lora/vera/ia3 `_create_new_module`)."""
    from transformers.pytorch_utils import Conv1D

    return {
        "lora": (
            nn.Linear,
            nn.Conv1d,
            nn.Conv2d,
            nn.Conv3d,
            nn.Embedding,
            nn.MultiheadAttention,
            Conv1D,
        ),
        "vera": (nn.Linear, Conv1D),
        "ia3": (nn.Linear, nn.Conv2d, nn.Conv3d, Conv1D),
    }[kind]


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


def _matches(name: str, target: str) -> bool:
    # peft's rule for a list of target_modules (tuners_utils.check_target_module_exists).
    return name == target or name.endswith("." + target)


def _unused(spec: BackboneSpec, encoder: nn.Module) -> set[str]:
    names = dict(encoder.named_parameters())
    missing = [n for n in spec.unused_parameters if n not in names]
    if missing:
        raise RegistryError(
            f"backbone {spec.name!r}: unused_parameters {missing} are not parameters of the encoder",
            "Use full parameter names as listed by encoder.named_parameters().",
        )
    return set(spec.unused_parameters)


def _match_targets(
    spec: BackboneSpec, kind: str, targets: list[str], encoder: nn.Module
) -> list[str]:
    modules = dict(encoder.named_modules())
    allowed = _supported_types(kind)
    matched: list[str] = []
    for t in targets:
        hits = [n for n in modules if _matches(n, t)]
        if not hits:
            leaves = [n for n, m in modules.items() if n and not list(m.children())][:8]
            raise RegistryError(
                f"backbone {spec.name!r}: {kind} target {t!r} matches no module",
                f"Targets are module names or suffixes, e.g. {', '.join(leaves)} ...",
            )
        wrong = sorted(
            {type(modules[n]).__name__ for n in hits if not isinstance(modules[n], allowed)}
        )
        if wrong:
            raise RegistryError(
                f"backbone {spec.name!r}: {kind} target {t!r} matches {', '.join(wrong)} modules, "
                f"which {kind} cannot adapt (it supports {', '.join(c.__name__ for c in allowed)})",
                f"Choose other targets, or set `targets.{kind}.not_applicable: <reason>` in the YAML.",
            )
        matched.extend(hits)
    return sorted(set(matched))


def resolve(
    spec: BackboneSpec, strategy: StrategySpec, encoder: nn.Module | None = None
) -> Resolution:
    """Resolve a pair. With an encoder, every target is checked against its modules."""
    kind = strategy.kind
    base: dict[str, Any] = {"backbone": spec.name, "strategy": strategy.name, "kind": kind}
    if kind in ("lora", "vera", "ia3"):
        t = spec.targets.for_kind(kind)  # type: ignore[arg-type]
        if t.not_applicable is not None:
            return Resolution(**base, applicable=False, reason=t.not_applicable.strip())
        base |= {"target_modules": list(t.modules), "feedforward_modules": list(t.feedforward)}
        if encoder is None:
            return Resolution(**base, applicable=True)
        _unused(spec, encoder)
        matched = _match_targets(spec, kind, t.modules, encoder)
        return Resolution(**base, applicable=True, matched_modules=matched, checked=True)
    if encoder is None:
        return Resolution(**base, applicable=True)
    unused = _unused(spec, encoder)
    names = [n for n, _ in encoder.named_parameters() if n not in unused]
    if kind == "bitfit":
        biases = [n for n in names if n.rsplit(".", 1)[-1] == "bias"]
        if not biases:
            return Resolution(
                **base, applicable=False, reason="the backbone has no bias parameters"
            )
        return Resolution(**base, applicable=True, trainable_parameters=biases, checked=True)
    trainable = names if kind == "fft" else []
    return Resolution(**base, applicable=True, trainable_parameters=trainable, checked=True)


def peft_config(strategy: StrategySpec, resolution: Resolution) -> Any:
    """The peft config object for a LoRA / VeRA / IA3 strategy on a resolved backbone."""
    from peft import IA3Config, LoraConfig, VeraConfig

    s, r = strategy, resolution
    try:
        if s.kind == "lora":
            return LoraConfig(
                r=s.rank,
                lora_alpha=s.alpha,
                lora_dropout=s.dropout,
                target_modules=r.target_modules,
                bias="none",
                **s.peft_options,
            )
        if s.kind == "vera":
            return VeraConfig(
                r=s.rank,
                vera_dropout=s.dropout,
                target_modules=r.target_modules,
                save_projection=True,  # the adapter file then reproduces the model on its own
                **s.peft_options,
            )
        # IA3 on a model that is not a transformers PreTrainedModel needs explicit feed-forward
        # modules; an empty list is allowed.
        return IA3Config(
            target_modules=r.target_modules,
            feedforward_modules=r.feedforward_modules,
            **s.peft_options,
        )
    except (TypeError, ValueError) as err:
        raise ConfigError(f"strategy {s.name!r}: peft rejects its settings: {err}") from err


class ClassifierModel(nn.Module):
    """Encoder (or a PeftModel around it) plus a linear head on the encoder's feature."""

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Linear,
        spec: BackboneSpec,
        strategy: StrategySpec,
        resolution: Resolution,
        weights: str,
        weights_fingerprint: str,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.progbench_head = head
        self.spec = spec
        self.strategy = strategy
        self.resolution = resolution
        self.weights = weights
        self.weights_fingerprint = weights_fingerprint

    @property
    def num_classes(self) -> int:
        return self.progbench_head.out_features

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        features = self.backbone(pixel_values)
        # A bf16-cast backbone feeding an fp32 head: match the head's dtype.
        return self.progbench_head(features.to(self.progbench_head.weight.dtype))

    def train(self, mode: bool = True) -> ClassifierModel:
        """Frozen parts stay in eval mode while training.

        LP: the whole backbone (its features must equal the frozen, extracted ones). PEFT and
        BitFit: BatchNorm layers, whose running statistics are not saved with an adapter; letting
        them drift would make a reloaded adapter differ from the trained model.
        """
        super().train(mode)
        if mode and self.strategy.kind == "lp":
            self.backbone.eval()
        elif mode and self.strategy.kind != "fft":
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.progbench_head.parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        """The backbone's trainable parameters (adapters, biases, or all for FFT)."""
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def describe(self) -> dict[str, Any]:
        from progbench.models.params import count_parameters

        c = count_parameters(self)
        return {
            "backbone": self.spec.name,
            "strategy": self.strategy.name,
            "kind": self.strategy.kind,
            "weights": self.weights,
            "weights_fingerprint": self.weights_fingerprint,
            "num_classes": self.num_classes,
            "target_modules": self.resolution.target_modules,
            "feedforward_modules": self.resolution.feedforward_modules,
            "trainable": c.trainable,
            "total": c.total,
            "percent": c.percent,
        }


def _check_unclaimed(loaded: LoadedBackbone) -> None:
    if getattr(loaded.encoder, _CLAIMED, False):
        raise ProgbenchError(
            f"the encoder of this {loaded.spec.name} LoadedBackbone is already part of a classifier",
            "Adapters and requires_grad change an encoder in place: call load_backbone again "
            "for each classifier.",
        )


def _claim(loaded: LoadedBackbone) -> None:
    _check_unclaimed(loaded)
    setattr(loaded.encoder, _CLAIMED, True)


def _seeded(seed: int | None) -> contextlib.AbstractContextManager[Any]:
    if seed is None:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=[]))
    torch.manual_seed(seed)
    return stack


def build_classifier(
    loaded: LoadedBackbone,
    strategy: str | StrategySpec,
    num_classes: int = 2,
    seed: int | None = None,
) -> ClassifierModel:
    """Wrap `loaded.encoder` for training with `strategy` (the encoder is changed in place).

    `seed` makes the head and adapter initialisation reproducible without touching the global
    RNG; without it they draw from torch's global RNG. Raises NotApplicableError with the reason
    when the pair cannot be built.
    """
    sspec = get_strategy_spec(strategy) if isinstance(strategy, str) else strategy
    spec = loaded.spec
    _check_unclaimed(loaded)
    res = resolve(spec, sspec, loaded.encoder)
    if not res.applicable:
        raise NotApplicableError(
            f"{sspec.name} cannot be used on {spec.name}: {res.reason}",
            "Pick another strategy; `progbench models` shows which pairs apply.",
        )
    _claim(loaded)
    encoder = loaded.encoder
    encoder.requires_grad_(False)
    first = next(encoder.parameters())
    with _seeded(seed):
        backbone: nn.Module = encoder
        if sspec.uses_peft:
            from peft import get_peft_model

            backbone = get_peft_model(encoder, peft_config(sspec, res))
            adapted = set(backbone.base_model.targeted_module_names)
            if adapted != set(res.matched_modules):
                raise RegistryError(
                    f"{sspec.name} on {spec.name}: peft adapted {len(adapted)} modules, "
                    f"progbench matched {len(res.matched_modules)}; they differ by "
                    f"{sorted(adapted ^ set(res.matched_modules))[:8]}"
                )
        else:
            params = dict(encoder.named_parameters())
            for name in res.trainable_parameters:
                params[name].requires_grad_(True)
        head = nn.Linear(spec.feature_dim, num_classes, device=first.device, dtype=first.dtype)
    return ClassifierModel(
        backbone, head, spec, sspec, res, loaded.weights, loaded.weights_fingerprint
    )
