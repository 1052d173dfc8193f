"""How well a score tells in-distribution images (positives) from the others, as the OOD papers report it: AUROC,
AUPR with the in-distribution images as positives (AUPR-in) and with the others as positives (AUPR-out), and the
false-positive rate at 95% true-positive rate (FPR95: the share of the others that pass when the threshold lets 95%
of the in-distribution images through). Each with a bootstrap 95% interval (both sets resampled, seeded). And what
abstaining buys: accuracy on the share of images the model is surest of (the risk-coverage curve)."""

from __future__ import annotations

import numpy as np

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95")
BOOTSTRAP = 200  # resamples for each interval
TPR = 0.95


def passing_threshold(scores_in: np.ndarray, tpr: float = TPR) -> float:
    """The largest threshold that lets `tpr` of `scores_in` through (score >= it): the score at rank ceil(tpr * n) from
    the top, the threshold FPR95 is read at."""
    return float(np.sort(scores_in)[::-1][int(np.ceil(tpr * len(scores_in))) - 1])


class Ranked:
    """Scores of in-distribution images (positives) and others, sorted once, so that each bootstrap resample is a
    matter of weights (how often each image was drawn) and cumulative sums, not a new sort."""

    def __init__(self, scores_in: np.ndarray, scores_out: np.ndarray):
        s = np.concatenate([scores_in, scores_out]).astype(np.float64)
        self.n_in, self.n_out = len(scores_in), len(scores_out)
        self.order = np.argsort(-s, kind="stable")
        ordered = s[self.order]
        self.ends = np.append(np.flatnonzero(np.diff(ordered) != 0), len(s) - 1)  # the last of each run of equal scores
        low_first = ordered[::-1]
        self.ends_low = np.append(np.flatnonzero(np.diff(low_first) != 0), len(s) - 1)

    def metrics(self, w_in: np.ndarray | None = None, w_out: np.ndarray | None = None) -> dict[str, float]:
        """The four metrics with each image counted `w` times (once each by default)."""
        w_in = np.ones(self.n_in) if w_in is None else w_in
        w_out = np.ones(self.n_out) if w_out is None else w_out
        pos = np.concatenate([w_in, np.zeros(self.n_out)])[self.order]
        neg = np.concatenate([np.zeros(self.n_in), w_out])[self.order]
        tps, fps = np.cumsum(pos)[self.ends], np.cumsum(neg)[self.ends]
        out_tps, out_fps = np.cumsum(neg[::-1])[self.ends_low], np.cumsum(pos[::-1])[self.ends_low]
        need = np.ceil(TPR * tps[-1] - 1e-9)
        return {"auroc": auroc(tps, fps), "aupr_in": average_precision(tps, fps),
                "aupr_out": average_precision(out_tps, out_fps),
                "fpr95": float(fps[np.searchsorted(tps, need)] / fps[-1])}


def auroc(tps: np.ndarray, fps: np.ndarray) -> float:
    """The area under the ROC curve through the cumulative true and false positives at each distinct threshold
    (trapezoids: a tie between a positive and a negative counts a half)."""
    tpr = np.concatenate([[0.0], tps / tps[-1]])
    fpr = np.concatenate([[0.0], fps / fps[-1]])
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def average_precision(tps: np.ndarray, fps: np.ndarray) -> float:
    """The precision at each threshold weighted by the recall gained there (scikit-learn's definition)."""
    seen = tps + fps
    precision = np.divide(tps, seen, out=np.zeros_like(tps), where=seen > 0)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def separation(scores_in: np.ndarray, scores_out: np.ndarray) -> dict[str, float]:
    """AUROC, AUPR-in, AUPR-out and FPR95 of scores where higher means in-distribution."""
    return Ranked(scores_in, scores_out).metrics()


def with_intervals(scores_in: np.ndarray, scores_out: np.ndarray, resamples: int = BOOTSTRAP, seed: int = 0) -> dict:
    """`separation` and, under "interval", each metric's percentile bootstrap 95% interval."""
    ranked = Ranked(scores_in, scores_out)
    point = ranked.metrics()
    rng = np.random.default_rng(seed)
    draws = {m: [] for m in METRICS}
    for _ in range(resamples):
        one = ranked.metrics(np.bincount(rng.integers(0, ranked.n_in, ranked.n_in), minlength=ranked.n_in).astype(float),
                             np.bincount(rng.integers(0, ranked.n_out, ranked.n_out), minlength=ranked.n_out).astype(float))
        for m in METRICS:
            draws[m].append(one[m])
    point["interval"] = {m: [float(np.percentile(draws[m], 2.5)), float(np.percentile(draws[m], 97.5))] for m in METRICS}
    return point


def misclassification_auroc(scores: np.ndarray, right: np.ndarray) -> float:
    """How well the score tells the test images the model gets right (positives) from those it gets wrong."""
    if right.all() or not right.any():
        return float("nan")
    return separation(scores[right], scores[~right])["auroc"]


def risk_coverage(scores: np.ndarray, right: np.ndarray, steps: int = 20) -> list[dict]:
    """Accuracy on the `coverage` share of images with the highest scores (ties broken by position), from 5% to 100%."""
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(right[order])
    rows = []
    for k in range(1, steps + 1):
        kept = max(1, int(round(len(scores) * k / steps)))
        rows.append({"coverage": k / steps, "accuracy": float(hits[kept - 1] / kept)})
    return rows
