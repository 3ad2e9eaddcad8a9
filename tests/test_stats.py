"""progbench.evaluate.stats: small known examples checked by hand and against scipy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sstats

from progbench.evaluate.stats import (
    WILCOXON_COLUMNS,
    average_ranks,
    critical_difference,
    friedman_nemenyi,
    friedman_permutation_p,
    holm,
    pairwise_wilcoxon,
    wilcoxon_paired,
)

# ------------------------------------------------------------------------------------ Holm


@pytest.mark.slow
def test_holm_hand_computed() -> None:
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04).
    got = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, 0.02])


@pytest.mark.slow
def test_holm_caps_at_one_and_skips_nan() -> None:
    np.testing.assert_allclose(holm([0.6, 0.7]), [1.0, 1.0])
    # NaN is not part of the family: m = 2, not 3.
    got = holm([0.01, math.nan, 0.04])
    assert math.isnan(got[1])
    np.testing.assert_allclose(got[[0, 2]], [0.02, 0.04])
    assert holm([]).shape == (0,)
    assert np.isnan(holm([math.nan])).all()


def _holm_step_down(p: list[float], alpha: float) -> set[int]:
    """Holm's procedure as written: reject the smallest p-values while p_(i) <= alpha / (m - i)."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    rejected: set[int] = set()
    for rank, i in enumerate(order):
        if p[i] > alpha / (len(p) - rank):
            break
        rejected.add(i)
    return rejected


# holm() freezes older objects around statsmodels' gc.collect(): cheap in any process.
@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(min_value=1e-6, max_value=1.0), min_size=1, max_size=12),
    st.sampled_from([0.01, 0.05, 0.1]),
)
@pytest.mark.slow
def test_holm_ordering_and_rejections(p: list[float], alpha: float) -> None:
    adj = holm(p, alpha)
    raw = np.asarray(p)
    assert (adj >= raw - 1e-15).all() and (adj <= 1.0).all()
    # Adjusted p-values keep the order of the raw ones (step-down monotonicity).
    order = np.argsort(raw, kind="stable")
    assert (np.diff(adj[order]) >= -1e-15).all()
    # Comparing adjusted p-values with alpha rejects exactly what the step-down procedure does
    # (away from the boundary, where floating point decides).
    margins = [abs(x - alpha / k) for x in p for k in range(1, len(p) + 1)]
    if min(margins) > 1e-9:
        assert set(np.flatnonzero(adj <= alpha)) == _holm_step_down(p, alpha)


# ------------------------------------------------------------------------------------ Wilcoxon


def test_wilcoxon_all_positive_differences_hand_computed() -> None:
    # d = 1..5, all positive: W- = 0, and the exact two-sided p is 2 / 2^5.
    r = wilcoxon_paired([2, 4, 6, 8, 10], [1, 2, 3, 4, 5])
    assert (r.n_pairs, r.wins_a, r.wins_b, r.ties) == (5, 5, 0, 0)
    assert r.statistic == 0.0
    assert r.p == pytest.approx(2 / 32)
    assert r.median_diff == 3.0


def test_wilcoxon_matches_scipy_and_drops_zero_differences() -> None:
    a = np.array([0.61, 0.70, 0.55, 0.80, 0.66, 0.72, 0.59, 0.64])
    b = np.array([0.58, 0.71, 0.50, 0.74, 0.66, 0.65, 0.60, 0.57])
    r = wilcoxon_paired(a, b)
    ref = sstats.wilcoxon(a, b, zero_method="wilcox")
    assert r.statistic == pytest.approx(ref.statistic)
    assert r.p == pytest.approx(ref.pvalue)
    assert (r.wins_a, r.wins_b, r.ties) == (5, 2, 1)
    # Same as testing the seven non-zero differences alone.
    keep = a != b
    assert r.p == pytest.approx(sstats.wilcoxon(a[keep] - b[keep]).pvalue)


def test_wilcoxon_degenerate_inputs() -> None:
    same = wilcoxon_paired([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert (same.ties, same.p, same.statistic) == (3, 1.0, 0.0)
    empty = wilcoxon_paired([], [])
    assert empty.n_pairs == 0 and math.isnan(empty.p)
    with pytest.raises(ValueError, match="differ in length"):
        wilcoxon_paired([1.0, 2.0], [1.0])


def _long(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        {"task": f"t{i // 4}", "fold": i % 4, "strategy": s, "value": v}
        for s, vs in values.items()
        for i, v in enumerate(vs)
    ]
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_pairwise_wilcoxon_pairs_on_blocks_with_holm() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(0.6, 0.1, 8)
    values = {
        "lp": list(base),
        "fft": list(base + 0.1 + rng.normal(0, 0.02, 8)),
        "lora": list(base + rng.normal(0, 0.05, 8)),
    }
    values["lora"][3] = math.nan  # this block drops out of the pairs with lora only
    long = _long(values).sample(frac=1.0, random_state=1)  # row order must not matter
    out = pairwise_wilcoxon(long, blocks=["task", "fold"], order=["lp", "fft", "lora"])
    assert list(out.columns) == list(WILCOXON_COLUMNS)
    assert list(zip(out["a"], out["b"], strict=True)) == [
        ("lp", "fft"),
        ("lp", "lora"),
        ("fft", "lora"),
    ]
    assert list(out["n_pairs"]) == [8, 7, 7]
    for row in out.itertuples(index=False):
        a, b = np.asarray(values[row.a]), np.asarray(values[row.b])
        ok = ~np.isnan(a) & ~np.isnan(b)
        assert row.p == pytest.approx(sstats.wilcoxon(a[ok], b[ok]).pvalue)
    np.testing.assert_allclose(out["p_holm"], holm(out["p"].to_numpy()))
    assert list(out["significant"]) == list(out["p_holm"] < 0.05)
    # fft beats lp in every block: the pair is one-sided in wins and significant after Holm.
    first = out.iloc[0]
    assert (first.wins_a, first.wins_b) == (0, 8) and bool(first.significant)


def test_pairwise_wilcoxon_refuses_duplicate_blocks() -> None:
    long = _long({"lp": [0.1, 0.2], "fft": [0.3, 0.4]})
    with pytest.raises(ValueError, match="more than one value"):
        pairwise_wilcoxon(pd.concat([long, long.iloc[:1]]), blocks=["task", "fold"])


# ------------------------------------------------------------------------------------ ranks


def test_average_ranks_hand_computed_with_ties() -> None:
    m = pd.DataFrame([[0.9, 0.8, 0.7], [0.5, 0.5, 0.1], [0.2, 0.3, 0.1]], columns=["a", "b", "c"])
    # Higher is better: rows rank [1, 2, 3], [1.5, 1.5, 3], [2, 1, 3].
    assert average_ranks(m).to_dict() == {"a": 1.5, "b": 1.5, "c": 3.0}
    # Lower is better (e.g. Brier): [3, 2, 1], [2.5, 2.5, 1], [2, 3, 1].
    assert average_ranks(m, higher_is_better=False).to_dict() == {"a": 2.5, "b": 2.5, "c": 1.0}


# Demšar (2006), table 5(a): q_0.05 of the two-tailed Nemenyi test for k = 2..10.
DEMSAR_Q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102}


@pytest.mark.parametrize("k", sorted(DEMSAR_Q05))
def test_critical_difference_matches_demsar_table(k: int) -> None:
    n = 14
    expected = DEMSAR_Q05[k] * math.sqrt(k * (k + 1) / (6 * n))
    assert critical_difference(k, n) == pytest.approx(expected, abs=1e-3)


def test_friedman_nemenyi_hand_computed() -> None:
    # 4 blocks x 3 treatments without ties; ranks (1 = best):
    # b0: a1 b2 c3, b1: a1 c2 b3, b2: b1 a2 c3, b3: a1 b2 c3 -> mean ranks a 1.25, b 2, c 2.75.
    m = pd.DataFrame(
        {
            "a": [0.9, 0.8, 0.6, 0.7],
            "b": [0.8, 0.5, 0.7, 0.6],
            "c": [0.7, 0.6, 0.5, 0.4],
        },
        index=["b0", "b1", "b2", "b3"],
    )
    m.loc["incomplete"] = [0.1, math.nan, 0.2]  # dropped: Friedman needs complete blocks
    r = friedman_nemenyi(m)
    assert r.n_blocks == 4 and r.blocks == ["b0", "b1", "b2", "b3"]
    assert list(r.mean_ranks.index) == ["a", "b", "c"]
    np.testing.assert_allclose(r.mean_ranks, [1.25, 2.0, 2.75])
    # chi2_F = 12 N / (k (k + 1)) * sum(R_j^2) - 3 N (k + 1) with rank sums R = 5, 8, 11.
    chi2 = 12 / (4 * 3 * 4) * (5**2 + 8**2 + 11**2) - 3 * 4 * 4
    assert r.statistic == pytest.approx(chi2)  # 4.5
    ref = sstats.friedmanchisquare(*m.drop(index="incomplete").to_numpy().T)
    assert r.p_chi2 == pytest.approx(ref.pvalue)
    # 4 blocks: the p used is the exact one, over all (3!)^4 arrangements of ranks.
    assert (r.p_method, r.n_permutations) == ("exact", 6**4)
    assert r.p == pytest.approx(_brute_force_p(m.drop(index="incomplete").to_numpy()))
    # Nemenyi: z = |R_i - R_j| / sqrt(k (k + 1) / (6 N)), p from the studentized range.
    se = math.sqrt(3 * 4 / (6 * 4))
    p_ac = sstats.studentized_range.sf(abs(1.25 - 2.75) / se * math.sqrt(2), 3, np.inf)
    assert r.nemenyi.loc["a", "c"] == pytest.approx(p_ac, rel=1e-6)
    assert r.nemenyi.loc["c", "a"] == pytest.approx(p_ac, rel=1e-6)
    assert r.cd == pytest.approx(critical_difference(3, 4))
    assert r.significant_pairs() == [(a, b) for a, b in [("a", "c")] if p_ac < 0.05]


def test_friedman_ranks_follow_direction() -> None:
    m = pd.DataFrame({"x": [0.1, 0.2, 0.15], "y": [0.2, 0.3, 0.25], "z": [0.3, 0.4, 0.35]})
    up = friedman_nemenyi(m, higher_is_better=True)
    down = friedman_nemenyi(m, higher_is_better=False)
    assert list(up.mean_ranks.index) == ["z", "y", "x"]
    assert list(down.mean_ranks.index) == ["x", "y", "z"]
    assert up.statistic == pytest.approx(down.statistic)
    assert up.nemenyi.loc["x", "z"] == pytest.approx(down.nemenyi.loc["x", "z"])


def test_friedman_needs_three_treatments_and_two_blocks() -> None:
    with pytest.raises(ValueError, match="at least 3 treatments"):
        friedman_nemenyi(pd.DataFrame({"a": [1.0, 2.0], "b": [2.0, 1.0]}))
    with pytest.raises(ValueError, match="at least 2 complete blocks"):
        friedman_nemenyi(pd.DataFrame({"a": [1.0, 2.0], "b": [2.0, math.nan], "c": [0.0, 1.0]}))


# ------------------------------------------------------------------------------------ exact p


def _brute_force_p(values: np.ndarray) -> float:
    """The Friedman permutation p by enumeration, independent of scipy's permutation_test:
    every arrangement of each block's ranks, counted when its sum of squared rank sums (the
    statistic up to constants) reaches the observed one."""
    ranks = sstats.rankdata(values, axis=1)
    observed = (ranks.sum(axis=0) ** 2).sum()
    hits = total = 0
    for arrangement in itertools.product(*[list(itertools.permutations(r)) for r in ranks]):
        hits += (np.sum(arrangement, axis=0) ** 2).sum() >= observed - 1e-9
        total += 1
    return hits / total


# 4 blocks x 3 treatments: c is always last, a and b share ranks 1 and 2 evenly. Rank sums
# 6, 6, 12: chi2_F = 12 / (4 * 3 * 4) * (36 + 36 + 144) - 3 * 4 * 4 = 6.0, whose chi-square p
# exp(-3) = 0.0498 is below 0.05 while the exact p (Friedman's table, n = 4, k = 3) is 0.069.
BORDERLINE = pd.DataFrame(
    {"a": [0.9, 0.8, 0.9, 0.8], "b": [0.8, 0.9, 0.8, 0.9], "c": [0.1, 0.2, 0.3, 0.1]}
)


def test_friedman_with_few_blocks_uses_the_exact_p() -> None:
    r = friedman_nemenyi(BORDERLINE)
    assert r.statistic == pytest.approx(6.0)
    assert r.p_chi2 == pytest.approx(math.exp(-3)) and r.p_chi2 < 0.05
    assert r.p == pytest.approx(90 / 1296) == pytest.approx(0.0694, abs=1e-4)
    assert r.p == pytest.approx(_brute_force_p(BORDERLINE.to_numpy()))
    assert (r.p_method, r.n_permutations) == ("exact", 1296)
    # Not significant, although the chi-square approximation would say it is.
    assert not r.significant
    assert "exact permutation p over all 1,296 arrangements" in r.describe_p()


def test_friedman_exact_p_with_ties_matches_enumeration() -> None:
    m = pd.DataFrame(
        {
            "a": [0.9, 0.7, 0.7, 0.8, 0.6],
            "b": [0.9, 0.6, 0.7, 0.7, 0.5],  # ties with a in blocks 0 and 2
            "c": [0.5, 0.5, 0.4, 0.7, 0.5],  # ties in blocks 3 and 4
        }
    )
    r = friedman_nemenyi(m)
    assert r.p_method == "exact" and r.n_permutations == 6**5
    assert r.p == pytest.approx(_brute_force_p(m.to_numpy()))
    assert r.p_chi2 == pytest.approx(sstats.friedmanchisquare(*m.to_numpy().T).pvalue)


def test_friedman_monte_carlo_p_when_arrangements_are_too_many() -> None:
    m = pd.DataFrame(
        {
            "a": [0.9, 0.7, 0.7, 0.8, 0.6],
            "b": [0.8, 0.6, 0.75, 0.7, 0.5],
            "c": [0.5, 0.65, 0.4, 0.6, 0.55],
        }
    )
    exact = _brute_force_p(m.to_numpy())
    # (3!)^5 = 7776 arrangements: enumerated when the budget covers them, else drawn.
    assert friedman_nemenyi(m, n_permutations=7776).p_method == "exact"
    mc = friedman_nemenyi(m, n_permutations=5_000)
    assert (mc.p_method, mc.n_permutations) == ("monte-carlo", 5_000)
    assert "Monte Carlo" in mc.describe_p()
    assert mc.p == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 5_000) + 1e-3)
    again = friedman_permutation_p(m.to_numpy(), n_permutations=5_000)
    assert again.p == mc.p  # seeded: the same draws every time


def test_friedman_with_ten_blocks_uses_the_chi_square_p() -> None:
    rng = np.random.default_rng(3)
    m = pd.DataFrame(rng.random((10, 3)) + np.array([0.3, 0.1, 0.0]), columns=["a", "b", "c"])
    r = friedman_nemenyi(m)
    assert r.p_method == "chi-square" and r.n_permutations is None
    assert r.p == r.p_chi2 == pytest.approx(sstats.friedmanchisquare(*m.to_numpy().T).pvalue)
    assert r.describe_p() == "chi-square approximation"


def test_holm_collects_only_new_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    """statsmodels' Holm calls gc.collect(); holm() has frozen the older heap by then (a full
    collection in a process holding torch costs 1-2 s, once per report table)."""
    import gc

    frozen_at_collect: list[int] = []  # statsmodels imports gc inside the function
    monkeypatch.setattr(
        gc, "collect", lambda *a: frozen_at_collect.append(gc.get_freeze_count()) or 0
    )
    before = gc.get_freeze_count()
    holm([0.01, 0.2, 0.03])
    assert frozen_at_collect and frozen_at_collect[0] > before
    assert gc.get_freeze_count() == before  # thawed again
