"""TensorBoard event files for a run (`train --tensorboard DIR`): per epoch the loss and accuracy of
training, validation and test, the learning rate and images per second, and the test confusion matrix as
an image; the training loss and accuracy every few steps too. TensorBoard is optional:
pip install 'mnistlab[tensorboard]'."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistlab.errors import InvalidArgument

MISSING = "--tensorboard needs the tensorboard package: pip install 'mnistlab[tensorboard]'"


def check_available() -> None:
    """One line, before any work, when the package is not installed."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise InvalidArgument(MISSING) from None


class TensorBoardLog:
    def __init__(self, folder: str | Path, classes: list[str], curve_points_logged: int = 0):
        check_available()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))
        self.classes = classes
        self.logged = curve_points_logged  # curve points already written (a resumed run's earlier epochs)

    def epoch(self, row: dict, curve: list[dict], test_probs: np.ndarray | None, test_labels: np.ndarray | None) -> None:
        from mnistlab.evaluate.metrics import confusion_matrix
        from mnistlab.evaluate.plots import confusion_heatmap

        epoch = row["epoch"]
        for part in ("train", "val", "test"):
            for key in ("loss", "accuracy"):
                if f"{part}_{key}" in row:
                    self.writer.add_scalar(f"{part}/{key}", row[f"{part}_{key}"], epoch)
        self.writer.add_scalar("lr", row["lr"], epoch)
        self.writer.add_scalar("images_per_second", row["images_per_second"], epoch)
        for p in curve[self.logged:]:
            self.writer.add_scalar("train_steps/loss", p["train_loss"], p["step"])
            self.writer.add_scalar("train_steps/accuracy", p["train_accuracy"], p["step"])
        self.logged = len(curve)
        if test_probs is not None:
            cm = confusion_matrix(test_labels, test_probs.argmax(1), len(self.classes))
            self.writer.add_figure("test/confusion_matrix", confusion_heatmap(cm, self.classes, f"epoch {epoch}"), epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
