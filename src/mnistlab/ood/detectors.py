"""Out-of-distribution detectors, each a score where higher means "more like the training images", written from its
paper. The ones that need only a net's outputs:

- `msp`: the maximum softmax probability, after the run's temperature (Hendrycks & Gimpel 2017);
- `max_logit`: the largest logit (Hendrycks et al. 2022, "Scaling out-of-distribution detection");
- `energy`: T * logsumexp(logits / T) with T = 1, the negative free energy (Liu et al. 2020, eq. 7).

And the ones that also need the penultimate features (the input of the net's last linear layer) and a fit on the
run's training images (`fit`):

- `mahalanobis`: minus the smallest Mahalanobis distance to a class mean, with one covariance shared by the classes
  (Lee et al. 2018, eq. 2; the penultimate layer only, without their input perturbation and layer ensemble);
- `knn`: minus the distance to the k-th nearest training feature, all features scaled to unit length (Sun et al.
  2022, Algorithm 1);
- `vim`: the energy minus alpha times the norm of the feature's part outside the training features' principal
  subspace, taken about the origin the head's bias implies (Wang et al. 2022, eqs. 2-6).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnistlab.errors import InvalidArgument

LOGIT_DETECTORS = ("msp", "max_logit", "energy")
FEATURE_DETECTORS = ("mahalanobis", "knn", "vim")
DETECTORS = LOGIT_DETECTORS + FEATURE_DETECTORS
KNN_K = 10  # Sun et al. take k = 50 with all 50,000 CIFAR-10 images; k scales with the bank (their sec. 4.1)
BANK = 10_000  # training images fitted on: the class means, the covariance, the KNN bank and ViM's subspace


@dataclass
class Outputs:
    """What the detectors read for a set of images: the logits (N, C), the probabilities after the temperature
    (N, C), and the penultimate features (N, F; None where the net has none that mnistlab can find)."""

    logits: np.ndarray | None
    probs: np.ndarray
    features: np.ndarray | None = None


@dataclass
class Fit:
    """What the feature detectors learn from training images: class means and the shared precision (Mahalanobis),
    the unit-length training features (KNN), ViM's origin, the basis of the space outside the principal one and
    alpha."""

    means: np.ndarray
    precision: np.ndarray
    bank: np.ndarray
    origin: np.ndarray
    residual: np.ndarray
    alpha: float

    def arrays(self) -> dict[str, np.ndarray]:
        return {"means": self.means, "precision": self.precision, "bank": self.bank, "origin": self.origin,
                "residual": self.residual, "alpha": np.array([self.alpha])}

    @classmethod
    def from_arrays(cls, a: dict) -> "Fit":
        bank = np.asarray(a["bank"]) if "bank" in a else np.zeros((0, len(a["origin"])), np.float32)  # kept for knn only
        return cls(**{k: np.asarray(a[k]) for k in ("means", "precision", "origin", "residual")}, bank=bank,
                   alpha=float(np.asarray(a["alpha"]).reshape(-1)[0]))


def logsumexp(logits: np.ndarray) -> np.ndarray:
    top = logits.max(1, keepdims=True)
    return (top + np.log(np.exp(logits - top).sum(1, keepdims=True)))[:, 0]


def principal_dims(features: int) -> int:
    """ViM's principal subspace's dimension D, as Wang et al. choose it by the feature size (their sec. 4.1 and
    code: 1000 for 2048 features or more, 512 for 768 or more), and half the features for the small nets here."""
    return 1000 if features >= 2048 else 512 if features >= 768 else max(1, features // 2)


def fit(features: np.ndarray, labels: np.ndarray, logits: np.ndarray, weight: np.ndarray, bias: np.ndarray,
        classes: int) -> Fit:
    """The feature detectors' statistics from training images' penultimate features, labels and logits, and the
    head's weight (C, F) and bias (C,)."""
    features = features.astype(np.float64)
    means = np.stack([features[labels == c].mean(0) if (labels == c).any() else np.zeros(features.shape[1])
                      for c in range(classes)])
    centred = features - means[labels]
    precision = np.linalg.pinv(centred.T @ centred / len(features), hermitian=True)
    bank = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    origin = -np.linalg.pinv(weight.astype(np.float64)) @ bias.astype(np.float64)
    shifted = features - origin
    values, vectors = np.linalg.eigh(shifted.T @ shifted / len(shifted))  # ascending: the last D are the principal
    residual = vectors[:, : features.shape[1] - principal_dims(features.shape[1])]
    norms = np.linalg.norm(shifted @ residual, axis=1)
    alpha = float(logits.max(1).mean() / max(norms.mean(), 1e-12))
    return Fit(means, precision, bank.astype(np.float32), origin, residual, alpha)


def score(name: str, out: Outputs, fitted: Fit | None = None) -> np.ndarray:
    """The detector `name`'s scores (higher: more in-distribution) for the images of `out`."""
    if name == "msp":
        return out.probs.max(1).astype(np.float64)
    if out.logits is None:
        raise InvalidArgument(f"detector {name!r} needs a net's logits; this run gives probabilities only (use msp)")
    logits = out.logits.astype(np.float64)
    if name == "max_logit":
        return logits.max(1)
    if name == "energy":
        return logsumexp(logits)
    if name not in FEATURE_DETECTORS:
        raise InvalidArgument(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    if out.features is None or fitted is None:
        raise InvalidArgument(f"detector {name!r} needs the net's penultimate features, which this run does not give")
    f = out.features.astype(np.float64)
    if name == "mahalanobis":
        return -_mahalanobis(f, fitted.means, fitted.precision)
    if name == "knn":
        return -_kth_distance(f, fitted.bank, KNN_K)
    return logsumexp(logits) - fitted.alpha * np.linalg.norm((f - fitted.origin) @ fitted.residual, axis=1)


def _mahalanobis(f: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """The smallest squared Mahalanobis distance of each row of `f` to a class mean."""
    best = np.full(len(f), np.inf)
    for mean in means:
        d = f - mean
        best = np.minimum(best, ((d @ precision) * d).sum(1))
    return best


def _kth_distance(f: np.ndarray, bank: np.ndarray, k: int, chunk: int = 2048) -> np.ndarray:
    """The Euclidean distance from each unit-length row of `f` to its k-th nearest row of `bank`."""
    import torch

    unit = torch.from_numpy((f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)).astype(np.float32))
    bank_t = torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float32))
    k = min(k, len(bank))
    out = []
    for part in unit.split(chunk):
        cosine = part @ bank_t.T  # unit vectors: |a - b|^2 = 2 - 2 a.b
        kth = cosine.topk(k, dim=1).values[:, -1]
        out.append(torch.sqrt(torch.clamp(2 - 2 * kth, min=0)))
    return torch.cat(out).double().numpy() if out else np.zeros(0)
