"""Linear probes: class-weighted logistic-regression heads, one per problem, grid chosen on validation.

A problem is a set of training rows (a full fold or one few-shot draw). Objective per head:
class-weighted mean binary cross-entropy + wd/2 * ||w||^2 (inverse class frequency weights). The
grid point with the lowest class-weighted validation loss is selected per problem. Test rows are
never seen here. Two solvers (docs/METHODOLOGY.md, section 5, has the measurements):

- `lbfgs` (default): scikit-learn's LogisticRegression solves each (problem, wd) to its optimum.
  On the AIforCOVID-sized grid it was 5x faster than the batched solver, on one BLAS thread.
- `adam` (the `reference` preset): the reference study's head-lr grid {1e-2, 1e-3, 1e-4} x wd,
  full-batch Adam from zero init with early stopping on validation loss and the best weights
  restored. Every (problem, grid point) head is one slice of a (P, D, G) tensor trained with
  batched matmuls, as in DINOv2's linear evaluation.

The presets are YAML files (progbench/configs/probes/, schema progbench.config.probes); each
also names the feature variants searched (progbench.train.features solves every variant and keeps
the one validation prefers). A ProbeConfig is the LP strategy's feature solver
(progbench.train.heads).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from progbench.config import Variant
from progbench.config.keys import identity_of
from progbench.config.probes import PROBES, ProbePreset
from progbench.models.params import linear_head_parameters

PROBE_FILE = "probe.safetensors"
Predictor = Callable[[np.ndarray], np.ndarray]  # raw variant features -> p_pos


class ProbeConfig(ProbePreset):
    """A probe preset with its solver's methods (no field of its own): an LP run's `probe`
    identity is derived from ProbePreset's declarations (progbench.config.keys)."""

    @classmethod
    def preset(cls, name: str) -> ProbeConfig:
        """A preset of progbench/configs/probes/ (or $PROGBENCH_PROBES_DIR): `default` (lbfgs
        over wd, cls1), `reference` (Adam over the study's lr grid x wd x its variants)..."""
        return PROBES.load_as(name, cls)

    @property
    def grid(self) -> list[tuple[float | None, float]]:
        lrs: tuple[float | None, ...] = self.lrs if self.solver == "adam" else (None,)
        return [(lr, wd) for lr in lrs for wd in self.weight_decays]

    def describe(self) -> dict[str, object]:
        return identity_of(self, resolved={"variants": [v.name for v in self.variants]})

    # ------------------------------------------------ the FeatureSolver protocol

    def identity(self) -> dict[str, object]:
        return {"probe": self.describe()}

    def asked_variants(self) -> list[Variant]:
        return list(self.variants)

    def fit(
        self, x: np.ndarray, y: np.ndarray, problems: list[np.ndarray], val_idx: np.ndarray
    ) -> list[ProbeFit]:
        return fit_probes(x, y, problems, val_idx, self)


def probe_predictor(run_dir: Path) -> Predictor:
    """A finished LP run's head on raw features of its variant (`progbench predict`)."""
    fit, mean, std = load_probe(run_dir)
    return lambda x: fit.predict((x - mean) / std)


@dataclass(frozen=True)
class ProbeFit:
    weight: np.ndarray  # (D,)
    bias: float
    lr: float | None  # None for lbfgs
    weight_decay: float
    val_loss: float
    best_step: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probability of the positive class for standardised features `x`."""
        return 1.0 / (1.0 + np.exp(-(x @ self.weight + self.bias)))

    def selected(self) -> dict[str, object]:
        return {"lr": self.lr, "weight_decay": self.weight_decay, "best_step": self.best_step}

    @property
    def trainable(self) -> int:
        # Counted as the 2-way linear head every strategy trains (models.params), so LP's
        # share is the one `progbench models` shows.
        return linear_head_parameters(len(self.weight))

    def files(self, mean: np.ndarray, std: np.ndarray) -> dict[str, bytes]:
        """The head (weight, bias) and its standardisation (mean, std), for `progbench predict`."""
        arrays = {"weight": self.weight, "bias": np.array([self.bias]), "mean": mean, "std": std}
        return {
            PROBE_FILE: save({k: np.ascontiguousarray(v, np.float32) for k, v in arrays.items()})
        }


def load_probe(run_dir: Path) -> tuple[ProbeFit, np.ndarray, np.ndarray]:
    t = load_file(str(run_dir / PROBE_FILE))
    fit = ProbeFit(t["weight"].astype(np.float64), float(t["bias"][0]), None, 0.0, float("nan"), -1)
    return fit, t["mean"], t["std"]


def balanced_weights(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Inverse class frequency per row (scikit-learn's 'balanced'), normalised to mean 1 over `mask`."""
    y = y.float()
    n = mask.sum(-1, keepdim=True)
    n_pos = (mask * y).sum(-1, keepdim=True)
    n_neg = n - n_pos
    w = torch.where(y > 0.5, n / (2 * n_pos.clamp(min=1)), n / (2 * n_neg.clamp(min=1)))
    return w * mask


@contextmanager
def single_thread() -> Iterator[None]:
    """Run this thread's torch ops on one core. The probe's tensors are small: on 2 cores one
    thread was 15x faster than two (measured: 0.22 s vs 3.45 s for a fold's grid on a busy
    machine), as intra-op threading costs more than it saves on ops of ~1e5 elements.
    Parallelism comes from solving folds on several Python threads instead (torch releases the
    GIL inside ops). The setting is per thread (OpenMP), so concurrent solvers do not race."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_probes(
    x: np.ndarray,
    y: np.ndarray,
    problems: list[np.ndarray],
    val_idx: np.ndarray,
    cfg: ProbeConfig | None = None,
) -> list[ProbeFit]:
    """Fit one selected head per problem. `x` must already be standardised; rows index into it."""
    cfg = cfg or ProbeConfig()
    if cfg.solver == "lbfgs":
        return _fit_lbfgs(x, y, problems, val_idx, cfg)
    return _fit_adam(x, y, problems, val_idx, cfg)


def _weighted_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Class-weighted (balanced) mean binary cross-entropy, the validation criterion."""
    w = np.where(y == 1, 0.5 / max(y.mean(), 1e-12), 0.5 / max(1 - y.mean(), 1e-12))
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(np.average(-(y * np.log(p) + (1 - y) * np.log(1 - p)), weights=w))


def _fit_lbfgs(
    x: np.ndarray, y: np.ndarray, problems: list[np.ndarray], val_idx: np.ndarray, cfg: ProbeConfig
) -> list[ProbeFit]:
    x_va, y_va = x[val_idx], np.asarray(y)[val_idx]
    fits = []
    with warnings.catch_warnings():
        # Separable few-shot problems at small wd stop at max_steps; validation picks the wd.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for rows in problems:
            best: ProbeFit | None = None
            # Strongest penalty first, each fit warm-started from the last: the path from a
            # smooth optimum to a sharper one takes fewer iterations than a cold start.
            model = LogisticRegression(
                class_weight="balanced", max_iter=cfg.max_steps, warm_start=True
            )
            for wd in sorted(cfg.weight_decays, reverse=True):
                # sklearn minimises C * sum(loss) + ||w||^2 / 2, i.e. ours with C = 1 / (wd * n).
                model.set_params(C=1.0 / (wd * len(rows)))
                model.fit(x[rows], np.asarray(y)[rows])
                fit = ProbeFit(
                    weight=model.coef_[0].astype(np.float64),
                    bias=float(model.intercept_[0]),
                    lr=None,
                    weight_decay=wd,
                    val_loss=0.0,
                    best_step=int(model.n_iter_[0]),
                )
                loss = _weighted_log_loss(y_va, fit.predict(x_va))
                if best is None or loss <= best.val_loss + 1e-12:  # ties: the smaller wd
                    best = dataclasses.replace(fit, val_loss=loss)
            assert best is not None
            fits.append(best)
    return fits


def _fit_adam(
    x: np.ndarray, y: np.ndarray, problems: list[np.ndarray], val_idx: np.ndarray, cfg: ProbeConfig
) -> list[ProbeFit]:
    grid = cfg.grid
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.float32))
    train = _train_batch(xt, yt, problems)
    val = _val_batch(xt, yt, val_idx)
    lr = torch.tensor([float(g[0] or 0.0) for g in grid])  # (G,)
    wd = torch.tensor([g[1] for g in grid])  # (G,)
    best = _train_heads(train, val, lr, wd, cfg)
    return _selected_fits(best, grid)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # features, labels, row weights


def _train_batch(xt: torch.Tensor, yt: torch.Tensor, problems: list[np.ndarray]) -> Batch:
    """Every problem's rows padded to one (P, L) batch; balanced weights summing to 1 per problem."""
    length = max(len(p) for p in problems)
    idx = torch.zeros(len(problems), length, dtype=torch.long)
    mask = torch.zeros(len(problems), length)
    for i, p in enumerate(problems):
        idx[i, : len(p)] = torch.from_numpy(np.asarray(p, dtype=np.int64))
        mask[i, : len(p)] = 1.0
    x_tr, y_tr = xt[idx], yt[idx]  # (P, L, D), (P, L)
    w_tr = balanced_weights(y_tr, mask)
    return x_tr, y_tr, w_tr / w_tr.sum(-1, keepdim=True)


def _val_batch(xt: torch.Tensor, yt: torch.Tensor, val_idx: np.ndarray) -> Batch:
    """The validation rows, shared by every problem; balanced weights summing to 1."""
    vt = torch.from_numpy(np.asarray(val_idx, dtype=np.int64))
    x_va, y_va = xt[vt], yt[vt]
    w_va = balanced_weights(y_va[None], torch.ones(1, len(vt)))[0]
    return x_va, y_va, w_va / w_va.sum()


@dataclass
class _BestHeads:
    """Per (problem, grid point): the lowest validation loss so far, its head and its step."""

    loss: torch.Tensor  # (P, G)
    w: torch.Tensor  # (P, D, G)
    b: torch.Tensor  # (P, 1, G)
    step: torch.Tensor  # (P, G)
    stale: torch.Tensor  # (P, G): evaluations since the last improvement

    @classmethod
    def empty(cls, u_w: torch.Tensor, u_b: torch.Tensor) -> _BestHeads:
        n_prob, _, n_grid = u_w.shape
        return cls(
            loss=torch.full((n_prob, n_grid), float("inf")),
            w=torch.zeros_like(u_w),
            b=torch.zeros_like(u_b),
            step=torch.zeros(n_prob, n_grid, dtype=torch.long),
            stale=torch.zeros(n_prob, n_grid, dtype=torch.long),
        )

    def update(
        self, val_loss: torch.Tensor, u_w: torch.Tensor, u_b: torch.Tensor, step: int
    ) -> None:
        better = val_loss < self.loss - 1e-7
        self.loss = torch.where(better, val_loss, self.loss)
        self.w = torch.where(better[:, None, :], u_w, self.w)
        self.b = torch.where(better[:, None, :], u_b, self.b)
        self.step = torch.where(better, torch.full_like(self.step, step), self.step)
        self.stale = torch.where(better, torch.zeros_like(self.stale), self.stale + 1)


def _train_heads(
    train: Batch, val: Batch, lr: torch.Tensor, wd: torch.Tensor, cfg: ProbeConfig
) -> _BestHeads:
    """Full-batch Adam on every (problem, grid point) head; the best heads on validation."""
    (x_tr, y_tr, w_tr), (x_va, y_va, w_va) = train, val
    # One (P, D, G) tensor holds every head. A per-grid-point learning rate without param groups:
    # optimise u = w / lr with torch's fused Adam at lr 1. Adam ignores the gradient's scale, so
    # the steps in w are exactly those of Adam at each point's own lr (eps scaled to match).
    # The fused kernel is one pass over the heads per step; the update, not the matmuls,
    # dominates few-shot problems, whose heads far outnumber their rows.
    decay = lr * lr * wd  # d/du of wd/2 ||lr u||^2, per lr-scaled gradient
    x_tr_t = x_tr.transpose(1, 2).contiguous()  # (P, D, L)
    y_tr3, w_tr3 = y_tr[..., None], (w_tr[..., None] * lr)  # (P, L, 1), (P, L, G)
    y_va3, w_va3 = y_va[None, :, None], w_va[None, :, None]  # (1, V, 1)
    u_w = torch.zeros(len(x_tr), x_tr.shape[2], len(lr))
    u_b = torch.zeros(len(x_tr), 1, len(lr))
    u_w.grad, u_b.grad = torch.zeros_like(u_w), torch.zeros_like(u_b)
    adam = torch.optim.Adam([u_w, u_b], lr=1.0, eps=1e-8 * float(lr.min()), fused=True)
    best = _BestHeads.empty(u_w, u_b)
    with torch.no_grad(), single_thread():
        for step in range(cfg.max_steps + 1):
            if step % cfg.eval_every == 0:
                logits = torch.matmul(x_va, u_w) * lr + u_b * lr  # (P, V, G)
                bce = F.binary_cross_entropy_with_logits(
                    logits, y_va3.expand_as(logits), reduction="none"
                )
                best.update((bce * w_va3).sum(1), u_w, u_b, step)  # val loss (P, G)
                if bool((best.stale >= cfg.patience).all()) or step == cfg.max_steps:
                    break
            # Analytic gradient of the weighted BCE: d/dlogit = w * (sigmoid(logit) - y); the
            # chain rule through w = lr * u multiplies it by lr (folded into w_tr3).
            logits = torch.bmm(x_tr, u_w) * lr + u_b * lr  # (P, L, G)
            r = (torch.sigmoid(logits) - y_tr3) * w_tr3
            torch.baddbmm(u_w * decay, x_tr_t, r, out=u_w.grad)  # (P, D, G)
            torch.sum(r, 1, keepdim=True, out=u_b.grad)
            adam.step()
    best.w *= lr  # back from u to w units
    best.b *= lr
    return best


def _selected_fits(best: _BestHeads, grid: list[tuple[float | None, float]]) -> list[ProbeFit]:
    """Per problem, the grid point with the lowest validation loss."""
    choice = best.loss.argmin(1)  # first (largest lr, smallest wd) on ties
    fits = []
    for p in range(len(choice)):
        g = int(choice[p])
        fits.append(
            ProbeFit(
                weight=best.w[p, :, g].numpy().astype(np.float64),
                bias=float(best.b[p, 0, g]),
                lr=grid[g][0],
                weight_decay=grid[g][1],
                val_loss=float(best.loss[p, g]),
                best_step=int(best.step[p, g]),
            )
        )
    return fits


def standardiser(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the training part's features (constant dimensions get std 1)."""
    mean = x_train.mean(0)
    std = x_train.std(0)
    return mean, np.where(std > 1e-8, std, 1.0)
