"""Ensembles: average the calibrated test probabilities of runs trained on the same dataset; or train the
members of a named recipe first (`train_ensemble`), one after another, resumable."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from mnistlab.data import get_spec, load_dataset
from mnistlab.errors import RunError, UnknownName
from mnistlab.fileio import atomic_write, ensure_dir
from mnistlab.run import ENSEMBLE, RUN_HINT, RUNS_DIR, Run, new_run_dir, run_lock, write_json

# what makes a run one of a recipe's members (not where it ran, nor how fast)
RECIPE_SETTINGS = ("model", "dataset", "epochs", "batch_size", "optimizer", "lr", "schedule", "weight_decay",
                   "label_smoothing", "dropout", "augment", "ema", "tta", "val_split", "calibration_split",
                   "train_subset", "model_args")


def make_ensemble(paths: list[str | Path], out: str | Path | None = None, data_dir=None) -> Run:
    """A run folder whose test probabilities are the mean of its members' (each calibrated by its own
    temperature); `Run.predict` averages them the same way."""
    members = _members(paths)
    return _write_ensemble(members, new_run_dir(out, ENSEMBLE, members[0].config["dataset"]), data_dir)


def train_ensemble(recipe: str, members: int, out: str | Path | None = None, device: str | None = None,
                   progress: bool = False, data_dir=None, model: str | None = None) -> Run:
    """Train `members` runs of the preset `recipe` with seeds 0, 1, ... into OUT/members/seed-K, then write the
    ensemble into OUT (default runs/ensemble-RECIPE-xN). Given again, it reuses the finished members and
    resumes an interrupted one from its last epoch; a second process on the same folder is refused. `model`: another
    model (yours: FILE.py:NAME) trained by the recipe in place of its own."""
    from mnistlab.config import PRESETS
    from mnistlab.training.trainer import train

    if recipe not in PRESETS:
        raise UnknownName("recipe", recipe, PRESETS)
    if members < 2:
        raise RunError(f"an ensemble needs at least two members, got --members {members}")
    root = ensure_dir(Path(out) if out else RUNS_DIR / f"ensemble-{recipe}-x{members}", RUN_HINT, RunError)
    with run_lock(root):
        held = Run(root).config if (root / "config.json").exists() else None
        if held and held.get("recipe") != recipe:
            what = f"the ensemble of recipe {held['recipe']!r}" if held.get("recipe") else f"a run of {held['model']}"
            raise RunError(f"{root} holds {what}, not of recipe {recipe!r}; choose another --out")
        runs = []
        for seed in range(members):
            folder = root / "members" / f"seed-{seed}"
            if (folder / "config.json").exists():
                _check_member(Run(folder), recipe, seed, model)
                run = train(resume=folder, progress=progress, data_dir=data_dir)  # a finished one comes back as it is
            else:
                run = train(model, preset=recipe, seed=seed, device=device, out=ensure_dir(folder, RUN_HINT, RunError),
                            progress=progress, data_dir=data_dir)
            runs.append(run)
        return _write_ensemble(_members(runs), root, data_dir, recipe=recipe)


def _check_member(run: Run, preset: str, seed: int, model: str | None = None) -> None:
    """A run already in the folder is reused if it trained what the preset trains now, on this seed (whatever
    its command: `--preset` or the same settings spelled out)."""
    from mnistlab.config import resolve_config

    now = asdict(resolve_config({"preset": preset, "seed": seed, "model": model}))
    changed = [f"{k} {run.config.get(k)!r}, now {now[k]!r}" for k in (*RECIPE_SETTINGS, "seed") if run.config.get(k) != now[k]]
    if changed:
        made_by = run.config.get("preset")
        if made_by == preset:
            origin = f"another version of recipe {preset!r}"
        elif made_by:
            origin = f"recipe {made_by!r}, not recipe {preset!r}"
        else:
            origin = f"settings of its own, not recipe {preset!r}"
        raise RunError(f"{run.path} was trained by {origin} ({'; '.join(changed)}); choose another --out")


def _members(paths) -> list[Run]:
    if len(paths) < 2:
        raise RunError("an ensemble needs at least two runs")
    members = [p if isinstance(p, Run) else Run(p) for p in paths]
    first = members[0].config
    for m in members[1:]:
        if m.config["dataset"] != first["dataset"] or m.classes != members[0].classes:
            raise RunError(f"{m.path} was trained on {m.config['dataset']}, {members[0].path} on {first['dataset']}; "
                           "ensemble runs of one dataset")
    return members


def _write_ensemble(members: list[Run], run_dir: Path, data_dir, recipe: str | None = None) -> Run:
    first = members[0].config
    probs = [m.test_probs() for m in members]
    spec = get_spec(first["dataset"])
    y = np.asarray(load_dataset(spec, "test", data_dir=data_dir).labels)
    for m, p in zip(members, probs):
        if p.shape != (len(y), len(members[0].classes)):
            raise RunError(f"{m.path / 'test_probs.npy'} has shape {p.shape}, expected {(len(y), len(members[0].classes))}")
    mean = np.mean(probs, axis=0).astype(np.float32)
    acc = float((mean.argmax(1) == y).mean())
    loss = float(-np.log(np.clip(mean[np.arange(len(y)), y], 1e-12, None)).mean())
    recipe_info = {"recipe": recipe} if recipe else {}
    write_json(run_dir / "config.json", {"kind": ENSEMBLE, "model": ENSEMBLE, "dataset": spec.name, "classes": members[0].classes,
                                         "members": [str(m.path.resolve()) for m in members], **recipe_info})
    atomic_write(run_dir / "test_probs.npy", lambda fh: np.save(fh, mean, allow_pickle=False), error=RunError)
    write_json(run_dir / "metrics.json", {
        "kind": ENSEMBLE, "model": ENSEMBLE, "dataset": spec.name, "test_accuracy": acc, "test_loss": loss, **recipe_info,
        "members": [{"path": str(m.path), "model": m.config["model"], "test_accuracy": m.metrics["test_accuracy"]} for m in members],
        "train_seconds": sum(m.metrics.get("train_seconds", 0) for m in members),
        "params": sum(m.metrics.get("params") or 0 for m in members) or None})
    return Run(run_dir)
