"""Side by side: several runs in one table, and their learning curves in one plot."""

from __future__ import annotations

from pathlib import Path

from mnistlab.evaluate import plots
from mnistlab.fileio import atomic_write_bytes
from mnistlab.run import Run

COLUMNS = ("run", "model", "dataset", "epochs", "test_accuracy", "test_loss", "train_seconds", "params", "test_images_per_second")


def compare_runs(paths: list[str | Path], plot: str | Path | None = None) -> list[dict]:
    """One row per run (finished runs only); with `plot`, a PNG of their test accuracy per epoch."""
    runs = [Run(p) for p in paths]
    rows = []
    for r in runs:
        m = r.metrics
        rows.append({"run": str(r.path), "model": r.config["model"], "dataset": r.config["dataset"],
                     "epochs": len(r.history) or m.get("epochs"), "test_accuracy": m.get("test_accuracy"),
                     "test_loss": m.get("test_loss"), "train_seconds": m.get("train_seconds"), "params": m.get("params"),
                     "test_images_per_second": m.get("test_images_per_second")})
    if plot:
        names = [f"{r.config['model']} ({r.path.name})" for r in runs]
        fig = plots.compare_curves({n: r.history for n, r in zip(names, runs)})
        atomic_write_bytes(Path(plot), plots.to_png(fig))
    return rows
