"""Training a scikit-learn model: one fit on the flattened training images, the test set's probabilities, and a
run folder like a net's (one epoch row, model.skops instead of weights)."""

from __future__ import annotations

import logging
import os
import time
import warnings

import numpy as np

from mnistlab.models import create_model
from mnistlab.run import Run, RunFolder, classical_proba
from mnistlab.training.record import final_metrics

log = logging.getLogger(__name__)


def _flat(images) -> np.ndarray:
    return np.asarray(images, dtype=np.float32).reshape(len(images), -1) / np.float32(255)


def _fit(est, x: np.ndarray, y: np.ndarray, model: str) -> float:
    """Fit, and say in one line (not scikit-learn's screenful) when the solver stopped at its limit; the seconds."""
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(x, y)
    seconds = time.perf_counter() - t0
    if any("converge" in str(w.message).lower() for w in caught):
        log.warning("%s stopped at its iteration limit before meeting its tolerance (the accuracy is still measured); "
                    "raise it with --model-arg max_iter=N", model)
    return seconds


def train_classical(folder: RunFolder, train_ds, test_ds, split) -> Run:
    cfg = folder.cfg
    est = create_model(cfg.model, num_classes=len(folder.facts.classes), seed=cfg.seed, **(cfg.model_args or {}))
    fit_s = _fit(est, _flat(train_ds.images[split.train]), np.asarray(train_ds.labels[split.train]), cfg.model)
    t0 = time.perf_counter()
    probs = classical_proba(est, _flat(test_ds.images))
    predict_s = time.perf_counter() - t0
    y_test = np.asarray(test_ds.labels)
    acc = float((probs.argmax(1) == y_test).mean())
    loss = float(-np.log(np.clip(probs[np.arange(len(y_test)), y_test], 1e-12, None)).mean())
    row = {"epoch": 1, "test_accuracy": acc, "test_loss": loss, "seconds": fit_s}
    if len(split.val):
        vp = classical_proba(est, _flat(train_ds.images[split.val]))
        row["val_accuracy"] = float((vp.argmax(1) == train_ds.labels[split.val]).mean())
    folder.save_epoch([row], [])
    folder.save_estimator(est)
    folder.save_test_probs(probs)
    return folder.save_metrics(final_metrics(folder, {
        "test_accuracy": acc, "test_loss": loss, "train_seconds": fit_s, "predict_seconds": predict_s,
        "test_images_per_second": len(y_test) / predict_s, "train_images": int(len(split.train)), "params": None,
        "device": "cpu", "threads": os.cpu_count(), **({"val_accuracy": row["val_accuracy"]} if "val_accuracy" in row else {})}))
