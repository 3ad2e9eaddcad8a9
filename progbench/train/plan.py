"""Which runs one `progbench train` call makes, the same rule for every strategy.

The splits are made (or read and checked) once per parameter set and saved beside the runs, so
every strategy and backbone of a study is trained and tested on the same patients. The runs are
the full-data run of every fold plus, for each k asked for with `--shots`, the draws
`repeat < --repeats` of every fold. A splits file given with `--splits` and no `--shots` runs
every draw it holds (never skipped in silence); with `--shots`, the draws asked for, and draws
asked for but absent from the file are an error naming what it holds. A split option given with
`--splits` that the file contradicts (`--val-fraction 0.3` for a file made with 0.2) is refused.

Every run carries, in its spec's `settings`, what the data of its fold is (a fingerprint of its
train, validation and test images and their labels), the split's parameters and the task's
definition, so a finished run made from other splits or other labels is never reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from progbench.atomic import atomic_write_json
from progbench.config.keys import IDENTITY, Identity, Recorded, identity_of
from progbench.data.fewshot import add_fewshot
from progbench.data.manifest import Task
from progbench.data.splitcheck import check_splits
from progbench.data.splits import (
    SPLITS_VERSION,
    FewShotDraw,
    Fold,
    Splits,
    make_splits,
    read_splits,
    resolve_scheme,
    scheme_warnings,
)
from progbench.errors import SplitError
from progbench.provenance import fingerprint
from progbench.runs import RunSpec

# Which of the planned runs to make: no part of a split or of a run.
_WHICH_RUNS = Recorded("which of the planned runs to make")


@dataclass(frozen=True)
class SplitRequest:
    """The split's parameters: each identity field names another splits file (`splits_path`,
    checked by tests/test_keys.py) and so other splits; the runs record the file's parameters
    and images (`settings.split`, `settings.data`)."""

    # auto | loco | kfold | holdout (data.splits.resolve_scheme), resolved before it is keyed
    scheme: Annotated[str, IDENTITY] = "auto"
    folds: Annotated[int, Identity(only_if=(("scheme", "kfold"),))] = 5
    val_fraction: Annotated[float, IDENTITY] = 0.2
    seed: Annotated[int, IDENTITY] = 42
    shots: Annotated[tuple[int, ...], IDENTITY] = ()
    repeats: Annotated[int, IDENTITY] = 5  # with shots
    per_center: Annotated[bool, IDENTITY] = False  # with shots
    test_fraction: Annotated[float, Identity(only_if=(("scheme", "holdout"),))] = 0.2
    splits_file: Annotated[Path | None, Recorded("its splits are the runs' data")] = None
    # Which of the planned runs to make (a sweep's cells split them): the full-data runs, the
    # few-shot draws, and only the first `max_folds` folds (quick studies).
    regimes: Annotated[tuple[str, ...], _WHICH_RUNS] = ("full", "fewshot")
    max_folds: Annotated[int | None, _WHICH_RUNS] = None


@dataclass(frozen=True)
class Problem:
    """One run to make: its spec, its training images (a fold's or a draw's), and its fold,
    whose validation and test parts are never subsampled."""

    spec: RunSpec
    train_ids: list[str]
    fold: Fold


def splits_path(task: Task, req: SplitRequest, scheme: str, runs_root: Path) -> Path:
    """`<runs>/<task>/splits-<every parameter>-v<SPLITS_VERSION>.json`: other parameters or
    another splitting rule, another file."""
    tag = f"{scheme}" + (f"-{req.folds}folds" if scheme == "kfold" else "")
    tag += f"-val{req.val_fraction:g}-seed{req.seed}"
    if scheme == "holdout":
        tag += f"-test{req.test_fraction:g}"
    if req.shots:
        center = "-percenter" if req.per_center else ""
        tag += f"-shots{'_'.join(map(str, req.shots))}x{req.repeats}{center}"
    return runs_root / task.name / f"splits-{tag}-v{SPLITS_VERSION}.json"


def _given_against_file(splits: Splits, req: SplitRequest, path: Path) -> None:
    """Refuse split options given with `--splits` that the file contradicts. An option left at
    its default takes the file's value; one set to another value must equal the file's."""
    default = SplitRequest()
    conflicts = []
    if req.scheme not in (default.scheme, splits.scheme):
        conflicts.append(f"--scheme {req.scheme} (the file: {splits.scheme})")
    if req.folds != default.folds:
        if splits.scheme != "kfold":
            conflicts.append(f"--folds {req.folds} (the file: scheme {splits.scheme}, no folds)")
        elif req.folds != (splits.n_folds or len(splits.folds)):
            conflicts.append(
                f"--folds {req.folds} (the file: {splits.n_folds or len(splits.folds)})"
            )
    if req.val_fraction != default.val_fraction and req.val_fraction != splits.val_fraction:
        conflicts.append(f"--val-fraction {req.val_fraction:g} (the file: {splits.val_fraction:g})")
    if req.seed != default.seed and req.seed != splits.seed:
        conflicts.append(f"--seed {req.seed} (the file: {splits.seed})")
    file_center = bool((splits.fewshot_config or {}).get("per_center"))
    if req.per_center and not file_center:
        conflicts.append("--per-center (the file's draws are not per centre)")
    if conflicts:
        raise SplitError(
            f"{path} was made with other split settings than those given: " + "; ".join(conflicts),
            "Leave these options out to use the file as it is, or write splits with them "
            "(`progbench splits ... --out FILE`), or leave out --splits.",
        )


def resolve_splits(task: Task, req: SplitRequest, runs_root: Path) -> tuple[Splits, Path, str]:
    """The splits (read from `--splits` or the saved file, else made and saved), their path, and
    a note saying which scheme was used and why (with a warning line when `auto` chose LOCO on
    a cohort with a small class in a training part)."""
    if req.splits_file is not None:
        path = req.splits_file
        splits = read_splits(path)
        _given_against_file(splits, req, path)
        note = f"{splits.scheme} (from {path})"
        if splits.version < SPLITS_VERSION:
            note += (
                f"; made by an older progbench (splits version {splits.version}: validation "
                "parts of the old rule, see METHODOLOGY.md)"
            )
    else:
        scheme, note = resolve_scheme(task, req.scheme)
        warnings = scheme_warnings(task, req.scheme, scheme)
        note = "\n".join([note, *(f"warning: {w}" for w in warnings)])
        path = splits_path(task, req, scheme, runs_root)
        if path.is_file():
            splits = read_splits(path)
        else:
            splits = make_splits(
                task, scheme, req.folds, req.val_fraction, req.seed, req.test_fraction
            )
            if req.shots:
                splits = add_fewshot(splits, task, list(req.shots), req.repeats, req.per_center)
            atomic_write_json(path, splits.to_json())
    if splits.manifest_fingerprint != task.manifest.grouping_fingerprint():
        raise SplitError(
            f"splits {path} were made for another manifest (other image ids, patients or centres)",
            "Remove the splits file (and the runs made with it) or pass matching --splits.",
        )
    check_splits(splits, task, path)
    return splits, path, f"scheme {note}"


def select_draws(splits: Splits, req: SplitRequest, source: Path) -> dict[int, list[FewShotDraw]]:
    """Per fold, the draws asked for: k in `req.shots`, repeat < `req.repeats`. With a splits
    file (`--splits`) and no `--shots`, the file's k values: every draw it holds, or with
    `--repeats`, the first that many repeats of each."""
    present = sorted({(d.shots, d.repeat) for f in splits.folds for d in f.fewshot})
    if req.shots:
        wanted = {(k, r) for k in req.shots for r in range(req.repeats)}
    elif req.splits_file is None:
        wanted = set()
    elif req.repeats == SplitRequest().repeats:
        wanted = set(present)
    else:
        wanted = {(k, r) for k in {k for k, _ in present} for r in range(req.repeats)}
    missing = sorted(wanted - set(present))
    if missing:
        ks = sorted({k for k, _ in present})
        reps = max((r for _, r in present), default=-1) + 1
        raise SplitError(
            f"{source} holds no few-shot draw for {_draws(missing)}; it holds k = "
            f"{', '.join(map(str, ks)) or 'none'} with {reps} repeat(s)",
            "Ask for draws it holds (--shots, --repeats), or write splits with those draws.",
        )
    return {f.fold: [d for d in f.fewshot if (d.shots, d.repeat) in wanted] for f in splits.folds}


def _draws(pairs: list[tuple[int, int]]) -> str:
    by_k: dict[int, list[int]] = {}
    for k, r in pairs:
        by_k.setdefault(k, []).append(r)
    return "; ".join(f"k={k} repeat(s) {', '.join(map(str, rs))}" for k, rs in by_k.items())


def data_fingerprint(task: Task, train: list[str], val: list[str], test: list[str]) -> str:
    """The images of a run's parts and their labels: other splits or labels, another value."""
    pos = {iid: i for i, iid in enumerate(task.manifest.frame["image_id"])}

    def part(ids: list[str]) -> list[list[Any]]:
        rows = np.array([pos[i] for i in ids], dtype=np.int64)
        return [sorted(ids), task.labels[rows].tolist() if len(rows) else []]

    return fingerprint({"train": part(train), "val": part(val), "test": part(test)})


def task_definition(task: Task) -> dict[str, Any]:
    """The task's identity fields (progbench.config.keys): never its description."""
    return identity_of(task.config)


def plan_runs(
    task: Task,
    splits: Splits,
    req: SplitRequest,
    source: Path,
    identity: dict[str, Any],
    settings: dict[str, Any],
    records: dict[str, Any] | None = None,
) -> list[Problem]:
    """Every run of the request: `identity` holds backbone, weights, weights_fingerprint and
    strategy; `settings` the strategy's own identity settings (hyper-parameters, features);
    `records` goes into every run's `extra`."""
    draws = select_draws(splits, req, source)
    regime = "fewshot-center" if (splits.fewshot_config or {}).get("per_center") else "fewshot"
    common: dict[str, Any] = {
        **identity,
        "task": task.name,
        "seed": splits.seed,
        "scheme": splits.scheme,
    }
    split = splits.parameters()
    out = []
    folds = splits.folds[: req.max_folds] if req.max_folds is not None else splits.folds
    for fold in folds:
        extra = {"test_center": fold.test_center, "splits_file": str(Path(source).resolve())}
        extra |= records or {}
        parts: list[tuple[FewShotDraw | None, list[str]]] = (
            [(None, fold.train)] if "full" in req.regimes else []
        )
        if "fewshot" in req.regimes:
            parts += [(d, d.train) for d in draws[fold.fold]]
        for draw, train in parts:
            run_settings = {
                **settings,
                "split": split | ({"per_center": regime == "fewshot-center"} if draw else {}),
                "task": task_definition(task),
                "data": data_fingerprint(task, list(train), fold.val, fold.test),
            }
            fields: dict[str, Any] = (
                {"regime": "full"}
                if draw is None
                else {
                    "regime": regime,
                    "shots": draw.shots,
                    "repeat": draw.repeat,
                }
            )
            spec = RunSpec(**common, **fields, fold=fold.fold, settings=run_settings, extra=extra)
            out.append(Problem(spec, list(train), fold))
    return out
