"""Loading a sweep file: by path, or by the name of a preset in progbench/configs/sweeps/.

Relative paths in a sweep (runs, cache, tasks, weights) resolve against its root: the file's
folder for a file given by path, the current folder (or `--root`) for a preset given by name.
Every name is checked against the registries here, before any work, and each error names the
file and the key. A task whose file does not exist yet is kept when the sweep declares its
cohort's size (it is "not prepared": `plan` counts it, `run` refuses it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from progbench.config import parse_model, read_yaml
from progbench.config.registry import CONFIGS_DIR, Registry
from progbench.config.sweeps import Family, SweepConfig, TaskEntry
from progbench.errors import ConfigError, ProgbenchError
from progbench.models.registry import (
    get_backbone_spec,
    get_strategy_spec,
    list_backbones,
    list_strategies,
)
from progbench.models.strategies import Strategy, get_strategy
from progbench.train.options import FinetuneOptions

if TYPE_CHECKING:
    from progbench.data.manifest import Task  # pandas: only a prepared task needs it

PRESETS_DIR = CONFIGS_DIR / "sweeps"
SWEEPS = Registry(PRESETS_DIR, None, SweepConfig, label="sweep preset", error=ConfigError)
BACKBONE_GROUPS = ("all", "cnn", "fm")
FAMILIES = ("lp", "peft", "fft")


@dataclass(frozen=True)
class SweepTask:
    name: str
    path: Path
    entry: TaskEntry
    task: Task | None  # None: not prepared (its file does not exist yet)

    @property
    def prepared(self) -> bool:
        return self.task is not None


@dataclass(frozen=True)
class Sweep:
    config: SweepConfig
    source: Path
    root: Path
    tasks: list[SweepTask]
    backbones: list[str]
    strategies: list[str]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def runs_root(self) -> Path:
        return (self.root / self.config.runs).resolve()

    @property
    def cache_dir(self) -> Path | None:
        return None if self.config.cache is None else (self.root / self.config.cache).resolve()

    @property
    def state_dir(self) -> Path:
        """`<runs>/.sweep/<name>/`: cell states, logs and SLURM job files."""
        return self.runs_root / ".sweep" / self.name

    @cached_property
    def strategy_objects(self) -> dict[str, Strategy]:
        return {s: get_strategy(s) for s in self.strategies}

    def family(self, strategy: str) -> Family:
        """lp (cached features), fft (whole model) or peft (adapters, biases): resources."""
        s = self.strategy_objects[strategy]
        return "lp" if s.path == "features" else "fft" if s.full_state else "peft"

    @property
    def weights_dir(self) -> Path | None:
        """`weights_dir`: local pretrained weights (progbench weights fetch), for every unit."""
        d = self.config.weights_dir
        return None if d is None else (self.root / Path(d).expanduser()).resolve()

    def weights_for(self, backbone: str) -> str:
        w = self.config.weights
        value = w if isinstance(w, str) else w.get(backbone, "pretrained")
        if value in ("pretrained", "random"):
            return value
        return str((self.root / value).resolve())

    def options_for(self, strategy: str, task: str | None = None) -> FinetuneOptions:
        """train's options for a strategy's runs on a task: the training preset `train.preset`
        (default `default`, with its batch size for the task), then the rest of `train`, then
        `strategy_train` of the strategy's family (lp, peft, fft), then of the strategy."""
        key = (strategy, task)
        if key not in self._options:
            from progbench.train.presets import DEFAULT_PRESET, resolve_training

            train = dict(self.config.train)
            preset = train.pop("preset", DEFAULT_PRESET)
            by = self.config.strategy_train
            overrides = train | by.get(self.family(strategy), {}) | by.get(strategy, {})
            opts = resolve_training(preset, task, overrides, f"{self.source}, keys `train`")
            self._options[key] = dataclasses.replace(opts, cache_dir=self.cache_dir)
        return self._options[key]

    @cached_property
    def _options(self) -> dict[tuple[str, str | None], FinetuneOptions]:
        return {}

    def fewshot_strategies(self) -> list[str]:
        fs = self.config.fewshot
        if fs is None:
            return []
        return list(fs.strategies) if fs.strategies is not None else list(self.strategies)


def _fail(source: Path, key: str, message: str, hint: str) -> ConfigError:
    return ConfigError(f"{source}, key `{key}`: {message}", hint)


def resolve_source(source: str | Path) -> Path:
    """A sweep file by path, or a preset by name (`ruffini2025`, `demo`)."""
    path = Path(source)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"sweep file not found: {path}", "Check the path.")
        return path.resolve()
    presets = SWEEPS.paths()
    if str(source) in presets:
        return presets[str(source)]
    names = sorted(presets)
    raise ConfigError(
        f"no sweep file or preset named {source!r}",
        f"Give the path of a sweep YAML, or a preset: {', '.join(names)}.",
    )


def _expand_backbones(source: Path, names: list[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        if n in BACKBONE_GROUPS:
            group = list_backbones()
            if n != "all":
                group = [b for b in group if get_backbone_spec(b).is_cnn == (n == "cnn")]
            out += group
            continue
        try:
            get_backbone_spec(n)
        except ProgbenchError as err:
            raise _fail(source, "backbones", err.message, err.hint or "") from err
        out.append(n)
    return list(dict.fromkeys(out))


def _expand_strategies(source: Path, key: str, names: list[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        if n == "all":
            out += list_strategies()
            continue
        try:
            get_strategy_spec(n)
        except ProgbenchError as err:
            raise _fail(source, key, err.message, err.hint or "") from err
        out.append(n)
    return list(dict.fromkeys(out))


def _check_train(source: Path, key: str, overrides: dict[str, Any]) -> None:
    fields = {f.name for f in dataclasses.fields(FinetuneOptions)} - {"cache_dir"}
    if key == "train" and "preset" in overrides:
        from progbench.config.training import get_training_preset

        try:
            get_training_preset(str(overrides["preset"]))
        except ProgbenchError as err:
            raise _fail(source, "train.preset", err.message, err.hint or "") from err
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise _fail(
            source, key, f"unknown setting(s) {unknown}", f"Known: {', '.join(sorted(fields))}."
        )


def _load_task(source: Path, root: Path, entry: str | TaskEntry, load: bool) -> SweepTask:
    entry = entry if isinstance(entry, TaskEntry) else TaskEntry(path=entry)
    path = (root / entry.path).resolve()
    if path.is_file():
        from progbench.data.manifest import load_task

        task = load_task(path) if load else None
        name = task.name if task is not None else (entry.name or path.stem)
        return SweepTask(name, path, entry, task)
    if entry.cohort is None:
        raise _fail(
            source,
            "tasks",
            f"task file {path} does not exist",
            "Prepare the data (`progbench prepare ...`), fix the path (relative to "
            f"{root}), or declare the task's `cohort:` size to plan it without the data.",
        )
    return SweepTask(entry.name or path.stem, path, entry, None)


def load_sweep(
    source: str | Path, root: str | Path | None = None, load_tasks: bool = True
) -> Sweep:
    """Read and check a sweep; `root` overrides where its relative paths start."""
    path = resolve_source(source)
    base = (
        Path(root).resolve()
        if root is not None
        else (Path.cwd() if path.parent == PRESETS_DIR else path.parent)
    )
    config: SweepConfig = (
        SWEEPS.load(path.stem)
        if path.parent == PRESETS_DIR
        else parse_model(SweepConfig, read_yaml(path), str(path))
    )
    backbones = _expand_backbones(path, config.backbones)
    strategies = _expand_strategies(path, "strategies", config.strategies)
    if config.fewshot and config.fewshot.strategies is not None:
        extra = set(_expand_strategies(path, "fewshot.strategies", config.fewshot.strategies))
        if extra - set(strategies):
            raise _fail(
                path,
                "fewshot.strategies",
                f"{sorted(extra - set(strategies))} are not strategies of the sweep",
                "List few-shot strategies among `strategies`.",
            )
    _check_train(path, "train", config.train)
    for name, overrides in config.strategy_train.items():
        if name not in strategies and name not in FAMILIES:
            raise _fail(
                path,
                "strategy_train",
                f"{name!r} is neither a strategy of the sweep nor a family",
                f"Use a strategy name or one of {', '.join(FAMILIES)}.",
            )
        _check_train(path, f"strategy_train.{name}", overrides)
    if isinstance(config.weights, dict):
        unknown = sorted(set(config.weights) - set(backbones))
        if unknown:
            raise _fail(path, "weights", f"{unknown} are not backbones of the sweep", "")
    tasks = [_load_task(path, base, t, load_tasks) for t in config.tasks]
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise _fail(path, "tasks", f"two tasks have the same name: {names}", "Rename one.")
    return Sweep(config, path, base, tasks, backbones, strategies)
