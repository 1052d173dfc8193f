"""Learning-rate schedules as pure functions of progress, so a resumed run follows the same curve."""

from __future__ import annotations

import math

from mnistlab.vocabulary import SCHEDULES  # noqa: F401  (training's name for it)


def lr_at(step: int, total_steps: int, base_lr: float, schedule: str, warmup: float = 0.25) -> float:
    """Learning rate for optimiser step `step` (0-based) of `total_steps`.

    onecycle: linear warm-up from base/25 over the first `warmup` fraction, then cosine to ~0;
    cosine: cosine from base to 0; step: x0.1 at 50% and again at 75%; none: constant.
    """
    t = min(max(step / max(total_steps, 1), 0.0), 1.0)
    if schedule == "onecycle":
        if t < warmup:
            return base_lr * (0.04 + 0.96 * t / warmup)
        return base_lr * (0.5 * (1 + math.cos(math.pi * (t - warmup) / (1 - warmup))) * (1 - 1e-4) + 1e-4)
    if schedule == "cosine":
        return base_lr * 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "step":
        return base_lr * (0.1 ** ((t >= 0.5) + (t >= 0.75)))
    if schedule == "none":
        return base_lr
    raise ValueError(schedule)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of every random choice in one epoch of one process: a pure function of (seed, epoch, rank)."""
    return seed * 1_000_003 + epoch + 7919 * rank
