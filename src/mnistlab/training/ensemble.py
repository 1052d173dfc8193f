"""Ensembles: average the test probabilities of runs trained on the same dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistlab.data import get_spec, load_dataset
from mnistlab.errors import RunError
from mnistlab.run import Run, new_run_dir, write_json
from mnistlab.fileio import atomic_write


def make_ensemble(paths: list[str | Path], out: str | Path | None = None, data_dir=None) -> Run:
    """A run folder whose test probabilities are the mean of its members'; `Run.predict` averages them too."""
    if len(paths) < 2:
        raise RunError("an ensemble needs at least two runs")
    members = [Run(p) for p in paths]
    first = members[0].config
    for m in members[1:]:
        if m.config["dataset"] != first["dataset"] or m.classes != members[0].classes:
            raise RunError(f"{m.path} was trained on {m.config['dataset']}, {members[0].path} on {first['dataset']}; "
                           "ensemble runs of one dataset")
    probs = [m.test_probs() for m in members]
    spec = get_spec(first["dataset"])
    y = np.asarray(load_dataset(spec, "test", data_dir=data_dir).labels)
    for m, p in zip(members, probs):
        if p.shape != (len(y), len(members[0].classes)):
            raise RunError(f"{m.path / 'test_probs.npy'} has shape {p.shape}, expected {(len(y), len(members[0].classes))}")
    mean = np.mean(probs, axis=0).astype(np.float32)
    acc = float((mean.argmax(1) == y).mean())
    loss = float(-np.log(np.clip(mean[np.arange(len(y)), y], 1e-12, None)).mean())
    run_dir = new_run_dir(out, "ensemble", spec.name)
    write_json(run_dir / "config.json", {"model": "ensemble", "dataset": spec.name, "classes": members[0].classes,
                                         "members": [str(m.path.resolve()) for m in members]})
    atomic_write(run_dir / "test_probs.npy", lambda fh: np.save(fh, mean, allow_pickle=False), error=RunError)
    write_json(run_dir / "metrics.json", {
        "model": "ensemble", "dataset": spec.name, "test_accuracy": acc, "test_loss": loss,
        "members": [{"path": str(m.path), "model": m.config["model"], "test_accuracy": m.metrics["test_accuracy"]} for m in members],
        "train_seconds": sum(m.metrics.get("train_seconds", 0) for m in members),
        "params": sum(m.metrics.get("params") or 0 for m in members) or None})
    return Run(run_dir)
