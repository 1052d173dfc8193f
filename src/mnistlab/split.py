"""How a run divides the training images: the ones it trains on, a validation hold-out and a calibration hold-out.

A run computes its split once, from its seed, and keeps it in its folder (split.npz); evaluation, calibration and
benchmarks read it from there, so a later change to `split_indices` never moves the held-out images of a run that
already exists. Folders written before the split was kept get it recomputed, as the code that trained them did."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnistlab.errors import InvalidArgument, RunError

MIN_CALIBRATION_IMAGES = 100  # fewer held-out images than this fit no temperature worth having
SPLIT_FILE = "split.npz"


@dataclass(frozen=True)
class Split:
    """Sorted indices into the training set."""

    train: np.ndarray
    val: np.ndarray
    calibration: np.ndarray  # the validation images themselves when there are enough of them

    @property
    def held_out(self) -> np.ndarray:
        """The training images the run never trained on: its validation split, else its calibration hold-out."""
        return self.val if len(self.val) else self.calibration

    def arrays(self) -> dict[str, np.ndarray]:
        return {"train": self.train.astype(np.int32), "val": self.val.astype(np.int32),
                "calibration": self.calibration.astype(np.int32)}

    @classmethod
    def read(cls, path: Path) -> "Split":
        try:
            with np.load(path, allow_pickle=False) as f:
                return cls(*(np.asarray(f[k], dtype=np.int64) for k in ("train", "val", "calibration")))
        except (OSError, ValueError, KeyError) as exc:
            raise RunError(f"{path} is damaged ({type(exc).__name__}); the run's held-out images are unknown: "
                           "train it again") from None


def kept_split(run_dir: Path, train_labels: np.ndarray | None, cfg, num_classes: int, neural: bool) -> Split:
    """A run folder's split: from its split.npz; for a folder written before splits were kept, recomputed from its
    seed as the code that trained it did (that needs the training labels)."""
    kept = run_dir / SPLIT_FILE
    if kept.exists():
        return Split.read(kept)
    if train_labels is None:
        raise RunError(f"{run_dir} has no {SPLIT_FILE} (an older run): its split needs the training labels")
    return split_indices(np.asarray(train_labels), cfg, num_classes, neural)


def split_indices(labels: np.ndarray, cfg, num_classes: int, neural: bool = True) -> Split:
    """Training, validation and calibration indices for a TrainConfig `cfg`: a seeded hold-out of `val_split` images;
    for a net without one, a seeded hold-out of `calibration_split` images (at most a tenth of the set) to fit its
    temperature on (with one, the validation images serve); then an optional class-balanced subset of
    `train_subset` images (for the low-data case)."""
    n = len(labels)
    if cfg.val_split >= n:
        raise InvalidArgument(f"val split {cfg.val_split} must be smaller than the training set ({n} images)")
    order = np.random.default_rng(cfg.seed).permutation(n)
    val = np.sort(order[:cfg.val_split])
    calib_n = min(cfg.calibration_split, (n - cfg.val_split) // 10) if neural and not cfg.val_split else 0
    calib_n = calib_n if calib_n >= MIN_CALIBRATION_IMAGES else 0
    calib = np.sort(order[cfg.val_split:cfg.val_split + calib_n])
    train = order[cfg.val_split + calib_n:]
    if cfg.train_subset is not None:
        train = _balanced_subset(train, labels, cfg.train_subset, num_classes)
    if neural and cfg.calibration_split and len(val) >= MIN_CALIBRATION_IMAGES:
        calib = val
    return Split(np.sort(train), val, calib)


def _balanced_subset(train: np.ndarray, labels: np.ndarray, size: int, num_classes: int) -> np.ndarray:
    if size > len(train):
        raise InvalidArgument(f"train subset {size} is larger than the {len(train)} training images left")
    per_class = [train[labels[train] == c] for c in range(num_classes)]
    quota = np.full(num_classes, size // num_classes)
    quota[: size % num_classes] += 1
    return np.concatenate([idx[:q] for idx, q in zip(per_class, quota)])
