"""Classical baselines on the frozen features: any scikit-learn classifier named in YAML
(`kind: sklearn`), fitted through the feature path, progbench.train.features (same splits,
standardisation, run format and evaluator as the linear probe).

With `calibration`, p_pos comes from CalibratedClassifierCV(estimator, method, ensemble=False)
on min(3, smallest class) stratified folds of the training images (scikit-learn 1.9 deprecates
SVC's own `probability=True` for this).

Per problem, every point of the preset's `grid` (the cross product of its lists, in YAML order)
is fitted on the training rows with `params` and `class_weight`; the point with the lowest
class-weighted log loss on the fold's validation rows is kept (ties: the first), as the probe
keeps its weight decay. A point the estimator refuses for this problem (e.g. more neighbours
than training images in a 2-shot draw) is skipped and counted; a problem with no usable point
is an error.

The fitted estimator is saved with joblib (pickle): scikit-learn has no safe format of its own
and skops is not a dependency. Unpickling runs code, so the run records the file's sha256 in
spec.json (`extra.files_sha256`) and `progbench predict` refuses a file whose digest differs.
That catches a swapped or damaged file, not a forged run directory: predict only with runs you
trust.
"""

from __future__ import annotations

import importlib
import io
import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from progbench.config import StrategySpec, Variant
from progbench.config.keys import identity_of
from progbench.errors import ConfigError, RunError

if TYPE_CHECKING:
    from progbench.train.heads import Predictor

ESTIMATOR_FILE = "estimator.joblib"
STANDARDISE_FILE = "standardise.safetensors"


def balanced_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Class-weighted (balanced) log loss, the validation criterion of every feature head."""
    from sklearn.metrics import log_loss
    from sklearn.utils.class_weight import compute_sample_weight

    return float(log_loss(y, p, sample_weight=compute_sample_weight("balanced", y), labels=[0, 1]))


@dataclass(frozen=True)
class SklearnHead:
    estimator: Any
    point: dict[str, Any]
    val_loss: float
    skipped: int  # grid points the estimator refused for this problem

    @property
    def trainable(self) -> int | None:
        return None  # a kNN's stored rows or a forest's nodes are not a parameter count

    def predict(self, x: np.ndarray) -> np.ndarray:
        proba = self.estimator.predict_proba(x)
        return proba[:, list(self.estimator.classes_).index(1)].astype(np.float64)

    def selected(self) -> dict[str, Any]:
        return {"params": self.point, "skipped_grid_points": self.skipped}

    def files(self, mean: np.ndarray, std: np.ndarray) -> dict[str, bytes]:
        import joblib
        from safetensors.numpy import save

        buf = io.BytesIO()
        joblib.dump(self.estimator, buf)
        return {
            ESTIMATOR_FILE: buf.getvalue(),
            STANDARDISE_FILE: save({"mean": mean, "std": std}),
        }


@dataclass(frozen=True)
class SklearnSolver:
    """The FeatureSolver of a `sklearn` preset."""

    spec: StrategySpec

    def identity(self) -> dict[str, Any]:
        s = self.spec
        fields = identity_of(s, "sklearn")  # the preset's `sklearn` fields (config.keys)
        return {"sklearn": fields | {"variants": s.variant_grid.identity()}}

    def asked_variants(self) -> list[Variant]:
        return self.spec.variant_grid.variants()

    def points(self) -> list[dict[str, Any]]:
        keys = list(self.spec.grid)
        return [
            dict(zip(keys, vals, strict=True))
            for vals in itertools.product(*self.spec.grid.values())
        ]

    def estimator(self, point: dict[str, Any], y_train: np.ndarray) -> Any:
        module, _, name = (self.spec.estimator or "").rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        weight = {"class_weight": self.spec.class_weight} if self.spec.class_weight else {}
        est = cls(**self.spec.params, **point, **weight)
        if self.spec.calibration is None:
            return est
        from sklearn.calibration import CalibratedClassifierCV

        folds = min(3, int(np.bincount(y_train, minlength=2).min()))
        return CalibratedClassifierCV(est, method=self.spec.calibration, cv=folds, ensemble=False)

    def fit(
        self, x: np.ndarray, y: np.ndarray, problems: list[np.ndarray], val_idx: np.ndarray
    ) -> list[SklearnHead]:
        return [self._fit_one(x, np.asarray(y), rows, val_idx) for rows in problems]

    def _fit_one(
        self, x: np.ndarray, y: np.ndarray, rows: np.ndarray, val_idx: np.ndarray
    ) -> SklearnHead:
        from sklearn.exceptions import ConvergenceWarning

        best: SklearnHead | None = None
        skipped, reasons = 0, []
        for point in self.points():
            head = SklearnHead(self.estimator(point, y[rows]), point, 0.0, 0)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    head.estimator.fit(x[rows], y[rows])
                    p_val = head.predict(x[val_idx])
            except ValueError as err:  # e.g. n_neighbors > n_samples on a few-shot draw
                skipped += 1
                reasons.append(f"{point}: {err}")
                continue
            loss = balanced_log_loss(y[val_idx], p_val)
            if best is None or loss < best.val_loss:
                best = SklearnHead(head.estimator, point, loss, 0)
        if best is None:
            raise ConfigError(
                f"strategy {self.spec.name}: {self.spec.estimator} fits no grid point on "
                f"{len(rows)} training images ({'; '.join(reasons[:2])})",
                "Give its `grid` values that fit small problems too (few-shot draws hold 2k "
                "images).",
            )
        return SklearnHead(best.estimator, best.point, best.val_loss, skipped)


def sklearn_predictor(run_dir: Path, extra: dict[str, Any]) -> Predictor:
    """The run's estimator and standardisation, after checking the recorded sha256."""
    import joblib
    from safetensors.numpy import load_file

    from progbench.train.runwriter import sha256

    file = run_dir / ESTIMATOR_FILE
    want = (extra.get("files_sha256") or {}).get(ESTIMATOR_FILE)
    have = sha256(file.read_bytes()) if file.is_file() else None
    if want is None or have != want:
        raise RunError(
            f"refusing to load {file}: its sha256 is {have}, the run recorded {want}",
            "A pickle runs code when loaded: only files this run wrote are loaded. Retrain the "
            "run (`progbench train ... --force`).",
        )
    estimator = joblib.load(file)
    t = load_file(str(run_dir / STANDARDISE_FILE))
    head = SklearnHead(estimator, {}, float("nan"), 0)
    return lambda x: head.predict((x - t["mean"]) / t["std"])
