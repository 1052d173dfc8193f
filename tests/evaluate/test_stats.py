"""The statistics of compare and bench against computations that share no code with them: binomial sums with
math.comb, a bisection for the exact interval, coverage by simulation, and textbook values."""

import math

import numpy as np
import pytest

from mnistlab.evaluate import stats


def _binom_cdf(k: int, n: int) -> float:  # P(X <= k), X ~ Binomial(n, 1/2)
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def _tail(k: int, n: int, p: float, upper: bool) -> float:  # P(X >= k) or P(X <= k), X ~ Binomial(n, p), in logs
    idx = range(k, n + 1) if upper else range(0, k + 1)
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p) + (n - i) * math.log1p(-p)
            for i in idx]
    top = max(logs)
    return math.exp(top) * sum(math.exp(v - top) for v in logs)


def _bisect(f, lo=0.0, hi=1.0):
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if f(mid) else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("only_a, only_b, both, neither", [(3, 0, 9990, 7), (10, 25, 9900, 65), (40, 41, 9000, 919), (0, 0, 50, 0)])
def test_mcnemar_is_the_exact_binomial_test(only_a, only_b, both, neither):
    a = np.array([True] * only_a + [False] * only_b + [True] * both + [False] * neither)
    b = np.array([False] * only_a + [True] * only_b + [True] * both + [False] * neither)
    got = stats.mcnemar(a, b)
    k = only_a + only_b
    want = 1.0 if k == 0 else min(1.0, 2 * _binom_cdf(min(only_a, only_b), k))
    assert got["p_value"] == pytest.approx(want, rel=1e-9)
    assert (got["a_only_right"], got["b_only_right"], got["n"]) == (only_a, only_b, a.size)
    assert got["difference"] == pytest.approx((a.mean() - b.mean()))


def test_three_digits_apart_is_never_a_real_difference():
    """99.71% against 99.74% on 10,000 digits: at best three images go one way and none the other, p = 2/8."""
    a = np.ones(10_000, bool)
    b = a.copy()
    a[:29] = False
    b[:26] = False
    assert stats.mcnemar(a, b)["p_value"] == pytest.approx(0.25)


@pytest.mark.parametrize("correct, n", [(0, 20), (7, 20), (20, 20), (9930, 10000), (48, 50)])
def test_the_accuracy_interval_is_clopper_pearson(correct, n):
    low, high = stats.accuracy_interval(correct, n)
    # the definition: the p at which the observed count sits on a 2.5% tail, found by bisection
    want_low = 0.0 if correct == 0 else _bisect(lambda p: _tail(correct, n, p, upper=True) < 0.025)
    want_high = 1.0 if correct == n else _bisect(lambda p: _tail(correct, n, p, upper=False) > 0.025)
    assert (low, high) == (pytest.approx(want_low, abs=1e-9), pytest.approx(want_high, abs=1e-9))


def test_the_difference_interval_covers_the_truth_95_times_in_100():
    rng = np.random.default_rng(0)
    n, trials, hit = 2000, 2000, 0
    p_a_only, p_b_only = 0.012, 0.006  # the true difference is 0.006
    for _ in range(trials):
        cell = rng.choice(4, size=n, p=[p_a_only, p_b_only, 0.95, 1 - 0.95 - p_a_only - p_b_only])
        a, b = np.isin(cell, (0, 2)), np.isin(cell, (1, 2))
        lo, hi = stats.mcnemar(a, b)["difference_interval"]
        hit += lo <= p_a_only - p_b_only <= hi
    assert 0.93 <= hit / trials <= 0.97


def test_holm_and_the_verdict():
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])  # 3x, 2x, then never below the last
    assert stats.verdict(0.049) == "real" and stats.verdict(0.05) == "not shown"


def test_over_seeds_is_a_t_interval():
    s = stats.over_seeds([0.991, 0.993, 0.992, 0.990, 0.994])
    assert s["mean"] == pytest.approx(0.992) and s["std"] == pytest.approx(math.sqrt(2.5e-6))
    half = 2.776445 * math.sqrt(2.5e-6) / math.sqrt(5)  # t(0.975, 4 degrees of freedom), from the tables
    assert s["interval"] == [pytest.approx(0.992 - half, abs=1e-7), pytest.approx(0.992 + half, abs=1e-7)]
    assert stats.over_seeds([0.99])["std"] == 0.0 and stats.over_seeds([0.99])["interval"] is None  # one seed: none
    # a quantity that may be negative (backward transfer) is not clamped into [0, 1]
    unbounded = stats.over_seeds([-0.9, -0.8], bounds=None)["interval"]
    assert unbounded[0] < -0.9 and unbounded[1] < 0 and stats.over_seeds([-0.9, -0.8])["interval"][0] == 0.0


def test_welch_against_its_formula():
    from scipy.stats import t

    a, b = [0.991, 0.993, 0.992, 0.990], [0.985, 0.989, 0.984]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    stat = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert stats.welch(a, b) == pytest.approx(2 * t.sf(abs(stat), df), rel=1e-9)
    with pytest.raises(ValueError):
        stats.welch([0.99], b)
