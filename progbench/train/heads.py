"""What the feature path asks of a feature-path strategy's solver (progbench.train.solvers).

progbench.train.features loads the feature store, standardises each fold with its training
images, and for every feature variant the solver asks for (and the backbone offers) calls
`solver.fit` on that variant's columns; per problem it keeps the head with the lowest
validation loss (class-weighted log loss), writes its files and predictions, and scores the run.
`progbench predict` rebuilds the head with its predictor. The LP's solver
is its probe preset (progbench.train.probe.ProbeConfig); the `sklearn` kind's fits an estimator
(progbench.train.estimators).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from progbench.config import Variant

Predictor = Callable[[np.ndarray], np.ndarray]  # raw variant features (N, D) -> p_pos (N,)


class FeatureHead(Protocol):
    """One fitted head of one problem."""

    @property  # read-only, so that a frozen dataclass's field satisfies it
    def val_loss(self) -> float:
        """Class-weighted log loss on the fold's validation rows."""

    @property
    def trainable(self) -> int | None:
        """Parameters counted as trained (None: not counted, e.g. a random forest)."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """p_pos for standardised features."""

    def selected(self) -> dict[str, Any]:
        """The hyper-parameters validation chose (recorded in the run's `extra`)."""

    def files(self, mean: np.ndarray, std: np.ndarray) -> dict[str, bytes]:
        """What the run directory keeps for `progbench predict`, with the standardisation."""


class FeatureSolver(Protocol):
    def identity(self) -> dict[str, Any]:
        """The solver's settings: part of every run's identity."""

    def asked_variants(self) -> list[Variant]:
        """The feature variants to search, in order (ties go to the first)."""

    def fit(
        self, x: np.ndarray, y: np.ndarray, problems: list[np.ndarray], val_idx: np.ndarray
    ) -> Sequence[FeatureHead]:
        """One selected head per problem (rows of `x`); `x` is standardised."""
