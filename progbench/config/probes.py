"""Schema of progbench/configs/probes/*.yaml: the linear-probe presets (`--probe NAME`).

A preset is the LP's whole search: the solver, its hyper-parameter grid and the feature
variants (docs/METHODOLOGY.md, section 5). Presets live in `progbench/configs/probes/` plus
every folder named in `$PROGBENCH_PROBES_DIR` (os.pathsep-separated); a file's name (without
.yaml) must equal its `name`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from progbench.config.base import StrictModel
from progbench.config.keys import DESCRIPTIVE, IDENTITY, Identity, Recorded
from progbench.config.models import REGISTRY_NAME_PATTERN
from progbench.config.registry import CONFIGS_DIR, Registry
from progbench.config.variants import VariantGrid
from progbench.errors import ConfigError

PROBES_DIR = CONFIGS_DIR / "probes"
PROBES_DIR_ENV = "PROGBENCH_PROBES_DIR"
ADAM = Identity(only_if=(("solver", "adam"),))  # used by the adam solver only


class ProbePreset(StrictModel):
    """Its identity fields are progbench.train.probe.ProbeConfig's (checked by a test): an LP
    run's identity is the preset's content, never its name or description."""

    name: Annotated[str, Recorded("its content is the identity")] = Field(
        pattern=REGISTRY_NAME_PATTERN
    )
    description: Annotated[str, DESCRIPTIVE] = ""
    solver: Annotated[Literal["lbfgs", "adam"], IDENTITY] = "lbfgs"
    weight_decays: Annotated[list[float], IDENTITY] = Field(min_length=1)
    lrs: Annotated[list[float], ADAM] = Field(
        default_factory=lambda: [1e-2, 1e-3, 1e-4], min_length=1
    )
    max_steps: Annotated[int, IDENTITY] = Field(default=600, ge=1)
    eval_every: Annotated[int, ADAM] = Field(default=10, ge=1)
    patience: Annotated[int, ADAM] = Field(default=10, ge=1)
    # Asked for; each backbone contributes the ones it offers (its YAML's `variants:`).
    variants: Annotated[VariantGrid, IDENTITY] = Field(default_factory=VariantGrid)


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
