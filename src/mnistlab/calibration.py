"""Temperature scaling (Guo et al. 2017): one number T per trained net, fitted after training on
held-out training images, that divides the net's logits: probabilities = softmax(logits / T). The predicted
class never changes; only how sure the net says it is. A net trained with label smoothing is too unsure
(T < 1 sharpens it); an overfitted one too sure (T > 1).

There is one way to apply it, logits divided by T: `probabilities` here (NumPy: the trainer's test
probabilities) and `Calibrated` (PyTorch: `Run.predict_proba`, hence the server, ensembles and the exports)
compute the same formula. NumPy only at import (SciPy's optimiser would cost every training process half a
second to import)."""

from __future__ import annotations

import numpy as np

LOG_T_RANGE = (-3.0, 3.0)  # T between 0.05 and 20: far beyond what a trained classifier needs


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / T) per row, float32 (computed in float64)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if z.size == 0:
        return z.astype(np.float32)
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def calibrated(net, temperature: float):
    """`net` (images -> logits) as a module that gives its calibrated probabilities: softmax(logits / T)."""
    import torch

    class Calibrated(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.register_buffer("temperature", torch.tensor(float(temperature)))

        def forward(self, images):
            return torch.softmax(self.inner(images).float() / self.temperature, dim=1)

    return Calibrated(net).eval()


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels."""
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels].astype(np.float64), 1e-300, None)).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `labels` under softmax(logits / T) (held-out data).

    The likelihood is convex in 1/T (a log-sum-exp of a linear function, minus a linear one), so it has one
    minimum in log T too, which a golden-section search finds to 1e-4."""
    labels = np.asarray(labels)
    logits = np.asarray(logits, np.float64)

    def loss(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z -= z.max(1, keepdims=True)
        return float(np.log(np.exp(z).sum(1)).mean() - z[np.arange(len(labels)), labels].mean())

    return float(np.exp(_golden_minimum(loss, *LOG_T_RANGE, tol=1e-4)))


def _golden_minimum(f, lo: float, hi: float, tol: float) -> float:
    """Where a function with one minimum on [lo, hi] has it, to within `tol`."""
    ratio = (np.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    return (a + b) / 2


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> tuple[float, list[dict]]:
    """ECE over equal-width confidence bins (Guo et al. 2017), and the bins for a reliability diagram."""
    conf = probs.max(1)
    correct = probs.argmax(1) == np.asarray(y_true)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece, table = 0.0, []
    for b in range(bins):
        mask = which == b
        if mask.any():
            acc, mean_conf = float(correct[mask].mean()), float(conf[mask].mean())
            ece += mask.mean() * abs(acc - mean_conf)
            table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(mask.sum()),
                          "accuracy": acc, "confidence": mean_conf})
    return float(ece), table
