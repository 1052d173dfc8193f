"""Classification metrics on NumPy arrays only: confusion matrix, per-class precision/recall/F1,
top-k accuracy, expected calibration error, and the most confident mistakes."""

from __future__ import annotations

import numpy as np

from mnistlab.calibration import expected_calibration_error  # noqa: F401  (part of this module's face)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """cm[i, j] = how many images of true class i were predicted as class j."""
    return np.bincount(np.asarray(y_true) * num_classes + np.asarray(y_pred), minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class (0 where a class was never predicted or never present)."""
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(0), cm.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def top_k_accuracy(probs: np.ndarray, y_true: np.ndarray, k: int) -> float:
    k = min(k, probs.shape[1])
    top = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    return float((top == np.asarray(y_true)[:, None]).any(1).mean())


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
    loss = float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], 1e-12, None)).mean())
    return {
        "n": int(len(y_true)), "accuracy": float((pred == y_true).mean()), "errors": int((pred != y_true).sum()),
        "loss": loss, "top_k_accuracy": {str(k): top_k_accuracy(probs, y_true, k) for k in (1, 2, 3, 5) if k <= n},
        "ece": ece, "calibration_bins": bins,
        "macro_f1": float(pc["f1"].mean()),
        "per_class": [{"class": c, "precision": float(pc["precision"][i]), "recall": float(pc["recall"][i]),
                       "f1": float(pc["f1"][i]), "support": int(pc["support"][i])} for i, c in enumerate(classes)],
        "confusion_matrix": cm.tolist(), "confident_mistakes": confident_mistakes(probs, y_true, mistakes),
    }
