"""Schema of progbench/configs/probes/*.yaml: the linear-probe presets (`--probe NAME`).

A preset is the LP's whole search: the solver, its hyper-parameter grid and the feature
variants (docs/METHODOLOGY.md, section 5). Presets live in `progbench/configs/probes/` plus
every folder named in `$PROGBENCH_PROBES_DIR` (os.pathsep-separated); a file's name (without
.yaml) must equal its `name`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from progbench.config.base import StrictModel, parse_model, read_yaml
from progbench.config.keys import DESCRIPTIVE, IDENTITY, Identity, Recorded
from progbench.config.models import REGISTRY_NAME_PATTERN
from progbench.config.variants import VariantGrid
from progbench.errors import ConfigError

PROBES_DIR = Path(__file__).resolve().parent.parent / "configs" / "probes"
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


def probe_files() -> dict[str, Path]:
    folders = [PROBES_DIR]
    for p in os.environ.get(PROBES_DIR_ENV, "").split(os.pathsep):
        if p and not Path(p).expanduser().is_dir():
            raise ConfigError(f"${PROBES_DIR_ENV} names {p}, which is not a directory")
        if p:
            folders.append(Path(p).expanduser())
    files: dict[str, Path] = {}
    for folder in folders:
        for f in sorted(folder.glob("*.yaml")):
            if f.stem in files:
                raise ConfigError(f"probe preset {f.stem!r} is defined twice: {files[f.stem]}, {f}")
            files[f.stem] = f
    return files


def load_probe_preset(name: str) -> ProbePreset:
    files = probe_files()
    if name not in files:
        raise ConfigError(
            f"unknown probe preset {name!r}",
            f"Use one of: {', '.join(sorted(files))} (or add <name>.yaml to a folder named by "
            f"${PROBES_DIR_ENV}).",
        )
    preset = parse_model(ProbePreset, read_yaml(files[name]), str(files[name]))
    if preset.name != name:
        raise ConfigError(f"{files[name]}: `name` is {preset.name!r}; name the file {name}.yaml")
    return preset
