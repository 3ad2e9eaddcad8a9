"""The linear probe the audit refits: the project's LP head (progbench.train.probe: features
standardised on the training part, class-weighted logistic regression, L2 strength chosen on
the fold's validation part) on every fold of the task's splits, its test predictions pooled.
Nothing is written to the runs tree: the audit's probes are controls, not runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from progbench.data.splits import Splits
from progbench.train.probe import ProbeConfig, standardiser


@dataclass(frozen=True)
class FoldRows:
    """One fold as row indices into the manifest."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def fold_rows(splits: Splits, image_ids: list[str]) -> list[FoldRows]:
    pos = {iid: i for i, iid in enumerate(image_ids)}

    def rows(ids: list[str]) -> np.ndarray:
        return np.array([pos[i] for i in ids], dtype=np.int64)

    return [FoldRows(rows(f.train), rows(f.val), rows(f.test)) for f in splits.folds]


def probe_oof(
    x: np.ndarray, y_fit: np.ndarray, folds: list[FoldRows], cfg: ProbeConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(test rows, P(positive)) pooled over `folds`; heads fitted on `y_fit`'s training and
    validation labels only (test labels are never read)."""
    rows, probs = [], []
    # One BLAS thread, as train.features does: these problems are small, and on a busy machine
    # threaded BLAS made a fold's fits 25x slower (3.7 s vs 0.15 s over 5 folds, 2 cores).
    with threadpool_limits(1):
        for f in folds:
            mean, std = standardiser(x[f.train])
            xs = (x - mean) / std
            head = cfg.fit(xs, y_fit, [f.train], f.val)[0]
            rows.append(f.test)
            probs.append(head.predict(xs[f.test]))
    return np.concatenate(rows), np.concatenate(probs)


def permute_training_labels(
    y: np.ndarray, patients: np.ndarray, fold: FoldRows, rng: np.random.Generator
) -> np.ndarray:
    """`y` with the labels of the fold's training and validation images shuffled among
    themselves; test labels untouched. When each patient has one label, whole patients are
    shuffled (a patient's images keep one label, as in the data); else single images."""
    out = y.copy()
    part = np.concatenate([fold.train, fold.val])
    pids = patients[part]
    uniq, inverse = np.unique(pids, return_inverse=True)
    per_patient = np.zeros(len(uniq), dtype=y.dtype)
    per_patient[inverse] = y[part]
    if np.array_equal(per_patient[inverse], y[part]):
        out[part] = rng.permutation(per_patient)[inverse]
    else:
        out[part] = rng.permutation(y[part])
    return out
