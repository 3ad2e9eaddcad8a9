"""The Strategy interface: what every adaptation strategy does, whatever its kind.

A strategy is a YAML preset (StrategySpec) bound to the class of its `kind`. It says whether it
applies to a backbone (and why not), which training path it takes (`features`: fitted on the
feature cache (progbench.train.solvers); `stream`: images streamed through the model), builds the
trainable classifier, names its trainable state, and saves and loads what training changed.
A streamed classifier's head reads one feature variant (`variant`; the preset's `variants`
grid, each variant its own trained candidate). Nothing outside
`progbench.models.strategies` looks at a strategy's name or kind.

Nothing is a silent no-op: every adapter target must match at least one module of a type the
method supports, and parameters the feature path never reaches (the backbone spec's
`unused_parameters`) stay frozen.
"""

from __future__ import annotations

import contextlib
from abc import ABC
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from progbench.config import DEFAULT_VARIANT, BackboneSpec, StrategySpec, Variant
from progbench.config.variants import offered
from progbench.errors import NotApplicableError, ProgbenchError, RegistryError
from progbench.models.strategies.resolution import Resolution
from progbench.models.strategies.tensors import load_subset, save_tensors

# torch loads on first use: `progbench sweep plan` reads strategies without building a model.
if TYPE_CHECKING:
    import torch
    from torch import nn

    from progbench.models.loaders import LoadedBackbone
    from progbench.models.strategies.classifier import ClassifierModel

_CLAIMED = "_progbench_claimed"
TrainingPath = Literal["features", "stream"]


def unused_parameters(spec: BackboneSpec, encoder: nn.Module) -> set[str]:
    names = dict(encoder.named_parameters())
    missing = [n for n in spec.unused_parameters if n not in names]
    if missing:
        raise RegistryError(
            f"backbone {spec.name!r}: unused_parameters {missing} are not parameters of the encoder",
            "Use full parameter names as listed by encoder.named_parameters().",
        )
    return set(spec.unused_parameters)


def check_unclaimed(loaded: LoadedBackbone) -> None:
    """Refuse an encoder that is already part of a classifier: adapters and requires_grad change
    it in place, so building a second classifier on it would silently share it."""
    if getattr(loaded.encoder, _CLAIMED, False):
        raise ProgbenchError(
            f"the encoder of this {loaded.spec.name} LoadedBackbone is already part of a classifier",
            "Adapters and requires_grad change an encoder in place: call load_backbone again "
            "for each classifier.",
        )


def claim_encoder(loaded: LoadedBackbone) -> None:
    """Mark an encoder as part of a classifier (see check_unclaimed)."""
    check_unclaimed(loaded)
    setattr(loaded.encoder, _CLAIMED, True)


def seeded(seed: int | None) -> contextlib.AbstractContextManager[Any]:
    """Seed torch's global RNG inside the block without changing it outside."""
    if seed is None:
        return contextlib.nullcontext()
    import torch

    stack = contextlib.ExitStack()
    stack.enter_context(torch.random.fork_rng(devices=[]))
    torch.manual_seed(seed)
    return stack


class Strategy(ABC):
    """A strategy preset bound to its kind's behaviour. Subclasses set the class attributes and
    override what differs; the defaults describe a strategy that trains a subset of the
    backbone's parameters plus the head."""

    kind: ClassVar[str]
    path: ClassVar[TrainingPath] = "stream"
    # True: the trainable state is the whole state dict (parameters and BatchNorm statistics).
    full_state: ClassVar[bool] = False
    # True: frozen BatchNorm layers stay in eval mode while training (their statistics are not
    # saved with the trained state, and drifting ones would change the reloaded model).
    freeze_batchnorm: ClassVar[bool] = True

    # False: no parameter count (`progbench models` shows "-"), e.g. a random forest.
    counts_parameters: ClassVar[bool] = True

    def __init__(self, spec: StrategySpec, variant: Variant | None = None) -> None:
        self.spec = spec
        self.bound_variant = variant  # the head input; None: the first the backbone offers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r})"

    def with_variant(self, variant: Variant) -> Strategy:
        """The same preset with its head reading `variant` (one candidate of its grid)."""
        return type(self)(self.spec, variant)

    def head_variants(self, spec: BackboneSpec) -> list[Variant]:
        """The preset's variants that the backbone offers, in the preset's order."""
        return offered(self.spec.variant_grid, spec.variants)

    def variant_for(self, spec: BackboneSpec) -> Variant:
        if self.bound_variant is not None:
            return self.bound_variant
        found = self.head_variants(spec)
        return found[0] if found else DEFAULT_VARIANT

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def uses_peft(self) -> bool:
        return False

    @property
    def target_set(self) -> str | None:
        """The backbone target set its adapters go to (None: no adapters)."""
        return None

    @property
    def backbone_lr(self) -> float | None:
        return self.spec.backbone_lr

    def settings(self) -> dict[str, Any]:
        """The preset's content: part of every run's identity (another YAML, another run);
        derived from StrategySpec's declarations (progbench.config.keys)."""
        return self.spec.identity()

    # -------------------------------------------------------------------- applicability

    def resolve(self, spec: BackboneSpec, encoder: nn.Module | None = None) -> Resolution:
        """Whether the strategy applies to `spec`; with an encoder, checked on its modules."""
        base = self._base(spec)
        if (why := self.variant_reason(spec)) is not None:
            return Resolution(**base, applicable=False, reason=why)
        if encoder is None:
            return Resolution(**base, applicable=True)
        unused = unused_parameters(spec, encoder)
        names = [n for n, _ in encoder.named_parameters() if n not in unused]
        return self._resolve_parameters(base, names)

    def _base(self, spec: BackboneSpec) -> dict[str, Any]:
        return {"backbone": spec.name, "strategy": self.name, "kind": self.kind}

    def variant_reason(self, spec: BackboneSpec) -> str | None:
        """Why no variant of the preset fits the backbone (None: at least one does)."""
        if self.head_variants(spec):
            return None
        asked = ", ".join(self.spec.variant_grid.identity())
        offer = ", ".join(spec.variants.identity())
        return f"it reads feature variant(s) {asked}; the backbone offers {offer}"

    def _resolve_parameters(self, base: dict[str, Any], names: list[str]) -> Resolution:
        return Resolution(**base, applicable=True, checked=True)

    def refuse_if_not_applicable(
        self, spec: BackboneSpec, encoder: nn.Module | None = None
    ) -> Resolution:
        """The resolution, or NotApplicableError with the registry's reason."""
        res = self.resolve(spec, encoder)
        if not res.applicable:
            raise NotApplicableError(
                f"{self.name} cannot be used on {spec.name}: {res.reason}",
                "Pick another strategy; `progbench models` shows which pairs apply.",
            )
        return res

    def preflight(self, spec: BackboneSpec) -> None:
        """Check, before a command writes anything, that the strategy builds on `spec`. A kind
        whose build can fail on a backbone the YAML calls applicable (peft's) builds it here,
        weightless; the others have nothing to check beyond `refuse_if_not_applicable`."""
        return None

    # -------------------------------------------------------------------- building

    def adapt(self, encoder: nn.Module, res: Resolution) -> nn.Module:
        """The backbone module to train (the encoder is frozen when this is called)."""
        params = dict(encoder.named_parameters())
        for name in res.trainable_parameters:
            params[name].requires_grad_(True)
        return encoder

    def build(
        self, loaded: LoadedBackbone, num_classes: int = 2, seed: int | None = None
    ) -> ClassifierModel:
        """Wrap `loaded.encoder` for training (the encoder is changed in place). `seed` makes
        the head and adapter initialisation reproducible without touching the global RNG."""
        from torch import nn

        from progbench.models.strategies.classifier import ClassifierModel

        spec = loaded.spec
        check_unclaimed(loaded)
        res = self.refuse_if_not_applicable(spec, loaded.encoder)
        claim_encoder(loaded)
        encoder = loaded.encoder
        encoder.requires_grad_(False)
        first = next(encoder.parameters())
        variant = self.variant_for(spec)
        dim = variant.dim(spec.feature_dim)
        with seeded(seed):
            backbone = self.adapt(encoder, res)
            head = nn.Linear(dim, num_classes, device=first.device, dtype=first.dtype)
        return ClassifierModel(
            backbone, head, spec, self, res, loaded.weights, loaded.weights_fingerprint, variant
        )

    def set_train_mode(self, model: ClassifierModel) -> None:
        """Called after `model.train()`: frozen parts that must not drift go back to eval."""
        if self.freeze_batchnorm:
            from torch import nn

            for m in model.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    # -------------------------------------------------------------------- trained state

    def trainable_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Detached CPU copies of what training changes."""
        items: Iterable[tuple[str, torch.Tensor]]
        if self.full_state:
            items = model.state_dict().items()
        else:
            items = ((n, p) for n, p in model.named_parameters() if p.requires_grad)
        return {n: t.detach().to("cpu", copy=True) for n, t in items}

    def load_trainable(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        if self.full_state:
            model.load_state_dict(state, strict=True)
            return
        params = dict(model.named_parameters())
        missing = [n for n in state if n not in params]
        if missing:
            raise KeyError(f"trainable tensors not in the model: {missing[:5]}")
        import torch

        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)

    def save(self, model: ClassifierModel, out_dir: Path) -> None:
        """Write what training changed (the layout is the kind's; see strategies.files)."""
        trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
        save_tensors(out_dir / self.weights_file, trained)

    weights_file: ClassVar[str] = "trained.safetensors"

    def load(self, out_dir: Path, loaded: LoadedBackbone, num_classes: int) -> ClassifierModel:
        """Rebuild the saved classifier on `loaded` (which carries the same weights)."""
        from progbench.models.checkpoints import read_state_dict

        model = self.build(loaded, num_classes)
        file = out_dir / self.weights_file
        load_subset(model, read_state_dict(file), str(file))
        return model
