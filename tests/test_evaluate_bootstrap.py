"""The vectorised patient bootstrap against scikit-learn on the same resamples.

`slow_bootstrap` is the per-replicate reference (the evaluator's former implementation): it
materialises each replicate's rows with np.repeat and scores them with `binary_metrics`, i.e.
scikit-learn. The weighted path must give the same values (1e-9) and the same undefined (NaN)
entries, and aggregate_group must give the same CIs with either.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from progbench.evaluate import aggregate
from progbench.evaluate.aggregate import (
    EvaluatedRun,
    PredictionSet,
    aggregate_group,
    bootstrap_metrics,
)
from progbench.evaluate.bootstrap import count_blocks, patient_bootstrap
from progbench.evaluate.metrics import METRIC_NAMES, binary_metrics
from progbench.runs import RunSpec

TOL = 1e-9


def slow_bootstrap(
    sets: list[PredictionSet], n_boot: int, seed: int, metrics: tuple[str, ...] = METRIC_NAMES
) -> np.ndarray:
    universe = np.unique(np.concatenate([s.patient_id for s in sets]).astype(str))
    codes = [np.searchsorted(universe, s.patient_id.astype(str)) for s in sets]
    out = np.full((n_boot, len(sets), len(metrics)), np.nan)
    for b, counts in enumerate(patient_bootstrap(universe, n_boot, seed)):
        for j, s in enumerate(sets):
            rows = np.repeat(np.arange(len(s.y_true)), counts[codes[j]])
            values = binary_metrics(s.y_true[rows], s.p_pos[rows], s.threshold[rows], metrics)
            out[b, j] = [np.nan if values[m] is None else values[m] for m in metrics]
    return out


def make_set(
    patients: list[int], y: list[int], p: list[float], t: float | list[float] = 0.5
) -> PredictionSet:
    return PredictionSet(
        patient_id=np.array([f"p{i}" for i in patients], dtype=object),
        y_true=np.array(y),
        p_pos=np.array(p, dtype=float),
        threshold=np.broadcast_to(np.asarray(t, dtype=float), (len(y),)).copy(),
    )


def random_set(rng: np.random.Generator, n: int, n_patients: int, decimals: int) -> PredictionSet:
    """Rounded scores (many ties), per-row thresholds, several images per patient."""
    patients = rng.integers(0, n_patients, n)
    return make_set(
        list(patients),
        list((rng.random(n) < 0.4).astype(int)),
        list(np.round(rng.random(n), decimals)),
        list(rng.choice([0.3, 0.5, 0.55], n)),
    )


CASES: dict[str, Callable[[], list[PredictionSet]]] = {
    "ties-and-row-thresholds": lambda: [random_set(np.random.default_rng(1), 60, 25, 1)],
    # One positive patient of six: about a third of the replicates have no positive.
    "a-class-vanishes": lambda: [
        make_set([0, 0, 1, 2, 3, 4, 5], [1, 1, 0, 0, 0, 0, 0], [0.9, 0.4, 0.6, 0.2, 0.4, 0.1, 0.3])
    ],
    "one-negative-patient": lambda: [
        make_set(
            [0, 1, 2, 3, 4], [0, 1, 1, 1, 1], [0.7, 0.7, 0.2, 0.9, 0.5], [0.6, 0.6, 0.4, 0.5, 0.5]
        )
    ],
    "constant-scores": lambda: [make_set([0, 1, 2, 3, 3, 4], [0, 1, 0, 1, 1, 0], [0.5] * 6)],
    "single-true-class": lambda: [make_set([0, 1, 2], [0, 0, 0], [0.1, 0.6, 0.6])],
    "tiny": lambda: [make_set([0], [1], [0.3]), make_set([0, 1], [1, 0], [0.3, 0.3])],
    # Sets with patients the others lack: replicates that draw none of a set's patients.
    "disjoint-patients": lambda: [
        random_set(np.random.default_rng(2), 30, 8, 2),
        make_set([100], [1], [0.8]),
        make_set([101, 102], [0, 1], [0.2, 0.2], [0.1, 0.9]),
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_every_metric_equals_sklearn_on_the_same_resamples(case: str) -> None:
    sets = CASES[case]()
    slow = slow_bootstrap(sets, n_boot=40, seed=3)
    fast = bootstrap_metrics(sets, n_boot=40, seed=3)
    assert fast.shape == slow.shape == (40, len(sets), len(METRIC_NAMES))
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(slow))
    np.testing.assert_allclose(fast, slow, rtol=0, atol=TOL, equal_nan=True)


def test_the_cases_reach_the_undefined_rules() -> None:
    """The cases above are only a check of the NaN rules if replicates actually hit them."""
    k = {m: METRIC_NAMES.index(m) for m in METRIC_NAMES}
    vanish = bootstrap_metrics(CASES["a-class-vanishes"](), 40, 3)[:, 0]
    for m in ("auroc", "pr_auc", "sensitivity", "balanced_accuracy"):
        assert 0 < np.isnan(vanish[:, k[m]]).sum() < 40, m
    assert not np.isnan(vanish[:, k["mcc"]]).any()  # MCC is 0.0, never undefined
    assert (vanish[np.isnan(vanish[:, k["auroc"]]), k["mcc"]] == 0).all()
    disjoint = bootstrap_metrics(CASES["disjoint-patients"](), 40, 3)
    empty = np.isnan(disjoint[:, 1, k["brier"]])  # set 1's only patient not drawn
    assert 0 < empty.sum() < 40 and np.isnan(disjoint[empty, 1]).all()
    constant = bootstrap_metrics(CASES["constant-scores"](), 40, 3)[:, 0]
    both = ~np.isnan(constant[:, k["auroc"]])
    assert both.any() and (constant[both, k["auroc"]] == 0.5).all()
    assert (constant[:, k["mcc"]] == 0).all()
    f1 = bootstrap_metrics(CASES["single-true-class"](), 40, 3)[:, 0, k["f1"]]
    assert np.isnan(f1).any() and (f1[~np.isnan(f1)] == 0).all()  # tp + fp + fn = 0 vs fp > 0


def test_a_subset_of_metrics_in_any_order() -> None:
    sets = CASES["ties-and-row-thresholds"]()
    metrics = ("brier", "auroc", "mcc")
    full = bootstrap_metrics(sets, 30, 9)
    part = bootstrap_metrics(sets, 30, 9, metrics=metrics)
    np.testing.assert_array_equal(part, full[:, :, [METRIC_NAMES.index(m) for m in metrics]])
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_metrics(sets, 5, 0, metrics=("accuracy",))


def test_blocks_draw_the_reference_stream_and_bound_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    for n_patients, block in ((1, 3), (7, 2), (151, 64), (40, 1000)):
        blocks = list(count_blocks(n_patients, 130, seed=42, block=block))
        assert max(len(b) for b in blocks) == min(block, 130)
        reference = np.array(list(patient_bootstrap(range(n_patients), 130, seed=42)))
        np.testing.assert_array_equal(np.concatenate(blocks), reference)
    sets = CASES["disjoint-patients"]()
    whole = bootstrap_metrics(sets, 50, 4)
    monkeypatch.setattr("progbench.evaluate.bootstrap.BLOCK_CELLS", 100)  # a few replicates a block
    np.testing.assert_array_equal(bootstrap_metrics(sets, 50, 4), whole)


# ------------------------------------------------------------------- aggregate_group CIs unchanged


def evaluated(fold: int, repeat: int | None, threshold: float, seed: int) -> EvaluatedRun:
    """A run held in memory: 12 test images of 8 patients (some with two images), tied scores."""
    rng = np.random.default_rng(seed)
    patients = [f"f{fold}-p{i}" for i in (0, 0, 1, 2, 2, 3, 4, 5, 5, 6, 7, 7)]
    y = np.array([0, 0, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1])
    p = np.round(np.clip(0.35 * y + rng.random(12) * 0.65, 0, 1), 1)
    test = pd.DataFrame({"patient_id": patients, "y_true": y, "p_pos": p})
    shots = 4 if repeat is not None else None
    spec = RunSpec(
        task="t",
        backbone="b",
        weights="random",
        strategy="lp",
        regime="fewshot" if shots else "full",
        fold=fold,
        shots=shots,
        repeat=repeat,
        scheme="kfold",
    )
    metrics = {"test": binary_metrics(y, p, threshold)}
    return EvaluatedRun(spec, metrics, test, threshold, f"fixed:{threshold}")


@pytest.mark.slow
@pytest.mark.parametrize("regime", ["full", "fewshot"])
def test_aggregate_group_cis_are_unchanged(regime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    repeats = [None] if regime == "full" else [0, 1, 2]
    runs = [
        evaluated(fold, rep, threshold=0.4 + 0.1 * fold, seed=10 * fold + (rep or 0))
        for fold in range(3)
        for rep in repeats
    ]
    fast = aggregate_group(runs, n_boot=80, seed=11)
    monkeypatch.setattr(aggregate, "bootstrap_metrics", slow_bootstrap)
    slow = aggregate_group(runs, n_boot=80, seed=11)
    assert [(r.level, r.metric, r.repeat) for r in fast] == [
        (r.level, r.metric, r.repeat) for r in slow
    ]
    with_ci = 0
    for a, b in zip(fast, slow, strict=True):
        assert a.value == b.value
        for x, y in ((a.ci_low, b.ci_low), (a.ci_high, b.ci_high)):
            assert (x is None) == (y is None), (a, b)
            if x is not None:
                assert x == pytest.approx(y, abs=TOL, rel=0)
                with_ci += 1
    assert with_ci >= 2 * 8 * len(repeats)  # every pooled metric got a CI
