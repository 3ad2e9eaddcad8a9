"""The feature path (train.features): LP and few-shot grids from the cache: signal, controls, draws, determinism, parity, resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file
from sklearn.linear_model import LogisticRegression

from progbench.accel import resolve_accel
from progbench.cache.featurestore import FeatureStore
from progbench.cache.imagestore import ImageStore, ImageStoreParams, build_image_store
from progbench.data.fewshot import add_fewshot
from progbench.data.manifest import Task, load_task
from progbench.data.splits import make_splits
from progbench.data.synth import synthesize
from progbench.errors import ConfigError, RunError
from progbench.evaluate.results import evaluate_tree, summarise
from progbench.extract.features import extract_features, stream_features
from progbench.models.loaders import load_backbone
from progbench.runs import iter_runs, read_run
from progbench.train import features, writers
from progbench.train.features import FeatureContext
from progbench.train.probe import ProbeConfig, fit_probes, standardiser
from tests.helpers.features import feature_runs

# Module fixtures build stores or full reports: slow, and on one xdist worker (built once).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("test_features")]

STORE = ImageStoreParams(size=96)


@pytest.fixture(scope="module")
def strong(tmp_path_factory: pytest.TempPathFactory):
    """A strong-signal synthetic cohort, its features from a random-init resnet18, and splits."""
    root = tmp_path_factory.mktemp("strong")
    synthesize(root / "cohort", patients=200, centers=3, seed=1, signal=3.0)
    task = load_task(root / "cohort" / "tasks" / "severity.yaml")
    loaded = load_backbone("resnet18", "random")
    res = extract_features(
        task.manifest,
        "resnet18",
        "random",
        cache_dir=root / "cache",
        image_params=STORE,
        loaded=loaded,
    )
    splits = add_fewshot(make_splits(task, "kfold", folds=5, seed=42), task, [2, 8], repeats=3)
    ctx = FeatureContext("resnet18", "random", loaded.weights_fingerprint, res.key, 11_176_512)
    return root, task, FeatureStore(res.path), splits, ctx, loaded


def _pooled(root: Path, regime: str = "full", shots: int | None = None) -> dict:
    records = summarise(evaluate_tree(root, n_boot=0, cache=False).results)
    return next(r for r in records if r["regime"] == regime and r["shots"] == shots)["metrics"]


def test_strong_signal_beats_chance_and_shuffled_labels_do_not(strong, tmp_path: Path) -> None:
    _, task, store, splits, ctx, _ = strong
    feature_runs(task, splits, store, ctx, tmp_path / "real", fewshot=False)
    mcc = _pooled(tmp_path / "real")["mcc"]
    assert mcc["mean"] > 0.4, mcc  # observed ~0.66; a broken pipeline sits near 0
    # Control: shuffle outcomes across patients (keeps prevalence and patient structure).
    df = task.manifest.frame
    rng = np.random.default_rng(0)
    patients = df["patient_id"].unique()
    per_patient = dict(
        zip(
            patients,
            rng.permutation(
                df.groupby("patient_id")["severity"].first().loc[patients].astype(int).to_numpy()
            ),
            strict=True,
        )
    )
    shuffled = Task(
        task.config, task.manifest, df["patient_id"].map(per_patient).to_numpy().astype(np.int64)
    )
    control = make_splits(shuffled, "kfold", folds=5, seed=42)
    feature_runs(shuffled, control, store, ctx, tmp_path / "shuffled", fewshot=False)
    assert abs(_pooled(tmp_path / "shuffled")["mcc"]["mean"]) < 0.2


def test_fewshot_runs_use_the_draws_and_leave_val_test_alone(strong, tmp_path: Path) -> None:
    _, task, store, splits, ctx, _ = strong
    summary = feature_runs(task, splits, store, ctx, tmp_path, full=False)
    assert len(summary.written) == 5 * 2 * 3
    preds = {}
    for path in iter_runs(tmp_path).done:
        run = read_run(path)
        fold = splits.folds[run.spec.fold]
        draw = fold.draw(run.spec.shots, run.spec.repeat)
        assert run.spec.extra["n_train"] == len(draw.train) == 2 * run.spec.shots
        p = run.predictions
        assert sorted(p.loc[p["split"] == "val", "image_id"]) == sorted(fold.val)
        assert sorted(p.loc[p["split"] == "test", "image_id"]) == sorted(fold.test)
        preds[(run.spec.fold, run.spec.shots, run.spec.repeat)] = p["p_pos"].to_numpy()
    for fold in range(5):
        for k in (2, 8):
            assert not np.allclose(preds[(fold, k, 0)], preds[(fold, k, 1)])  # repeats differ


def test_same_seed_same_results(strong, tmp_path: Path) -> None:
    _, task, store, splits, ctx, _ = strong
    for name in ("a", "b"):
        feature_runs(task, splits, store, ctx, tmp_path / name)
    a = sorted(iter_runs(tmp_path / "a").done)
    b = sorted(iter_runs(tmp_path / "b").done)
    assert len(a) == len(b) == 5 * (1 + 2 * 3)
    for x, y in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(read_run(x).predictions, read_run(y).predictions)


def test_cache_parity_with_streamed_features(strong, tmp_path: Path) -> None:
    """LP on the feature store and LP on features streamed through the frozen model agree."""
    root, task, store, splits, ctx, loaded = strong
    images = ImageStore(build_image_store(task.manifest, STORE, root / "cache").path)
    ids = task.manifest.frame["image_id"].tolist()
    streamed = stream_features(
        images, loaded, resolve_accel("cpu", "fp32"), ids[::-1], batch_size=13
    )[::-1]
    np.testing.assert_allclose(streamed, store.load(ids), rtol=1e-4, atol=1e-5)
    one_fold = splits.model_copy(update={"folds": splits.folds[:1]})
    feature_runs(task, one_fold, store, ctx, tmp_path / "cache")
    feature_runs(task, one_fold, streamed, ctx, tmp_path / "stream")
    for a, b in zip(
        sorted(iter_runs(tmp_path / "cache").done),
        sorted(iter_runs(tmp_path / "stream").done),
        strict=True,
    ):
        np.testing.assert_allclose(
            read_run(a).predictions["p_pos"], read_run(b).predictions["p_pos"], atol=1e-3
        )


def test_killed_grid_resumes_without_recomputing(strong, tmp_path: Path, monkeypatch) -> None:
    _, task, store, splits, ctx, _ = strong
    solve = features._solve_fold
    solved: list[int] = []

    def die_on_the_third_fold(*args, **kwargs):
        # In the solver, not the progress callback: on a busy machine the writer may finish
        # nothing before every fold is solved, and an interrupt from progress would come last.
        if len(solved) == 2:
            raise KeyboardInterrupt
        solved.append(1)
        return solve(*args, **kwargs)

    monkeypatch.setattr(features, "_solve_fold", die_on_the_third_fold)
    with pytest.raises(KeyboardInterrupt):
        feature_runs(task, splits, store, ctx, tmp_path / "grid")
    monkeypatch.setattr(features, "_solve_fold", solve)
    first = sorted(iter_runs(tmp_path / "grid").done)
    # Folds already handed to the writer still finish: two folds of 7 runs each.
    assert len(first) == 2 * 7
    stamps = {p: (p / "DONE").stat().st_mtime_ns for p in first}
    # A run killed between its files and DONE: it holds no result and is redone.
    (first[0] / "DONE").unlink()
    resumed = feature_runs(task, splits, store, ctx, tmp_path / "grid")
    assert len(resumed.skipped) == len(first) - 1
    assert len(resumed.written) == 5 * 7 - len(first) + 1
    assert all((p / "DONE").stat().st_mtime_ns == t for p, t in stamps.items() if p != first[0])
    feature_runs(task, splits, store, ctx, tmp_path / "clean")
    for a, b in zip(
        sorted(iter_runs(tmp_path / "grid").done),
        sorted(iter_runs(tmp_path / "clean").done),
        strict=True,
    ):
        np.testing.assert_allclose(
            read_run(a).predictions["p_pos"], read_run(b).predictions["p_pos"], atol=1e-4
        )


def test_process_writers_write_the_same_runs(strong, tmp_path: Path, monkeypatch) -> None:
    """Big grids are written by worker processes, started once for the command and reused by
    the next grid; the runs are those of the writer thread."""
    _, task, store, splits, ctx, _ = strong
    two_folds = splits.model_copy(update={"folds": splits.folds[:2]})
    writers._discard()  # an earlier test's pool would take the small grid too
    feature_runs(task, two_folds, store, ctx, tmp_path / "thread")
    assert writers._pool is None  # a small grid, no pool up: the thread wrote it
    monkeypatch.setattr(writers, "PROCESS_WRITERS_FROM", 1)
    seen: list[int] = []
    out = feature_runs(
        task, two_folds, store, ctx, tmp_path / "process", progress=lambda d, t: seen.append(d)
    )
    assert len(out.written) == 2 * 7 and seen[-1] == 2 * 7
    pool = writers._pool
    assert pool is not None
    feature_runs(task, two_folds, store, ctx, tmp_path / "again")
    assert writers._pool is pool  # the next grid reused the workers
    writers._discard()
    a, b = iter_runs(tmp_path / "thread").done, iter_runs(tmp_path / "process").done
    assert [p.relative_to(tmp_path / "thread") for p in sorted(a)] == [
        p.relative_to(tmp_path / "process") for p in sorted(b)
    ]
    for x, y in zip(sorted(a), sorted(b), strict=True):
        pd.testing.assert_frame_equal(read_run(x).predictions, read_run(y).predictions)


def test_force_keeps_the_old_run(strong, tmp_path: Path) -> None:
    _, task, store, splits, ctx, _ = strong
    one_fold = splits.model_copy(update={"folds": splits.folds[:1]})
    feature_runs(task, one_fold, store, ctx, tmp_path, fewshot=False)
    again = feature_runs(task, one_fold, store, ctx, tmp_path, fewshot=False)
    assert len(again.skipped) == 1 and not again.written
    kept = feature_runs(task, one_fold, store, ctx, tmp_path, fewshot=False, force=True)
    assert len(kept.skipped) == 1 and not kept.written  # same identity: --force keeps it
    assert not (tmp_path / ".replaced").exists()
    other = dataclasses.replace(ctx, weights="pretrained", weights_fingerprint="f" * 20)
    forced = feature_runs(task, one_fold, store, other, tmp_path, fewshot=False, force=True)
    assert len(forced.written) == 1
    assert len(list((tmp_path / ".replaced").rglob("DONE"))) == 1
    assert len(iter_runs(tmp_path).done) == 1  # the replaced copy is not evaluated


def test_adam_probe_matches_sklearn_logistic_regression() -> None:
    """Without early stopping, the batched Adam probe (the reference preset's solver) converges
    to scikit-learn's class-weighted solution, which the default solver computes directly."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12))
    y = (x @ rng.normal(size=12) + rng.normal(size=300) * 2 > 1.0).astype(int)
    mean, std = standardiser(x)
    xs = (x - mean) / std
    tr = np.arange(200)
    wd = 1e-2
    cfg = ProbeConfig(
        solver="adam",
        lrs=(5e-2,),
        weight_decays=(wd,),
        max_steps=3000,
        eval_every=3000,
        patience=1,
    )
    fit = fit_probes(xs, y, [tr], tr, cfg)[0]
    default = fit_probes(xs, y, [tr], tr, ProbeConfig(weight_decays=(wd,)))[0]
    ref = LogisticRegression(
        C=1 / (wd * len(tr)), class_weight="balanced", max_iter=10_000, tol=1e-10
    )
    ref.fit(xs[tr], y[tr])
    np.testing.assert_allclose(fit.predict(xs[200:]), ref.predict_proba(xs[200:])[:, 1], atol=5e-3)
    np.testing.assert_allclose(
        default.predict(xs[200:]), ref.predict_proba(xs[200:])[:, 1], atol=1e-3
    )


def test_reference_preset_runs_the_lr_grid(strong, tmp_path: Path) -> None:
    _, task, store, splits, ctx, _ = strong
    one_fold = splits.model_copy(update={"folds": splits.folds[:1]})
    cfg = ProbeConfig.preset("reference")
    feature_runs(task, one_fold, store, ctx, tmp_path, cfg, fewshot=False)
    (run,) = iter_runs(tmp_path).done
    spec = read_run(run).spec
    assert spec.settings["probe"]["lrs"] == [1e-2, 1e-3, 1e-4]  # the preset is in its identity
    assert spec.extra["selected"]["lr"] in (1e-2, 1e-3, 1e-4)
    with pytest.raises(ConfigError, match="unknown probe preset"):
        ProbeConfig.preset("fast")


def test_finished_runs_of_other_weights_are_not_reused(strong, tmp_path: Path) -> None:
    """The run path does not hold the weights: a finished run of other weights is an error."""
    _, task, store, splits, ctx, _ = strong
    one_fold = splits.model_copy(update={"folds": splits.folds[:1]})
    feature_runs(task, one_fold, store, ctx, tmp_path, fewshot=False)
    other = dataclasses.replace(ctx, weights="pretrained", weights_fingerprint="f" * 20)
    with pytest.raises(RunError, match=r"another setup.*weights_fingerprint"):
        feature_runs(task, one_fold, store, other, tmp_path, fewshot=False)
    again = feature_runs(task, one_fold, store, other, tmp_path, fewshot=False, force=True)
    assert len(again.written) == 1
    assert (tmp_path / ".replaced").is_dir()


@pytest.mark.parametrize(("signal", "want"), [("patch_mean", "cls1+avg"), ("cls_block_-2", "cls2")])
def test_lp_picks_the_variant_and_lr_validation_prefers(
    tmp_path: Path, signal: str, want: str
) -> None:
    """Synthetic store rows where only one token carries the label: the probe picks a variant
    holding it (the smallest one), and the head lr that learns within the step budget."""
    from progbench.config import TokenLayout, Variant, VariantGrid
    from tests.helpers.cohorts import write_cohort

    write_cohort(tmp_path / "cohort", patients=80, multi_image_every=1000)
    task = load_task(tmp_path / "cohort" / "tasks" / "severity.yaml")
    layout = TokenLayout.of(VariantGrid(n_last_blocks=[1, 2], avgpool=[False, True]), 16)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((len(task.labels), layout.width)).astype(np.float32)
    slot = layout.tokens().index(signal)
    x[:, slot * 16 : slot * 16 + 4] += 1.5 * (2 * task.labels[:, None] - 1)
    # 16 validation images per fold: with 8 (0.2), which variant wins is left to chance.
    splits = make_splits(task, "kfold", folds=2, seed=42, val_fraction=0.4)
    ctx = FeatureContext("synthetic", "random", "none", "synthetic")
    cfg = ProbeConfig(
        solver="adam",
        lrs=(1e-2, 1e-5),  # 1e-5 barely leaves zero in 200 steps: validation must reject it
        weight_decays=(1e-3,),
        max_steps=200,
        variants=tuple(layout.offer),
    )
    feature_runs(task, splits, x, ctx, tmp_path / "runs", cfg, layout=layout)
    runs = [read_run(p) for p in iter_runs(tmp_path / "runs").done]
    assert len(runs) == 2
    for run in runs:
        extra = run.spec.extra
        assert extra["variant"] == extra["selected"]["variant"] == want
        assert extra["selected"]["lr"] == 1e-2
        search = {s["variant"]: s["val_loss"] for s in extra["variant_search"]}
        assert list(search) == [v.name for v in layout.offer]
        assert extra["val_loss"] == min(search.values())
        assert run.spec.settings["probe"]["variants"] == list(search)
        # The head reads the chosen variant's columns: its width says which.
        weight = load_file(str(run.path / "probe.safetensors"))["weight"]
        assert weight.shape == (Variant.parse(want).dim(16),)
    assert _pooled(tmp_path / "runs")["mcc"]["mean"] > 0.6


def test_a_variant_the_features_lack_is_an_error(tmp_path: Path) -> None:
    from progbench.config import Variant
    from tests.helpers.cohorts import write_cohort

    write_cohort(tmp_path / "cohort", patients=40, multi_image_every=1000)
    task = load_task(tmp_path / "cohort" / "tasks" / "severity.yaml")
    x = np.zeros((len(task.labels), 8), np.float32)  # one 8-d feature: cls1 only
    ctx = FeatureContext("synthetic", "random", "none", "synthetic")
    cfg = ProbeConfig(variants=(Variant(4, True),))
    splits = make_splits(task, "kfold", folds=2, seed=42)
    with pytest.raises(ConfigError, match=r"cls4\+avg.*offered by these features \(cls1\)"):
        feature_runs(task, splits, x, ctx, tmp_path / "runs", cfg, fewshot=False)
