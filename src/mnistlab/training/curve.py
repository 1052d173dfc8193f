"""Learning curves inside an epoch: the training loss and accuracy every few steps (about 64 points
per run whatever its length), so even a one-epoch run has a curve. Points are snapshots of the
step's running totals on the device and become numbers only at the end of the epoch: recording
never makes the loop wait for the accelerator."""

from __future__ import annotations

POINTS_PER_RUN = 64


class Curve:
    def __init__(self, total_steps: int, steps_per_epoch: int, points: list[dict] | None = None):
        self.every = max(1, total_steps // POINTS_PER_RUN)
        self.steps_per_epoch = steps_per_epoch
        self.points: list[dict] = list(points or [])  # finished epochs' points (from a checkpoint when resuming)
        self._pending: list[tuple] = []

    def start_epoch(self) -> None:
        self._pending = []

    def record(self, step, epoch: int, i: int, lr: float) -> None:
        """After batch i of `epoch` (0-based): keep a snapshot every `every` global steps."""
        global_step = epoch * self.steps_per_epoch + i + 1
        if global_step % self.every == 0 or i == self.steps_per_epoch - 1:
            self._pending.append((global_step, epoch + (i + 1) / self.steps_per_epoch, lr, *step.snapshot()))

    def end_epoch(self) -> list[dict]:
        """Turn this epoch's snapshots into points (one wait for the device); returns all points so far."""
        import torch

        if not self._pending:
            return self.points
        losses = torch.stack([p[4].double() for p in self._pending]).tolist()
        corrects = torch.stack([p[5] for p in self._pending]).tolist()
        prev_seen, prev_loss, prev_correct = 0, 0.0, 0
        for (global_step, at, lr, seen, _, _), loss, correct in zip(self._pending, losses, corrects):
            n = seen - prev_seen
            if n > 0:
                self.points.append({"step": global_step, "epoch": round(at, 4), "lr": lr,
                                    "train_loss": (loss - prev_loss) / n, "train_accuracy": (correct - prev_correct) / n})
            prev_seen, prev_loss, prev_correct = seen, loss, correct
        self._pending = []
        return self.points
