"""Side by side, with the statistics that say whether a difference is real: each run's accuracy with its interval;
for each pair judged on the same images the exact McNemar test and the difference with its interval; runs that are
seeds of one recipe grouped (mean, std and interval over seeds; Welch's test between recipes). Several pairs at
once have their p-values Holm-adjusted, and the verdict reads the adjusted one (mnistlab/evaluate/stats.py)."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np

from mnistlab.evaluate import plots, stats
from mnistlab.evaluate.evaluate import evaluate_with_probs
from mnistlab.fileio import atomic_write_bytes
from mnistlab.models.reference import label
from mnistlab.run import ENSEMBLE, Run, mean_accuracy

COLUMNS = ("run", "model", "dataset", "split", "epochs", "accuracy", "interval", "loss", "train_seconds", "params",
           "test_images_per_second")
# settings that change how a run is computed or logged, not what it learns: two runs differing only in these (and the
# seed) are seeds of one recipe
NOT_RECIPE = ("seed", "threads", "device", "precision", "step", "tensorboard", "eval_batch_size", "init_from")


def compare_runs(paths: list[str | Path], plot: str | Path | None = None, *, dataset: str | None = None,
                 split: str = "test", data_dir=None) -> dict:
    """rows (one per run), pairs (each two judged on the same images), groups (seeds of one recipe) and group_pairs;
    with `plot`, a PNG of their test accuracy per epoch (per step for runs counted in steps). `dataset`/`split`: judge
    every run there instead of on its own test set (an MNIST run on QMNIST's test50k). A run trained across
    environments is judged on its test environment: two such runs are a pair when they were tested on the same one."""
    runs = [Run(p) for p in paths]
    judged = [_judge(r, dataset, split, data_dir) for r in runs]
    rows = [_row(r, j) for r, j in zip(runs, judged)]
    result = {"level": stats.LEVEL, "rows": rows, "pairs": _pairs(rows, judged), **_groups(runs, rows)}
    if plot:
        names = [f"{recipe_name(r)} ({r.path.name})" for r in runs]
        fig = plots.compare_curves({n: _test_curve(r) for n, r in zip(names, runs)})
        atomic_write_bytes(Path(plot), plots.to_png(fig))
    return result


def _judge(run: Run, dataset: str | None, split: str, data_dir) -> dict:
    ev, ds, probs = evaluate_with_probs(run, dataset, split, data_dir=data_dir, write=False)
    return {"right": probs.argmax(1) == np.asarray(ds.labels), "images": (ev["dataset"], ev["split"]), "loss": ev["loss"]}


def _test_curve(run: Run) -> list[dict]:
    """The run's rows with a test_accuracy: a run across environments has its test environments' accuracy in each."""
    tested = run.config.get("test_environment") and run.metrics.get("tested_on")
    if not tested:
        return run.history
    return [{"step": r["step"], "test_accuracy": mean_accuracy(r, tested)}
            for r in run.history if all("in" in r["environments"].get(n, {}) for n in tested)]


def recipe_name(run: Run) -> str:
    """A recipe as tables call it: the model, and what else tells recipes of one model apart (the preset, or the
    algorithm of a run across environments)."""
    extra = run.config.get("preset") or ((run.config.get("algorithm") or "erm") if run.config.get("test_environment") else None)
    return f"{label(run.config['model'])} ({extra})" if extra else label(run.config["model"])


def _row(run: Run, judged: dict) -> dict:
    m = run.metrics
    right = judged["right"]
    correct, n = int(right.sum()), int(right.size)
    return {"run": str(run.path), "model": run.config["model"], "name": recipe_name(run), "dataset": judged["images"][0],
            "split": judged["images"][1], "epochs": None if "steps" in m else len(run.history) or m.get("epochs"),
            "steps": m.get("steps"), "n": n, "correct": correct, "accuracy": correct / n if n else None,
            "interval": list(stats.accuracy_interval(correct, n)), "loss": judged["loss"], "train_seconds": m.get("train_seconds"),
            "params": m.get("params"), "test_images_per_second": m.get("test_images_per_second")}


def _pairs(rows: list[dict], judged: list[dict]) -> list[dict]:
    pairs = []
    for i, j in combinations(range(len(rows)), 2):
        if judged[i]["images"] == judged[j]["images"]:
            test = stats.mcnemar(judged[i]["right"], judged[j]["right"])
            pairs.append({"a": rows[i]["run"], "b": rows[j]["run"], **test})
    return _adjusted(pairs)


def _adjusted(pairs: list[dict]) -> list[dict]:
    for pair, p in zip(pairs, stats.holm([x["p_value"] for x in pairs])):
        pair["p_holm"] = p
        pair["verdict"] = stats.verdict(p)
    return pairs


def recipe_key(run: Run) -> str:
    """What a run trained, apart from its seed: runs with the same key are seeds of one recipe."""
    if run.kind == ENSEMBLE:
        return json.dumps({"ensemble": sorted(run.config.get("members", []))})
    settings = {k: v for k, v in run.settings.to_dict().items() if k not in NOT_RECIPE}
    return json.dumps(settings, sort_keys=True, default=str)


def _groups(runs: list[Run], rows: list[dict]) -> dict:
    by_recipe: dict[tuple, list[int]] = {}
    for i, run in enumerate(runs):
        by_recipe.setdefault((recipe_key(run), rows[i]["dataset"], rows[i]["split"]), []).append(i)
    groups = []
    for (_, dataset, split), members in by_recipe.items():
        if len(members) > 1:
            accs = [rows[i]["accuracy"] for i in members]
            groups.append({"model": rows[members[0]]["model"], "name": rows[members[0]]["name"], "dataset": dataset, "split": split,
                           "runs": [rows[i]["run"] for i in members], "accuracies": accs, **stats.over_seeds(accs)})
    group_pairs = []
    for a, b in combinations(groups, 2):
        if (a["dataset"], a["split"]) == (b["dataset"], b["split"]):
            group_pairs.append({"a": a["name"], "b": b["name"], "a_runs": a["runs"], "b_runs": b["runs"],
                                "difference": a["mean"] - b["mean"], "test": "welch", "p_value": stats.welch(a["accuracies"], b["accuracies"])})
    return {"groups": groups, "group_pairs": _adjusted(group_pairs)}
