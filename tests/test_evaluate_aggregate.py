"""Aggregation over folds and repeats, the patient-level bootstrap, and the results table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from progbench.errors import RunError
from progbench.evaluate import METRIC_NAMES, binary_metrics
from progbench.evaluate import results as results_mod
from progbench.evaluate.aggregate import (
    PredictionSet,
    bootstrap_metrics,
    percentile_ci,
)
from progbench.evaluate.bootstrap import patient_bootstrap
from progbench.evaluate.results import (
    evaluate_tree,
    summarise,
    write_results,
)
from progbench.evaluate.rows import RESULT_COLUMNS
from progbench.runs import RunCost, append_train_log
from tests.helpers.runs import BAD, GOOD, Y, build_run


def value(df: pd.DataFrame, level: str, metric: str, **where: object) -> pd.Series:
    hit = df[(df["level"] == level) & (df["metric"] == metric)]
    for k, v in where.items():
        hit = hit[hit[k].isna()] if v is None else hit[hit[k] == v]
    assert len(hit) == 1, (level, metric, where, len(hit))
    return hit.iloc[0]


# ------------------------------------------------------------------------------ hand-built trees


def test_full_regime_mean_std_pooled_and_cost(tmp_path: Path) -> None:
    costs = [
        RunCost(wall_time_s=w, peak_host_mb=m, trainable_percent=1.5)
        for w, m in ((10, 100), (20, 300), (30, 200))
    ]
    for fold, (p, cost) in enumerate(zip((GOOD, BAD, GOOD), costs, strict=True)):
        build_run(tmp_path, Y, p, fold=fold, cost=cost)
    res = evaluate_tree(tmp_path, n_boot=50).results
    assert list(res.columns) == list(RESULT_COLUMNS)

    # MCC per fold is 1, -1, 1 by construction.
    assert value(res, "aggregate-mean", "mcc")["value"] == pytest.approx(1 / 3)
    assert value(res, "aggregate-std", "mcc")["value"] == pytest.approx(np.sqrt(4 / 3))
    assert value(res, "aggregate-mean", "auroc")["value"] == pytest.approx(2 / 3)
    for m in METRIC_NAMES:  # every metric: numpy over scikit-learn's per-fold values
        per_fold = [binary_metrics(np.array(Y), np.array(p))[m] for p in (GOOD, BAD, GOOD)]
        assert value(res, "aggregate-mean", m)["value"] == pytest.approx(np.mean(per_fold))
        assert value(res, "aggregate-std", m)["value"] == pytest.approx(np.std(per_fold, ddof=1))
        assert value(res, "aggregate-mean", m)["n_runs"] == 3

    pooled = binary_metrics(np.array(Y * 3), np.array(GOOD + BAD + GOOD))
    for m in (*METRIC_NAMES, "n", "prevalence"):
        assert value(res, "pooled", m)["value"] == pytest.approx(pooled[m])
    mcc = value(res, "pooled", "mcc")
    assert mcc["ci_low"] <= mcc["value"] <= mcc["ci_high"]

    agg = value(res, "aggregate-mean", "mcc")
    assert (
        agg["wall_time_s"] == 20 and agg["peak_host_mb"] == 300 and agg["trainable_percent"] == 1.5
    )
    assert agg["split"] == "test" and agg["threshold_rule"] == "fixed:0.5"
    assert pd.isna(agg["fold"]) and pd.isna(agg["run_dir"]) and agg["measured_at"]
    run = value(res, "run", "mcc", fold=1, split="test")
    assert run["value"] == -1.0 and run["wall_time_s"] == 20 and run["run_dir"].endswith("fold-1")
    assert len(res[(res["level"] == "run")]) == 3 * 2 * 11  # runs x splits x metric keys


@pytest.mark.slow
def test_fewshot_semantics(tmp_path: Path) -> None:
    # fold 0: repeats give MCC 1, 1, -1; fold 1: 1, -1, -1. Test patients are shared across repeats.
    plan = {0: (GOOD, GOOD, BAD), 1: (GOOD, BAD, BAD)}
    for fold, preds in plan.items():
        for rep, p in enumerate(preds):
            build_run(tmp_path, Y, p, fold=fold, shots=4, repeat=rep)
    res = evaluate_tree(tmp_path, n_boot=40).results

    fold_means = [1 / 3, -1 / 3]
    fold_stds = [np.std([1, 1, -1], ddof=1), np.std([1, -1, -1], ddof=1)]
    for fold in (0, 1):
        assert value(res, "fold-mean", "mcc", fold=fold)["value"] == pytest.approx(fold_means[fold])
        assert value(res, "fold-std", "mcc", fold=fold)["value"] == pytest.approx(fold_stds[fold])
    assert value(res, "aggregate-mean", "mcc")["value"] == pytest.approx(np.mean(fold_means))
    assert value(res, "aggregate-std", "mcc")["value"] == pytest.approx(np.std(fold_means, ddof=1))
    assert value(res, "repeat-std", "mcc")["value"] == pytest.approx(np.mean(fold_stds))

    pooled_per_repeat = []
    for rep in range(3):
        p = plan[0][rep] + plan[1][rep]
        expected = binary_metrics(np.array(Y * 2), np.array(p))["mcc"]
        row = value(res, "pooled", "mcc", repeat=rep)
        assert row["value"] == pytest.approx(expected) and row["n_runs"] == 2
        pooled_per_repeat.append(expected)
    mean = value(res, "pooled-mean", "mcc")
    assert mean["value"] == pytest.approx(np.mean(pooled_per_repeat))
    assert mean["ci_low"] <= mean["value"] <= mean["ci_high"]
    assert value(res, "pooled-std", "mcc")["value"] == pytest.approx(
        np.std(pooled_per_repeat, ddof=1)
    )
    assert pd.isna(value(res, "pooled-std", "mcc")["ci_low"])  # spread, not a CI

    [group] = summarise(res)
    assert group["shots"] == 4 and group["metrics"]["mcc"]["repeat_std"] == pytest.approx(
        np.mean(fold_stds)
    )
    assert group["metrics"]["mcc"]["pooled"] == pytest.approx(np.mean(pooled_per_repeat))


def test_groups_are_kept_apart_and_undefined_folds_are_skipped(tmp_path: Path) -> None:
    build_run(tmp_path, Y, GOOD, fold=0)
    build_run(tmp_path, [0, 0, 0], [0.1, 0.6, 0.2], fold=1)  # one class: AUROC undefined
    build_run(tmp_path, Y, BAD, fold=0, strategy="lp")
    res = evaluate_tree(tmp_path, n_boot=0).results
    auroc = value(res, "aggregate-mean", "auroc", strategy="lora")
    assert auroc["value"] == 1.0 and auroc["n_runs"] == 1
    assert pd.isna(value(res, "aggregate-std", "auroc", strategy="lora")["value"])
    assert value(res, "aggregate-mean", "mcc", strategy="lora")["n_runs"] == 2
    assert value(res, "aggregate-mean", "auroc", strategy="lp")["value"] == 0.0
    assert pd.isna(value(res, "pooled", "mcc", strategy="lp")["ci_low"])  # n_boot=0: no CI


def test_duplicate_runs_in_one_group_are_an_error(tmp_path: Path) -> None:
    build_run(tmp_path / "a", Y, GOOD)
    build_run(tmp_path / "b", Y, GOOD)
    with pytest.raises(RunError, match="two runs for the same fold 0"):
        evaluate_tree(tmp_path, n_boot=0)


def test_incomplete_runs_are_skipped_and_listed(tmp_path: Path) -> None:
    build_run(tmp_path, Y, GOOD, fold=0)
    half = tmp_path / "t" / "b" / "lora" / "full" / "fold-1"
    append_train_log(half, {"epoch": 0})
    out = evaluate_tree(tmp_path, n_boot=0)
    assert out.incomplete == [half] and len(out.done) == 1
    assert set(out.results["fold"].dropna()) == {0}
    with pytest.raises(RunError, match=r"no finished runs.*1 incomplete"):
        evaluate_tree(half, n_boot=0)


def test_aggregates_are_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build_run(tmp_path, Y, GOOD, fold=0)
    build_run(tmp_path, Y, BAD, fold=1)
    first = evaluate_tree(tmp_path, n_boot=30).results

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("aggregate recomputed")

    monkeypatch.setattr(results_mod, "aggregate_group", boom)
    again = evaluate_tree(tmp_path, n_boot=30).results
    cols = [c for c in RESULT_COLUMNS if c != "measured_at"]
    pd.testing.assert_frame_equal(first[cols], again[cols])
    with pytest.raises(AssertionError, match="recomputed"):  # another B is another key
        evaluate_tree(tmp_path, n_boot=31)


def test_write_results_round_trip(tmp_path: Path) -> None:
    build_run(tmp_path, Y, GOOD, fold=0)
    build_run(tmp_path, Y, BAD, fold=1)
    res = evaluate_tree(tmp_path, n_boot=20).results
    parquet, csv = write_results(res, tmp_path)
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), res)
    back = pd.read_csv(csv)
    assert list(back.columns) == list(RESULT_COLUMNS) and len(back) == len(res)
    assert not list(tmp_path.glob(".results*"))  # no temporary files left behind


# ------------------------------------------------------------------------------ bootstrap


def clustered(
    n_patients: int, images: int, seed: int, prevalence: float = 0.3, signal: float = 1.0
) -> PredictionSet:
    """Patients with several near-identical images: image-level resampling would understate spread."""
    rng = np.random.default_rng(seed)
    y_pat = (rng.random(n_patients) < prevalence).astype(int)
    latent = signal * y_pat + rng.normal(0, 1, n_patients)
    y = np.repeat(y_pat, images)
    z = np.repeat(latent, images) + rng.normal(0, 0.1, n_patients * images)
    return PredictionSet(
        patient_id=np.repeat(np.array([f"p{i}" for i in range(n_patients)], dtype=object), images),
        y_true=y,
        p_pos=1 / (1 + np.exp(-(z - 0.5))),
        threshold=np.full(len(y), 0.5),
    )


def test_patient_bootstrap_is_seeded() -> None:
    ids = [f"p{i}" for i in range(30)]
    a = np.array(list(patient_bootstrap(ids, 5, seed=1)))
    b = np.array(list(patient_bootstrap(ids, 5, seed=1)))
    c = np.array(list(patient_bootstrap(ids, 5, seed=2)))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a.sum(axis=1) == 30).all()  # P patients drawn per replicate


def test_bootstrap_resamples_patients_not_images() -> None:
    # Three copies of every patient's image give exactly the replicates of one copy only if whole
    # patients are drawn; any image-level resampling would break the equality.
    one = clustered(40, 1, seed=0)
    three = PredictionSet(
        *(np.repeat(a, 3) for a in (one.patient_id, one.y_true, one.p_pos, one.threshold))
    )
    a = bootstrap_metrics([one], n_boot=30, seed=5)
    b = bootstrap_metrics([three], n_boot=30, seed=5)
    np.testing.assert_allclose(a[:, :, :-1], b[:, :, :-1], equal_nan=True)  # all but Brier
    np.testing.assert_array_equal(bootstrap_metrics([three], n_boot=30, seed=5), b)  # seeded
    # Image-level resampling (every image its own patient) gives a narrower, overconfident CI.
    images = PredictionSet(
        np.arange(len(three.y_true)).astype(str), three.y_true, three.p_pos, three.threshold
    )
    k = METRIC_NAMES.index("auroc")
    lo_p, hi_p = percentile_ci(bootstrap_metrics([three], 100, 0)[:, 0, k])
    lo_i, hi_i = percentile_ci(bootstrap_metrics([images], 100, 0)[:, 0, k])
    assert hi_p - lo_p > 1.3 * (hi_i - lo_i)


def test_bootstrap_ci_covers_the_true_value() -> None:
    metrics = ("auroc", "mcc")
    population = clustered(100_000, 2, seed=123)
    truth = binary_metrics(population.y_true, population.p_pos, 0.5, metrics)
    covered = np.zeros(len(metrics), int)
    trials = 10
    for seed in range(trials):
        sample = clustered(80, 2, seed=seed)
        boot = bootstrap_metrics([sample], n_boot=100, seed=seed, metrics=metrics)
        for k, m in enumerate(metrics):
            low, high = percentile_ci(boot[:, 0, k])
            covered[k] += low <= truth[m] <= high
    assert (covered >= trials - 2).all(), covered  # nominal 95%: P(<= 7 of 10) < 0.02


def test_percentile_ci_ignores_undefined_replicates() -> None:
    assert percentile_ci(np.array([np.nan, np.nan])) == (None, None)
    low, high = percentile_ci(np.array([np.nan, *np.linspace(0, 1, 101)]))
    assert low == pytest.approx(0.025) and high == pytest.approx(0.975)
