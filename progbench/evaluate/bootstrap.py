"""The patient bootstrap, vectorised: every replicate's metrics from count weights at once.

A replicate draws the P patients with replacement; a row's weight in it is its patient's draw
count, so a replicate is the set itself with weights, never a materialised list of rows. Every
metric is a function of weighted sums over rows, and a weighted sum over rows is a sum over
patients: each set becomes one sparse (patient x column) matrix of per-patient row counts and
the sums of a block of replicates are one product `counts (b, P) @ design (P, K)`.

Columns of the design: the four confusion cells (TP, FP, FN, TN: thresholds are per row and the
weights do not move them), the squared error (p - y)^2, then, per distinct score (one sort per
set, highest first), the positive rows and the negative rows with that score. Cumulative sums
over the score columns give the ROC/PR points of every replicate, ties forming one step as in
scikit-learn's `_binary_clf_curve`. The sums are exact integers in float64, so only the final
divisions round; tests/test_evaluate_bootstrap.py pins every metric to scikit-learn on the same
resamples. Undefined values follow progbench/evaluate/metrics.py and are NaN.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from progbench.evaluate.metrics import METRIC_NAMES

# float64 cells in one (replicates x design columns) block: 32 MiB per array, so memory stays
# bounded for large pooled sets (13,639 test images x B = 1000 runs in ~8 blocks).
BLOCK_CELLS = 1 << 22
CONFUSION = ("tp", "fp", "fn", "tn")
RANKED = frozenset({"auroc", "pr_auc"})


def patient_bootstrap(patient_ids: Sequence[Any], n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Yield, per replicate, each patient's draw count (aligned with `np.unique(patient_ids)`).

    The reference stream: `count_blocks` draws the same numbers, a block of replicates at a time.
    """
    n_patients = len(np.unique(np.asarray(patient_ids, dtype=object).astype(str)))
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield np.bincount(rng.integers(0, n_patients, n_patients), minlength=n_patients)


def count_blocks(n_patients: int, n_boot: int, seed: int, block: int) -> Iterator[np.ndarray]:
    """Draw counts of blocks of up to `block` replicates, shape (b, n_patients).

    One `rng.integers` call of shape (b, P) consumes the generator exactly as b calls of size P,
    so the replicates are those of `patient_bootstrap` (a test checks it).
    """
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        draws = rng.integers(0, n_patients, (b, n_patients))
        flat = (draws + n_patients * np.arange(b)[:, None]).ravel()
        yield np.bincount(flat, minlength=b * n_patients).reshape(b, n_patients)


@dataclass(frozen=True)
class Design:
    """Per-patient sums of one set's rows; `n_scores` score columns per class (0 if unranked)."""

    matrix: sparse.csc_array  # (n_patients, 5 + 2 * n_scores)
    n_scores: int


def design_matrix(
    codes: np.ndarray,
    y_true: np.ndarray,
    p_pos: np.ndarray,
    threshold: np.ndarray,
    n_patients: int,
    ranked: bool = True,
) -> Design:
    """The design of rows with patient index `codes`; `ranked` adds the score columns."""
    y = np.asarray(y_true).astype(np.int64)
    p = np.asarray(p_pos, dtype=np.float64)
    pred = (p >= np.asarray(threshold, dtype=np.float64)).astype(np.int64)
    n = len(y)
    cell = np.select([(y == 1) & (pred == 1), pred == 1, y == 1], [0, 1, 2], default=3)
    cols = [cell, np.full(n, 4)]
    data = [np.ones(n), (p - y) ** 2]
    n_scores = 0
    if ranked and n:
        scores, inverse = np.unique(p, return_inverse=True)  # the one sort of the set's scores
        n_scores = len(scores)
        step = n_scores - 1 - inverse.ravel()  # step 0 holds the highest score
        cols.append(5 + step + n_scores * (1 - y))  # positives first, then negatives
        data.append(np.ones(n))
    rows = np.tile(np.asarray(codes, dtype=np.int64), len(cols))
    shape = (n_patients, 5 + 2 * n_scores)
    coo = sparse.coo_array((np.concatenate(data), (rows, np.concatenate(cols))), shape=shape)
    return Design(coo.tocsc(), n_scores)  # duplicates (a patient's rows) are summed


def _divide(num: np.ndarray, den: np.ndarray, defined: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    return np.divide(num, den, out=out, where=defined)


def _mcc(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """scikit-learn's `matthews_corrcoef` arithmetic, 0.0 when a confusion margin is empty."""
    n = tp + fp + fn + tn
    t_pos, t_neg, p_pos, p_neg = tp + fn, tn + fp, tp + fp, tn + fn
    cov_ytyp = (tp + tn) * n - (t_neg * p_neg + t_pos * p_pos)
    cov_ypyp = n**2 - (p_neg**2 + p_pos**2)
    cov_ytyt = n**2 - (t_neg**2 + t_pos**2)
    prod = cov_ypyp * cov_ytyt
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(prod == 0, 0.0, cov_ytyp / np.sqrt(prod))


def _ranked(
    sums: np.ndarray, n_scores: int, n_pos: np.ndarray, n_neg: np.ndarray
) -> dict[str, np.ndarray]:
    """AUROC (trapezoid, tied scores one step) and step-wise average precision."""
    pos = sums[:, 5 : 5 + n_scores]
    neg = sums[:, 5 + n_scores :]
    tps = np.cumsum(pos, axis=1)
    fps = np.cumsum(neg, axis=1)
    # Trapezoid under each step: width neg, mean height tps - pos / 2 (integers and halves: exact).
    area = (neg * (tps - 0.5 * pos)).sum(axis=1)
    both = (n_pos > 0) & (n_neg > 0)
    # Only steps that add recall count; they hold a positive, so their precision is defined.
    precision = np.divide(tps, tps + fps, out=np.zeros_like(tps), where=pos > 0)
    return {
        "auroc": _divide(area, n_pos * n_neg, both),
        "pr_auc": _divide((pos * precision).sum(axis=1), n_pos, n_pos > 0),
    }


def replicate_metrics(design: Design, counts: np.ndarray, metrics: tuple[str, ...]) -> np.ndarray:
    """Metrics (columns, in `metrics` order) of each replicate (rows) of `counts` (b, P)."""
    sums = np.asarray(counts, dtype=np.float64) @ design.matrix  # (b, K), exact integer sums
    tp, fp, fn, tn = (sums[:, k] for k in range(4))
    n = tp + fp + fn + tn
    n_pos, n_neg = tp + fn, tn + fp
    sens = _divide(tp, n_pos, n_pos > 0)
    spec = _divide(tn, n_neg, n_neg > 0)
    values = {
        "mcc": _mcc(tp, fp, fn, tn),
        "sensitivity": sens,
        "specificity": spec,
        "balanced_accuracy": (sens + spec) / 2,  # NaN unless both classes are drawn
        "f1": _divide(2 * tp, 2 * tp + fp + fn, 2 * tp + fp + fn > 0),
        "brier": _divide(sums[:, 4], n, n > 0),
    }
    if RANKED & set(metrics):
        values |= _ranked(sums, design.n_scores, n_pos, n_neg)
    out = np.column_stack([values[m] for m in metrics]) if metrics else np.empty((len(sums), 0))
    # A replicate that drew none of the set's patients has no rows: every metric is undefined.
    out[n == 0] = np.nan
    return out


def check_metrics(metrics: tuple[str, ...]) -> None:
    unknown = [name for name in metrics if name not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(METRIC_NAMES)}")


def weighted_bootstrap(
    designs: Sequence[Design],
    n_patients: int,
    n_boot: int,
    seed: int,
    metrics: tuple[str, ...] = METRIC_NAMES,
    block_cells: int = BLOCK_CELLS,
) -> np.ndarray:
    """Metrics of every replicate for every set: shape (n_boot, len(designs), len(metrics)).

    One draw of patients per replicate is shared by all sets; replicates are processed in blocks
    of at most `block_cells` / (widest design) replicates to bound memory.
    """
    check_metrics(metrics)
    out = np.full((n_boot, len(designs), len(metrics)), np.nan)
    if n_patients == 0 or n_boot <= 0:
        return out
    widest = max([d.matrix.shape[1] for d in designs], default=1)
    block = max(1, block_cells // max(widest, n_patients))
    start = 0
    for counts in count_blocks(n_patients, n_boot, seed, block):
        stop = start + len(counts)
        for j, design in enumerate(designs):
            out[start:stop, j] = replicate_metrics(design, counts, metrics)
        start = stop
    return out
