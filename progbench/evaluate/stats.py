"""Significance tests between strategies: paired Wilcoxon with Holm correction, and Friedman
with the Nemenyi post-hoc test and the critical difference (Demšar 2006, JMLR 7:1-30).

Every statistic comes from a maintained library: scipy (`wilcoxon`, `friedmanchisquare`,
`permutation_test`, `rankdata`, `studentized_range`), statsmodels (`multipletests`, Holm) and
scikit-posthocs (`posthoc_nemenyi_friedman`). This module only shapes the inputs and names the
outputs.

Conventions
- Paired tests compare two treatments on the blocks where both have a defined value.
- Ranks: 1 is best. With `higher_is_better=False` (e.g. the Brier score) the lowest value ranks 1.
- p-values that could not be computed (no pairs) are NaN and take no part in the Holm family.
- Friedman p: the chi-square approximation is poor for few blocks, so with fewer than
  `EXACT_BELOW_BLOCKS` blocks the p-value is the permutation p (ranks permuted within blocks):
  exhaustive when the (k!)^n arrangements number at most `N_PERMUTATIONS`, else a seeded Monte
  Carlo of `N_PERMUTATIONS` draws. `FriedmanResult.p_method` says which p was used.
"""

from __future__ import annotations

import gc
import inspect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy import stats
from statsmodels.stats.multitest import multipletests

DEFAULT_ALPHA = 0.05
EXACT_BELOW_BLOCKS = 10  # fewer blocks: permutation p instead of the chi-square approximation
N_PERMUTATIONS = 100_000  # exhaustive up to this many arrangements, else this many draws
PERMUTATION_SEED = 42
P_METHODS = ("chi-square", "exact", "monte-carlo")
# scipy >= 1.15 names the generator `rng`; older releases call it `random_state`.
_SCIPY_HAS_RNG = "rng" in inspect.signature(stats.permutation_test).parameters

WILCOXON_COLUMNS = (
    "a",
    "b",
    "n_pairs",
    "wins_a",
    "wins_b",
    "ties",
    "median_diff",
    "statistic",
    "p",
    "p_holm",
    "significant",
)


def holm(pvalues: Sequence[float], alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Holm step-down adjusted p-values (statsmodels); NaN entries stay NaN and are not counted."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        # statsmodels' Holm branch ends in gc.collect(): in a process holding torch that scans
        # ~500k objects (1-2 s a call, once per report table). Frozen, it scans only new ones.
        gc.freeze()
        try:
            out[ok] = multipletests(p[ok], alpha=alpha, method="holm")[1]
        finally:
            gc.unfreeze()
    return out


@dataclass(frozen=True)
class PairedResult:
    """One two-sided Wilcoxon signed-rank test of a against b over matched blocks."""

    n_pairs: int
    wins_a: int
    wins_b: int
    ties: int
    median_diff: float  # median of a - b over the pairs
    statistic: float
    p: float


def wilcoxon_paired(a: Sequence[float], b: Sequence[float]) -> PairedResult:
    """scipy's two-sided Wilcoxon signed-rank test of a - b (zero differences dropped, the
    `wilcox` convention). With no non-zero difference there is nothing to rank: p = 1."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {len(x)} and {len(y)}")
    d = x - y
    n = len(d)
    wins_a, wins_b = int((d > 0).sum()), int((d < 0).sum())
    ties = n - wins_a - wins_b
    if n == 0:
        return PairedResult(0, 0, 0, 0, math.nan, math.nan, math.nan)
    median = float(np.median(d))
    if wins_a + wins_b == 0:
        return PairedResult(n, 0, 0, ties, median, 0.0, 1.0)
    res = stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided")
    return PairedResult(n, wins_a, wins_b, ties, median, float(res.statistic), float(res.pvalue))


def pairwise_wilcoxon(
    long: pd.DataFrame,
    blocks: Sequence[str],
    treatment: str = "strategy",
    value: str = "value",
    order: Sequence[str] | None = None,
    alpha: float = DEFAULT_ALPHA,
) -> pd.DataFrame:
    """Wilcoxon signed-rank test between every pair of treatments, paired on `blocks`, with Holm
    correction over all the pairs tested. Returns one row per pair (WILCOXON_COLUMNS).

    `long` has one row per (block, treatment) with a numeric `value`; rows whose value is NaN are
    left out of the pairs they belong to. `order` fixes the treatment order (default: sorted).
    """
    keys = [*blocks, treatment]
    dup = long.duplicated(subset=keys, keep=False)
    if dup.any():
        first = long.loc[dup, keys].iloc[0].to_dict()
        raise ValueError(f"more than one value for block and treatment {first}")
    wide = long.pivot(index=list(blocks), columns=treatment, values=value)
    names = list(order) if order is not None else sorted(wide.columns)
    rows = []
    for a, b in itertools.combinations([n for n in names if n in wide.columns], 2):
        both = wide[[a, b]].dropna()
        r = wilcoxon_paired(both[a].to_numpy(), both[b].to_numpy())
        rows.append({"a": a, "b": b} | r.__dict__)
    out = pd.DataFrame(rows, columns=[c for c in WILCOXON_COLUMNS if c not in ("p_holm",)])
    out["p_holm"] = holm(out["p"].to_numpy(), alpha) if len(out) else []
    out["significant"] = out["p_holm"] < alpha
    return out[list(WILCOXON_COLUMNS)]


def average_ranks(matrix: pd.DataFrame, higher_is_better: bool = True) -> pd.Series:
    """Mean rank of each column over the rows (1 = best; ties get the average rank)."""
    values = matrix.to_numpy(dtype=float)
    ranks = stats.rankdata(-values if higher_is_better else values, axis=1, method="average")
    return pd.Series(ranks.mean(axis=0), index=matrix.columns, name="mean_rank")


def critical_difference(k: int, n: int, alpha: float = DEFAULT_ALPHA) -> float:
    """Nemenyi critical difference of mean ranks for k treatments over n blocks:
    CD = q_alpha * sqrt(k (k + 1) / (6 n)), with q_alpha the studentized range quantile / sqrt(2)."""
    q_alpha = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q_alpha * math.sqrt(k * (k + 1) / (6 * n)))


def _rank_sum_square(*ranks: np.ndarray, axis: int = -1) -> np.ndarray:
    """Sum over treatments of the squared rank sums: the Friedman statistic up to constants
    (and a tie correction) that permuting ranks within blocks leaves unchanged."""
    return (np.stack(ranks).sum(axis=axis) ** 2).sum(axis=0)


@dataclass(frozen=True)
class FriedmanP:
    p: float
    method: str  # one of P_METHODS
    n_permutations: int | None  # arrangements enumerated or drawn; None for chi-square

    def describe(self) -> str:
        if self.method == "exact":
            return f"exact permutation p over all {self.n_permutations:,} arrangements of ranks"
        if self.method == "monte-carlo":
            return (
                f"Monte Carlo permutation p ({self.n_permutations:,} seeded draws of ranks "
                "permuted within blocks)"
            )
        return "chi-square approximation"


def friedman_permutation_p(
    values: np.ndarray, n_permutations: int = N_PERMUTATIONS, seed: int = PERMUTATION_SEED
) -> FriedmanP:
    """Permutation p-value of the Friedman statistic for a (blocks, treatments) array: under the
    null hypothesis every arrangement of the ranks within a block is equally likely. scipy's
    `permutation_test` (permutation_type="samples" permutes each block's values across the
    treatments) enumerates all (k!)^n arrangements when they number at most `n_permutations`,
    else draws `n_permutations` of them."""
    n, k = values.shape
    ranks = stats.rankdata(values, axis=1)
    total = math.factorial(k) ** n
    kwargs = {"rng" if _SCIPY_HAS_RNG else "random_state": np.random.default_rng(seed)}
    res = stats.permutation_test(
        tuple(ranks.T),
        _rank_sum_square,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_permutations,
        alternative="greater",
        **kwargs,
    )
    exact = total <= n_permutations
    return FriedmanP(
        float(res.pvalue), "exact" if exact else "monte-carlo", total if exact else n_permutations
    )


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test over complete blocks, mean ranks, Nemenyi p-values and the CD.

    `p` is the p-value the report uses (`p_method`: chi-square, exact or monte-carlo, see the
    module docstring); `p_chi2` is the chi-square approximation, always computed."""

    statistic: float
    p: float
    n_blocks: int
    mean_ranks: pd.Series  # index: treatments, sorted best first
    nemenyi: pd.DataFrame  # symmetric p-value matrix, same order as mean_ranks
    cd: float
    alpha: float
    blocks: list[str]  # names of the blocks used
    p_chi2: float
    p_method: str
    n_permutations: int | None

    @property
    def significant(self) -> bool:
        return bool(self.p < self.alpha)

    def describe_p(self) -> str:
        return FriedmanP(self.p, self.p_method, self.n_permutations).describe()

    def significant_pairs(self) -> list[tuple[str, str]]:
        names = list(self.mean_ranks.index)
        return [
            (a, b)
            for a, b in itertools.combinations(names, 2)
            if self.nemenyi.loc[a, b] < self.alpha
        ]


def friedman_nemenyi(
    matrix: pd.DataFrame,
    higher_is_better: bool = True,
    alpha: float = DEFAULT_ALPHA,
    n_permutations: int = N_PERMUTATIONS,
    seed: int = PERMUTATION_SEED,
) -> FriedmanResult:
    """Friedman test of the columns (treatments) over the rows (blocks), then Nemenyi.

    Rows with a missing value are dropped first (the tests need complete blocks). Needs at least
    3 treatments and 2 complete blocks; raises ValueError otherwise. With fewer than
    EXACT_BELOW_BLOCKS blocks, `p` is the permutation p-value (`friedman_permutation_p`).
    """
    complete = matrix.dropna(axis=0, how="any")
    k, n = complete.shape[1], complete.shape[0]
    if k < 3:
        raise ValueError(f"the Friedman test needs at least 3 treatments, got {k}")
    if n < 2:
        raise ValueError(f"the Friedman test needs at least 2 complete blocks, got {n}")
    values = complete.to_numpy(dtype=float)
    res = stats.friedmanchisquare(*values.T)
    chosen = FriedmanP(float(res.pvalue), "chi-square", None)
    if n < EXACT_BELOW_BLOCKS:
        chosen = friedman_permutation_p(values, n_permutations, seed)
    ranks = average_ranks(complete, higher_is_better)
    # Nemenyi p-values depend only on |rank differences|, so the rank direction does not matter.
    nemenyi = sp.posthoc_nemenyi_friedman(values)
    nemenyi.index = nemenyi.columns = complete.columns
    order = sorted(ranks.index, key=lambda c: (ranks[c], str(c)))
    return FriedmanResult(
        statistic=float(res.statistic),
        p=chosen.p,
        n_blocks=n,
        mean_ranks=ranks[order],
        nemenyi=nemenyi.loc[order, order],
        cd=critical_difference(k, n, alpha),
        alpha=alpha,
        blocks=[str(b) for b in complete.index],
        p_chi2=float(res.pvalue),
        p_method=chosen.method,
        n_permutations=chosen.n_permutations,
    )
