"""Schema of progbench/configs/probes/*.yaml: the linear-probe presets (`--probe NAME`).

A preset is the LP's whole search: the solver, its hyper-parameter grid and the feature
variants (docs/METHODOLOGY.md, section 5). Presets live in `progbench/configs/probes/` plus
every folder named in `$PROGBENCH_PROBES_DIR` (os.pathsep-separated); a file's name (without
.yaml) must equal its `name`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from progbench.config.base import StrictModel
from progbench.config.keys import DESCRIPTIVE, IDENTITY, Identity, Recorded
from progbench.config.models import REGISTRY_NAME_PATTERN
from progbench.config.registry import CONFIGS_DIR, Registry
from progbench.config.variants import DEFAULT_VARIANT, Variant, VariantGrid
from progbench.errors import ConfigError

PROBES_DIR = CONFIGS_DIR / "probes"
PROBES_DIR_ENV = "PROGBENCH_PROBES_DIR"
ADAM = Identity(only_if=(("solver", "adam"),))  # used by the adam solver only
Solver = Literal["lbfgs", "adam"]


class ProbePreset(StrictModel):
    """A linear probe's whole search, from its YAML file or built in code (the one schema:
    progbench.train.probe.ProbeConfig adds the solver's methods, no field). An LP run's identity
    is its content (variants by name), never its name or description."""

    name: Annotated[str, Recorded("its content is the identity")] = Field(
        default="custom", pattern=REGISTRY_NAME_PATTERN
    )
    description: Annotated[str, DESCRIPTIVE] = ""
    solver: Annotated[Solver, IDENTITY] = "lbfgs"
    weight_decays: Annotated[tuple[float, ...], IDENTITY] = Field(
        default=(1e-4, 1e-3, 1e-2, 1e-1, 1.0), min_length=1
    )
    # adam only: the reference study's head-lr grid
    lrs: Annotated[tuple[float, ...], ADAM] = Field(default=(1e-2, 1e-3, 1e-4), min_length=1)
    max_steps: Annotated[int, IDENTITY] = Field(default=600, ge=1)  # lbfgs iterations, adam steps
    eval_every: Annotated[int, ADAM] = Field(default=10, ge=1)
    # adam only: evaluations without a better validation loss
    patience: Annotated[int, ADAM] = Field(default=10, ge=1)
    # Asked for, in search order (YAML: a VariantGrid mapping); each backbone contributes the
    # ones it offers (its YAML's `variants:`).
    variants: Annotated[tuple[Variant, ...], IDENTITY] = Field(
        default=(DEFAULT_VARIANT,), min_length=1
    )

    @field_validator("variants", mode="before")
    @classmethod
    def _grid(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        try:
            return tuple(VariantGrid.model_validate(v).variants())
        except ValidationError as err:
            raise ValueError(
                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            ) from None


PROBES = Registry(
    PROBES_DIR,
    PROBES_DIR_ENV,
    ProbePreset,
    label="probe preset",
    error=ConfigError,
    unknown_hint=lambda names: (
        f"Use one of: {', '.join(names)} (or add <name>.yaml to a folder "
        f"named by ${PROBES_DIR_ENV})."
    ),
)


def probe_files() -> dict[str, Path]:
    return PROBES.paths()


def load_probe_preset(name: str) -> ProbePreset:
    return PROBES.load(name)
