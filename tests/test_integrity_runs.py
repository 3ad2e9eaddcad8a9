"""Runs and splits as a user meets them through the command line (issue 11): a finished run is
reused only for the same setup, splits files are keyed and checked, several schemes share a tree
that evaluate and report read (old layouts included), and bad input is named before any work.
Processes (concurrent, interrupted, killed) and OS errors: test_integrity_processes.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from progbench.runs import DONE_FILE, RunSpec, identity_diff, read_spec
from tests.helpers.cli import TINY, CliResult, cli, done_files, lp, task_of
from tests.helpers.cohorts import write_cohort

# One streamed run (holdout: one fold), one epoch, one head lr: the cheapest PEFT tree.
STREAM = (
    *TINY,
    "--strategy",
    "bitfit",
    "--scheme",
    "holdout",
    "--epochs",
    "1",
    "--eval-every",
    "1",
    "--lr-head",
    "0.01",
    "--lr-backbone",
    "0.0001",
)


# --------------------------------------------------------------- 1. identity of finished runs


@pytest.fixture(scope="module")
def stream_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(task, runs, cache) with one finished bitfit run made with STREAM."""
    root = tmp_path_factory.mktemp("stream")
    task = task_of(write_cohort(root / "cohort", patients=30))
    runs, cache = root / "runs", root / "cache"
    r = cli("train", task, *STREAM, "--runs", runs, "--cache-dir", cache)
    assert r.code == 0, r.text
    assert len(done_files(runs)) == 1
    return task, runs, cache


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (("--epochs", "2"), "train.epochs: 1 there, 2 now"),
        (("--lr-backbone", "0.001"), "train.lr_backbone: 0.0001 there, 0.001 now"),
        (("--lr-head", "0.001"), "train.head_lr_grid: [0.01] there, [0.001] now"),
        (("--patience", "7"), "train.patience: 100 there, 7 now"),
        (("--batch-size", "16"), "train.batch_size: 32 there, 16 now"),
        (("--no-augment",), "train.augment"),
        (("--image-size", "40"), "train.image_size: 32 there, 40 now"),
        (("--dtype", "bf16"), "train.dtype: 'fp32' there, 'bf16' now"),
    ],
)
@pytest.mark.slow
def test_streamed_run_is_refused_when_a_setting_changes(
    stream_tree: tuple[Path, Path, Path], change: tuple[str, ...], named: str
) -> None:
    task, runs, cache = stream_tree
    before = [p.stat().st_mtime_ns for p in done_files(runs)]
    r = cli("train", task, *STREAM, *change, "--runs", runs, "--cache-dir", cache)
    assert r.code != 0
    assert "is a finished run of another setup" in r.err and named in r.err, r.err
    assert "Traceback" not in r.text
    assert [p.stat().st_mtime_ns for p in done_files(runs)] == before  # nothing rewritten


def test_device_is_recorded_not_compared(stream_tree: tuple[Path, Path, Path]) -> None:
    task, runs, cache = stream_tree
    r = cli("train", task, *STREAM, "--device", "cpu", "--runs", runs, "--cache-dir", cache)
    assert r.code == 0, r.text
    assert "0 run(s) written, 1 already finished" in r.out
    (done,) = done_files(runs)
    spec = read_spec(done.parent)
    assert spec.extra["device"] == "cpu"
    elsewhere = spec.model_copy(update={"extra": spec.extra | {"device": "cuda"}})
    assert identity_diff(spec, elsewhere) == []


@pytest.mark.slow
def test_force_replaces_a_run_of_another_setup(tmp_path: Path) -> None:
    task = task_of(write_cohort(tmp_path / "cohort", patients=30))
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    assert cli("train", task, *STREAM, "--runs", runs, "--cache-dir", cache).code == 0
    (done,) = done_files(runs)
    r = cli(
        "train", task, *STREAM, "--epochs", "2", "--force", "--runs", runs, "--cache-dir", cache
    )
    assert r.code == 0, r.text
    assert "1 run(s) written" in r.out
    assert read_spec(done.parent).settings["train"]["epochs"] == 2
    (old,) = (runs / ".replaced").rglob(DONE_FILE)
    assert old.parent.relative_to(runs).parts[2:] == done.parent.relative_to(runs).parts
    assert read_spec(old.parent).settings["train"]["epochs"] == 1
    again = cli("train", task, *STREAM, "--epochs", "2", "--runs", runs, "--cache-dir", cache)
    assert again.code == 0 and "0 run(s) written, 1 already finished" in again.out


@pytest.fixture
def lp_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    task = task_of(write_cohort(tmp_path / "cohort"))
    return task, tmp_path / "runs", tmp_path / "cache"


@pytest.mark.slow
def test_lp_probe_preset_is_part_of_the_identity(lp_tree: tuple[Path, Path, Path]) -> None:
    task, runs, cache = lp_tree
    assert lp(task, runs, cache, "--probe", "default").code == 0
    r = lp(task, runs, cache, "--probe", "reference")
    assert r.code != 0
    assert "probe.solver: 'lbfgs' there, 'adam' now" in r.err, r.err
    r = lp(task, runs, cache, "--probe", "reference", "--force")
    assert r.code == 0, r.text
    assert {read_spec(d.parent).settings["probe"]["solver"] for d in done_files(runs)} == {"adam"}
    assert len(list((runs / ".replaced").rglob(DONE_FILE))) == 2


# ------------------------------------------------------------------------ 2. the split's key


# ------------------------------------------- issue 22.9: identity under faults (force, damage)


def run_dirs(runs: Path) -> list[Path]:
    return [d.parent for d in done_files(runs)]


def run_files(runs: Path) -> dict[Path, int]:
    """Every file of the tree but the locks, with its mtime."""
    return {
        p: p.stat().st_mtime_ns for p in runs.rglob("*") if p.is_file() and ".locks" not in p.parts
    }


@pytest.mark.slow
def test_force_run_again_keeps_the_runs_it_already_made(
    lp_tree: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A `--force` command killed half-way and run again: the runs it had finished with the new
    settings are kept (not recomputed, not moved to .replaced/), the rest are replaced once."""
    task, runs, cache = lp_tree
    assert lp(task, runs, cache).code == 0  # lbfgs (default probe): 2 runs
    other = tmp_path / "other"
    assert lp(task, other, cache, "--probe", "reference").code == 0
    # The state a kill leaves: fold 1 already redone with the new settings, fold 0 not yet.
    first, second = run_dirs(runs)
    shutil.rmtree(second)
    shutil.copytree(other / second.relative_to(runs), second)
    kept = [p.stat().st_mtime_ns for p in sorted(second.iterdir())]

    r = lp(task, runs, cache, "--probe", "reference", "--force")
    assert r.code == 0, r.text
    assert "1 run(s) written, 1 already finished" in r.out, r.out
    assert [p.stat().st_mtime_ns for p in sorted(second.iterdir())] == kept
    (old,) = (runs / ".replaced").rglob(DONE_FILE)  # only the run of the other setup
    assert old.parent.relative_to(runs).parts[2:] == first.relative_to(runs).parts
    assert {read_spec(d).settings["probe"]["solver"] for d in run_dirs(runs)} == {"adam"}

    r = lp(task, runs, cache, "--probe", "reference", "--force")  # and once more
    assert r.code == 0 and "0 run(s) written, 2 already finished" in r.out, r.text
    assert len(list((runs / ".replaced").rglob(DONE_FILE))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("force", [(), ("--force",)])
def test_hand_edited_spec_of_a_finished_run_is_damage_not_another_setup(
    lp_tree: tuple[Path, Path, Path], force: tuple[str, ...]
) -> None:
    task, runs, cache = lp_tree
    assert lp(task, runs, cache).code == 0
    run = run_dirs(runs)[0]
    spec = run / "spec.json"
    data = json.loads(spec.read_text())
    data["spec"]["settings"]["probe"]["solver"] = "adam"
    spec.write_text(json.dumps(data))
    before = run_files(runs)

    r = lp(task, runs, cache, *force)
    assert r.code != 0
    assert "Traceback" not in r.text
    assert "another setup" not in r.err and "--force" not in r.err, r.err
    (line,) = [x for x in r.err.splitlines() if x.startswith("error:")]
    assert f"run {run} is damaged: spec.json changed after the run was marked DONE" in line
    assert f"rm -r {run}" in r.err, r.err
    assert not (runs / ".replaced").exists()
    assert run_files(runs) == before  # nothing moved, removed or rewritten
    # evaluate refuses the run with the same words (one shared check)
    e = cli("evaluate", run)
    assert e.code != 0
    (eline,) = [x for x in e.err.splitlines() if x.startswith("error:")]
    assert eline == line


@pytest.mark.slow
def test_val_fraction_gives_other_splits_and_refuses_the_runs(
    lp_tree: tuple[Path, Path, Path],
) -> None:
    task, runs, cache = lp_tree
    assert lp(task, runs, cache, "--val-fraction", "0.2").code == 0
    r = lp(task, runs, cache, "--val-fraction", "0.4")
    assert r.code != 0
    files = sorted(p.name for p in (runs / "tiny-severity").glob("splits-*.json"))
    assert files == [
        "splits-kfold-2folds-val0.2-seed42-v2.json",
        "splits-kfold-2folds-val0.4-seed42-v2.json",
    ]
    assert "split.val_fraction: 0.2 there, 0.4 now" in r.err, r.err
    assert "data: " in r.err  # the fold's train and validation images differ too


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("--seed", "1"), ("--seed", "2")),
        (("--folds", "2"), ("--folds", "3")),
        (("--shots", "2", "--repeats", "1"), ("--shots", "2", "--repeats", "2")),
        (("--shots", "2", "--repeats", "1"), ("--shots", "2", "--repeats", "1", "--per-center")),
    ],
)
def test_every_split_parameter_names_its_own_splits_file(
    lp_tree: tuple[Path, Path, Path], first: tuple[str, ...], second: tuple[str, ...]
) -> None:
    from progbench.data.manifest import load_task
    from progbench.train.plan import SplitRequest, splits_path

    def request(args: tuple[str, ...]) -> SplitRequest:
        kw: dict[str, object] = {}
        it = iter(args)
        for flag in it:
            name = flag.lstrip("-").replace("-", "_")
            if name == "per_center":
                kw[name] = True
            elif name == "shots":
                kw[name] = (int(next(it)),)
            else:
                kw[name] = int(next(it))
        return SplitRequest(**kw)  # type: ignore[arg-type]

    task, runs, _ = lp_tree
    t = load_task(task)
    a = splits_path(t, request(first), "kfold", runs)
    b = splits_path(t, request(second), "kfold", runs)
    assert a != b
    loco = splits_path(t, request(first), "loco", runs)
    assert loco not in (a, b)


@pytest.mark.slow
def test_splits_file_holds_what_was_asked(lp_tree: tuple[Path, Path, Path]) -> None:
    task, runs, cache = lp_tree
    r = lp(task, runs, cache, "--val-fraction", "0.3", "--seed", "5")
    assert r.code == 0, r.text
    (path,) = (runs / "tiny-severity").glob("splits-*.json")
    saved = json.loads(path.read_text())
    assert (saved["val_fraction"], saved["seed"], saved["n_folds"]) == (0.3, 5, 2)
    spec = read_spec(done_files(runs)[0].parent)
    assert spec.settings["split"] == {
        "scheme": "kfold",
        "seed": 5,
        "version": 2,
        "val_fraction": 0.3,
        "folds": 2,
    }


# ------------------------------------------------------- 3, 4. several schemes in one tree


@pytest.mark.slow
def test_kfold_and_loco_share_a_tree_and_are_reported_apart(
    lp_tree: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    task, runs, cache = lp_tree
    assert lp(task, runs, cache, "--scheme", "kfold").code == 0
    assert lp(task, runs, cache, "--scheme", "loco").code == 0
    cells = sorted(p.relative_to(runs).parts[:3] for p in runs.glob("*/*/tiny-resnet"))
    assert cells == [
        ("tiny-severity", "kfold", "tiny-resnet"),
        ("tiny-severity", "loco", "tiny-resnet"),
    ]
    r = cli("evaluate", runs, "--n-boot", "0")
    assert r.code == 0, r.text
    results = pd.read_parquet(runs / "results.parquet")
    assert set(results["scheme"]) == {"kfold", "loco"}
    assert set(results.loc[results["scheme"] == "loco", "test_center"].dropna()) == {
        "C0", "C1", "C2",
    }  # fmt: skip
    r = cli("report", runs, "--out", tmp_path / "report", "--n-boot", "0", "--metric", "mcc")
    assert r.code == 0, r.text
    html = (tmp_path / "report" / "report.html").read_text()
    assert "tiny-severity (kfold)" in html and "tiny-severity (loco)" in html


def write_old_tree(runs: Path) -> None:
    """Runs as commit 952fe30 laid them out, `<task>/<backbone>/<strategy>/<regime>/fold-<i>`:
    two written by today's writer at the old path, one by hand with no `settings`."""
    from progbench.evaluate.finish import finish_scored_run
    from progbench.runs import write_spec
    from tests.helpers.runtree import TreeSpec, cost_for, predictions_for

    tree = TreeSpec()
    for fold in (0, 1):
        spec = RunSpec(task="death", backbone="resnet18", weights="random", strategy="lp",
                       regime="full", fold=fold, scheme="loco",
                       extra={"test_center": f"site{fold}"})  # fmt: skip
        run_dir = runs / "death" / "resnet18" / "lp" / "full" / f"fold-{fold}"
        write_spec(run_dir, spec)
        finish_scored_run(run_dir, predictions_for(spec, tree), cost=cost_for(spec))
    old = {"task": "death", "backbone": "resnet18", "weights": "random", "strategy": "fft",
           "regime": "full", "fold": 0, "seed": 42, "scheme": "kfold",
           "extra": {"epochs": 100}}  # fmt: skip
    run_dir = runs / "death" / "resnet18" / "fft" / "full" / "fold-0"
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps({"spec": old, "provenance": {}}))
    spec = RunSpec.model_validate(old)
    finish_scored_run(run_dir, predictions_for(spec, tree), cost=cost_for(spec))


def test_an_old_tree_is_still_evaluated_and_reported(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_old_tree(runs)
    r = cli("evaluate", runs, "--n-boot", "0")
    assert r.code == 0, r.text
    results = pd.read_parquet(runs / "results.parquet")
    runs_rows = results[results["level"] == "run"]
    assert set(zip(runs_rows["strategy"], runs_rows["scheme"], strict=True)) == {
        ("lp", "loco"), ("fft", "kfold"),
    }  # fmt: skip
    # `report` on an old tree: test_report_on_every_kind_of_tree_ends_without_a_traceback.


@pytest.mark.slow  # subprocesses or a full report
def test_report_on_every_kind_of_tree_ends_without_a_traceback(tmp_path: Path) -> None:
    from tests.helpers.runtree import TreeSpec, write_run_tree

    tree = TreeSpec(
        tasks=("severity",),
        backbones=("resnet18",),
        strategies=("lp", "fft"),
        folds=2,
        shots=(2,),
        repeats=2,
        fewshot_strategies=("lp",),
        schemes=("kfold", "loco"),
        fewshot_regimes=("fewshot", "fewshot-center"),
        weights={"resnet18": ("random", "imagenet")},
        n_test=12,
        n_val=6,
    )
    runs = tmp_path / "runs"
    write_run_tree(runs, tree)
    write_old_tree(runs / "old-sweep")  # a sweep made at 952fe30 beside today's
    r = cli("report", runs, "--out", tmp_path / "report", "--n-boot", "0", "--metric", "mcc")
    assert r.code == 0, r.text
    assert "Traceback" not in r.text
    html = (tmp_path / "report" / "report.html").read_text()
    assert "severity (kfold)" in html and "severity (loco)" in html


# --------------------------------------------------------------- 5. --splits and --shots


@pytest.fixture
def splits_with_draws(lp_tree: tuple[Path, Path, Path]) -> tuple[Path, Path, Path, Path]:
    """A holdout splits file holding k=2 draws (one repeat), written by an LP train."""
    task, runs, cache = lp_tree
    r = cli("train", task, *TINY, "--strategy", "lp", "--scheme", "holdout", "--shots", "2",
            "--repeats", "1", "--runs", runs, "--cache-dir", cache)  # fmt: skip
    assert r.code == 0, r.text
    (path,) = (runs / "tiny-severity").glob("splits-holdout-*.json")
    return task, runs.parent / "runs-from-file", cache, path


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["lp", "bitfit"])
def test_splits_file_without_shots_runs_its_draws(
    splits_with_draws: tuple[Path, Path, Path, Path], strategy: str
) -> None:
    """The draws a --splits file holds are run, never skipped in silence (issue 21.2)."""
    task, runs, cache, path = splits_with_draws
    args = STREAM if strategy == "bitfit" else (*TINY, "--strategy", "lp")
    r = cli("train", task, *args, "--splits", path, "--runs", runs, "--cache-dir", cache)
    assert r.code == 0, r.text
    assert "scheme holdout (from " in r.out and "scheme scheme" not in r.out, r.out
    assert sorted(d.parent.relative_to(runs).parts[3:] for d in done_files(runs)) == [
        (strategy, "fewshot", "fold-0", "shots-2", "rep-0"),
        (strategy, "full", "fold-0"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["lp", "bitfit"])
def test_shots_absent_from_the_splits_file_name_what_it_holds(
    splits_with_draws: tuple[Path, Path, Path, Path], strategy: str
) -> None:
    task, runs, cache, path = splits_with_draws
    args = STREAM if strategy == "bitfit" else (*TINY, "--strategy", "lp")
    r = cli("train", task, *args, "--splits", path, "--shots", "8", "--runs", runs,
            "--cache-dir", cache)  # fmt: skip
    assert r.code != 0
    assert "holds no few-shot draw for k=8" in r.err and "it holds k = 2" in r.err, r.err
    assert not done_files(runs)


# -------------------------------------------------------------------------- 6. --scheme auto


@pytest.mark.parametrize(
    ("centers", "want"), [(3, "auto: loco (3 centres)"), (1, "auto: kfold (one centre)")]
)
@pytest.mark.slow
def test_scheme_auto_picks_loco_on_multicentre_cohorts(
    tmp_path: Path, centers: int, want: str
) -> None:
    task = task_of(write_cohort(tmp_path / "cohort", centers=centers))
    r = lp(task, tmp_path / "runs", tmp_path / "cache", "--scheme", "auto")
    assert r.code == 0, r.text
    assert f"scheme {want}" in r.out
    scheme = "loco" if centers > 1 else "kfold"
    assert (tmp_path / "runs" / "tiny-severity" / scheme / "tiny-resnet" / "lp").is_dir()


@pytest.mark.slow
def test_scheme_auto_picks_kfold_when_a_centre_holds_one_class(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path / "cohort")
    df = pd.read_csv(manifest)
    df.loc[df["center"] == "C0", "severity"] = 0
    df.to_csv(manifest, index=False)
    r = lp(task_of(manifest), tmp_path / "runs", tmp_path / "cache", "--scheme", "auto")
    assert r.code == 0, r.text
    assert "scheme auto: kfold (centre(s) ['C0'] hold one class only)" in r.out


@pytest.mark.slow
def test_scheme_auto_is_the_default(tmp_path: Path) -> None:
    task = task_of(write_cohort(tmp_path / "cohort"))
    r = cli("train", task, *TINY, "--strategy", "lp", "--runs", tmp_path / "runs",
            "--cache-dir", tmp_path / "cache")  # fmt: skip
    assert r.code == 0, r.text
    assert "scheme auto: loco (3 centres)" in r.out


def test_methodology_documents_scheme_auto() -> None:
    text = (Path(__file__).parents[1] / "docs" / "METHODOLOGY.md").read_text()
    assert "--scheme auto" in text and "both classes" in text


# ------------------------------------------------------------ 7. LP's trainable-parameter share


@pytest.mark.slow
def test_lp_trainable_share_equals_the_models_matrix(
    lp_tree: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    task, runs, cache = lp_tree
    monkeypatch.setenv("PROGBENCH_CACHE", str(cache))
    assert lp(task, runs, cache).code == 0
    metrics = json.loads((done_files(runs)[0].parent / "metrics.json").read_text())
    r = cli("models", "--backbone", "tiny-resnet", "--json", "--refresh")
    assert r.code == 0, r.text
    cell = next(c for c in json.loads(r.out)["cells"] if c["strategy"] == "lp")
    cost = metrics["cost"]
    assert (cost["trainable"], cost["total"]) == (cell["trainable"], cell["total"])
    assert cost["trainable_percent"] == pytest.approx(cell["percent"], rel=1e-3)


# ----------------------------------------------- 8. a patient's images with different labels


def test_patient_with_two_labels_is_named_by_the_cli(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path / "cohort", patients=30)
    df = pd.read_csv(manifest)
    rows = df.index[df["patient_id"] == "P000"].tolist()
    assert len(rows) >= 2
    df.loc[rows[0], "severity"] = 1 - df.loc[rows[1], "severity"]
    df.to_csv(manifest, index=False)
    r = cli("train", "--manifest", manifest, "--outcome", "severity", "--positive", "1", *TINY,
            "--runs", tmp_path / "runs", "--cache-dir", tmp_path / "cache")  # fmt: skip
    assert r.code != 0
    assert "'P000'" in r.err and f"line {rows[0] + 2}" in r.err and f"line {rows[1] + 2}" in r.err
    assert "per_image_labels" in r.err and "Traceback" not in r.text
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------- 10. hand-edited splits files


@pytest.fixture
def splits_file(lp_tree: tuple[Path, Path, Path]) -> tuple[Path, Path, Path, dict]:
    task, runs, cache = lp_tree
    r = cli("train", task, *TINY, "--strategy", "lp", "--scheme", "kfold", "--folds", "2", "--shots", "2",
            "--repeats", "1", "--runs", runs, "--cache-dir", cache)  # fmt: skip
    assert r.code == 0, r.text
    (path,) = (runs / "tiny-severity").glob("splits-*.json")
    return task, path, cache, json.loads(path.read_text())


def train_on(task: Path, path: Path, cache: Path, data: dict) -> CliResult:
    edited = path.with_name("edited.json")
    edited.write_text(json.dumps(data))
    return cli("train", task, *TINY, "--strategy", "lp", "--splits", edited, "--shots", "2",
               "--repeats", "1", "--runs", path.parents[1] / "edited", "--cache-dir", cache)  # fmt: skip


@pytest.mark.slow
def test_test_images_moved_into_train_are_a_patient_leak(
    splits_file: tuple[Path, Path, Path, dict],
) -> None:
    task, path, cache, data = splits_file
    fold = data["folds"][1]
    df = pd.read_csv(task.parent.parent / "manifest.csv")
    counts = df.groupby("patient_id")["image_id"].count()
    multi = [i for i in fold["test"] if counts[df.set_index("image_id").loc[i, "patient_id"]] > 1]
    moved = multi[0]
    patient = df.set_index("image_id").loc[moved, "patient_id"]
    fold["test"].remove(moved)
    fold["train"].append(moved)
    r = train_on(task, path, cache, data)
    assert r.code != 0
    assert f"fold 1: patient(s) {patient!r} have images in both train and test" in r.err, r.err
    assert not (path.parents[1] / "edited").exists() or not done_files(path.parents[1] / "edited")


@pytest.mark.slow
def test_unknown_image_and_stray_draw_are_named(
    splits_file: tuple[Path, Path, Path, dict],
) -> None:
    task, path, cache, data = splits_file
    data["folds"][0]["val"].append("NOT-AN-IMAGE")
    draw = data["folds"][1]["fewshot"][0]
    stray = data["folds"][1]["test"][0]
    draw["train"][0] = stray
    r = train_on(task, path, cache, data)
    assert r.code != 0
    assert "fold 0, val: unknown image id(s) 'NOT-AN-IMAGE'" in r.err, r.err
    assert (
        f"fold 1, few-shot k=2 repeat 0: image(s) {stray!r} are not in the fold's training part"
        in r.err
    )
    assert "2 problem(s)" in r.err


# ------------------------------------------------ 15. leftovers, bad names and bad values


def test_state_left_after_done_is_removed_on_the_next_visit(
    stream_tree: tuple[Path, Path, Path],
) -> None:
    task, runs, cache = stream_tree
    (done,) = done_files(runs)
    state = done.parent / "state"
    state.mkdir(exist_ok=True)
    (state / "last.pt").write_bytes(b"spent")
    r = cli("train", task, *STREAM, "--runs", runs, "--cache-dir", cache)
    assert r.code == 0, r.text
    assert "0 run(s) written, 1 already finished" in r.out
    assert not state.exists()


def test_unknown_backbone_is_refused_before_the_splits_file(tmp_path: Path) -> None:
    task = task_of(write_cohort(tmp_path / "cohort", patients=30))
    runs = tmp_path / "runs"
    r = cli("train", task, "--backbone", "no-such-net", "--weights", "random", "--runs", runs,
            "--cache-dir", tmp_path / "cache")  # fmt: skip
    assert r.code != 0
    assert "no-such-net" in r.err and "Traceback" not in r.text
    assert not runs.exists()


def test_unknown_outcome_value_names_its_row(tmp_path: Path) -> None:
    manifest = write_cohort(tmp_path / "cohort", patients=30)
    df = pd.read_csv(manifest).astype({"severity": str})
    df.loc[5, "severity"] = "maybe"
    df.to_csv(manifest, index=False)
    r = cli("train", "--manifest", manifest, "--outcome", "severity", "--positive", "1",
            "--negative", "0", *TINY, "--runs", tmp_path / "runs",
            "--cache-dir", tmp_path / "cache")  # fmt: skip
    assert r.code != 0
    assert "'maybe'" in r.err and "line 7" in r.err, r.err
    assert not (tmp_path / "runs").exists()
