"""Whether a difference is real. For one classifier: an exact (Clopper-Pearson) interval on its accuracy. For two
judged on the same images: the exact McNemar test on the images only one of them gets right (Dietterich 1998, the
test with acceptable type-I error when each can be trained once) and the paired difference with its interval
(Bonett & Price's adjusted Wald). For a recipe trained on several seeds: mean, std and a t interval over the seeds,
and Welch's t-test between two such recipes. Several pairs at once: Holm's step-down adjustment of their p-values."""

from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95  # the intervals' coverage
ALPHA = 0.05  # a difference is called real below this (Holm-adjusted) p-value


def accuracy_interval(correct: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """The exact binomial (Clopper-Pearson) interval on an accuracy of `correct` out of `n`."""
    from scipy.stats import beta

    if n <= 0:
        return (math.nan, math.nan)
    tail = (1 - level) / 2
    low = 0.0 if correct == 0 else float(beta.ppf(tail, correct, n - correct + 1))
    high = 1.0 if correct == n else float(beta.ppf(1 - tail, correct + 1, n - correct))
    return (low, high)


def mcnemar(a_right: np.ndarray, b_right: np.ndarray, level: float = LEVEL) -> dict:
    """Two classifiers on the same images (boolean arrays: which each got right): the images only A gets right and
    only B gets right, the exact two-sided McNemar p-value (a binomial test of those discordant images at 1/2), and
    A's accuracy minus B's with its interval (Bonett-Price: one image added to each discordant count, n + 2)."""
    from scipy.stats import binom, norm

    a, b = np.asarray(a_right, bool), np.asarray(b_right, bool)
    if a.shape != b.shape:
        raise ValueError(f"the two classifiers were judged on different images ({a.shape} and {b.shape})")
    n = a.size
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else min(1.0, 2.0 * float(binom.cdf(min(only_a, only_b), discordant, 0.5)))
    p12, p21 = (only_a + 1) / (n + 2), (only_b + 1) / (n + 2)
    shift = p12 - p21
    half = float(norm.ppf(0.5 + level / 2)) * math.sqrt(max(p12 + p21 - shift * shift, 0.0) / (n + 2))
    return {"n": n, "a_only_right": only_a, "b_only_right": only_b, "p_value": p,
            "difference": (only_a - only_b) / n if n else math.nan,
            "difference_interval": [max(-1.0, shift - half), min(1.0, shift + half)]}


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: each p-value as strong as a test of all of them together allows."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def over_seeds(values: list[float], level: float = LEVEL, bounds: tuple[float, float] | None = (0.0, 1.0)) -> dict:
    """Mean, sample std and a t interval on the mean of one recipe's results over seeds, kept within `bounds` (an
    accuracy's [0, 1]; None for a quantity without them, such as backward transfer). One seed has no interval (None)."""
    from scipy.stats import t

    x = np.asarray(values, float)
    k = len(x)
    mean = float(x.mean()) if k else math.nan
    std = float(x.std(ddof=1)) if k > 1 else 0.0
    if k < 2:
        return {"seeds": k, "mean": mean, "std": std, "interval": None}
    half = float(t.ppf(0.5 + level / 2, k - 1)) * std / math.sqrt(k)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return {"seeds": k, "mean": mean, "std": std, "interval": [low, high]}


def welch(a: list[float], b: list[float]) -> float:
    """Welch's two-sided t-test p-value between two recipes' results over seeds (two or more each)."""
    from scipy.stats import ttest_ind

    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's test needs two or more seeds on each side")
    if np.std(a) == 0 and np.std(b) == 0:
        return 1.0 if np.mean(a) == np.mean(b) else 0.0
    return float(ttest_ind(a, b, equal_var=False).pvalue)


def verdict(p: float) -> str:
    return "real" if p < ALPHA else "not shown"
