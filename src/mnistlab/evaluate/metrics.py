"""Classification metrics on NumPy arrays: confusion matrix, per-class precision/recall/F1, top-k accuracy and
log-loss from scikit-learn's metrics (imported on first use: a second and a half), expected calibration error,
and the most confident mistakes."""

from __future__ import annotations

import numpy as np

from mnistlab.calibration import expected_calibration_error  # noqa: F401  (part of this module's face)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """cm[i, j] = how many images of true class i were predicted as class j."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    return sk_confusion(np.asarray(y_true), np.asarray(y_pred), labels=np.arange(num_classes))


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from a confusion matrix (0 where a class was never predicted or
    never present), as scikit-learn computes them."""
    from sklearn.metrics import precision_recall_fscore_support

    n = len(cm)
    true, pred = np.repeat(np.arange(n), n), np.tile(np.arange(n), n)  # one (true, predicted) pair per cell,
    weights = cm.reshape(-1)  # counted as often as the cell says
    precision, recall, f1, _ = precision_recall_fscore_support(true, pred, labels=np.arange(n), sample_weight=weights,
                                                               zero_division=0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(1)}


def top_k_accuracy(probs: np.ndarray, y_true: np.ndarray, k: int) -> float:
    from sklearn.metrics import top_k_accuracy_score

    n = probs.shape[1]
    if min(k, n) >= n:
        return 1.0
    if k == 1:  # plain accuracy (scikit-learn refuses two-class scores here)
        return float(np.mean(probs.argmax(1) == np.asarray(y_true))) if len(probs) else float("nan")
    return float(top_k_accuracy_score(np.asarray(y_true), probs, k=k, labels=np.arange(n)))


def log_loss(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Mean cross-entropy of the true classes, in float64 (rows renormalised there: float32 rows sum to 1 only to
    about 1e-7). A true class given under 2e-16 counts as 2e-16 (the hand-written loss before it floored at 1e-12:
    the same numbers unless a net is that sure of a mistake)."""
    from sklearn.metrics import log_loss as sk_log_loss

    p = np.asarray(probs, np.float64)
    return float(sk_log_loss(np.asarray(y_true), p / p.sum(1, keepdims=True), labels=np.arange(p.shape[1])))


def confident_mistakes(probs: np.ndarray, y_true: np.ndarray, k: int = 16) -> list[dict]:
    """The `k` wrong predictions made with the highest confidence, most confident first."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != np.asarray(y_true))
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:k]
    return [{"index": int(i), "true": int(y_true[i]), "predicted": int(pred[i]), "confidence": float(probs[i, pred[i]]),
             "true_probability": float(probs[i, y_true[i]])} for i in order]


def summarize(probs: np.ndarray, y_true: np.ndarray, classes: list[str], mistakes: int = 16) -> dict:
    """Everything `mnistlab evaluate` reports, as plain JSON-ready types."""
    y_true = np.asarray(y_true, dtype=np.int64)
    n = len(classes)
    pred = probs.argmax(1)
    cm = confusion_matrix(y_true, pred, n)
    pc = per_class(cm)
    ece, bins = expected_calibration_error(probs, y_true)
    loss = log_loss(probs, y_true)
    return {
        "n": int(len(y_true)), "accuracy": float((pred == y_true).mean()), "errors": int((pred != y_true).sum()),
        "loss": loss, "top_k_accuracy": {str(k): top_k_accuracy(probs, y_true, k) for k in (1, 2, 3, 5) if k <= n},
        "ece": ece, "calibration_bins": bins,
        "macro_f1": float(pc["f1"].mean()),
        "per_class": [{"class": c, "precision": float(pc["precision"][i]), "recall": float(pc["recall"][i]),
                       "f1": float(pc["f1"][i]), "support": int(pc["support"][i])} for i, c in enumerate(classes)],
        "confusion_matrix": cm.tolist(), "confident_mistakes": confident_mistakes(probs, y_true, mistakes),
    }
