"""Continual runs side by side: runs of one recipe (the same settings but the seed) grouped, their average accuracy
and backward transfer over seeds, and for each two recipes on the same benchmark and scenario the difference in
average accuracy with its test: paired by seed (a t-test on the per-seed differences) where both recipes ran the same
seeds on the same tasks in the same order, Welch's otherwise; several pairs Holm-adjusted (evaluate/stats.py)."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

from mnistlab.errors import RunError
from mnistlab.evaluate import stats

NOT_RECIPE = ("seed", "threads", "tasks_built")


def is_continual_run(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    try:
        return "strategy" in json.loads(config.read_text()) and "benchmark" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


def _load(path: Path) -> dict:
    metrics = path / "metrics.json"
    if not metrics.exists():
        raise RunError(f"{path} has not finished: run the same mnistlab continual command again to finish it")
    config = json.loads((path / "config.json").read_text())
    return {"run": str(path), "config": config, "metrics": json.loads(metrics.read_text())}


def compare_continual(paths: list[str | Path]) -> dict:
    others = [str(p) for p in paths if not is_continual_run(p)]
    if others:
        raise RunError(f"{others[0]} is not a continual run; compare continual runs with each other")
    runs = [_load(Path(p)) for p in paths]
    groups: dict[str, list[dict]] = {}
    for r in runs:
        key = json.dumps({k: v for k, v in r["config"].items() if k not in NOT_RECIPE}, sort_keys=True)
        groups.setdefault(key, []).append(r)
    rows = []
    for members in groups.values():
        c = members[0]["config"]
        acc = [m["metrics"]["average_accuracy"] for m in members]
        rows.append({"benchmark": c["benchmark"], "scenario": c["scenario"], "strategy": c["strategy"],
                     "recipe": {k: v for k, v in c.items() if k not in NOT_RECIPE}, **stats.over_seeds(acc),
                     "runs": [m["run"] for m in members], "seeds": [m["config"]["seed"] for m in members],
                     "average_accuracy": acc,
                     "backward_transfer": [m["metrics"]["backward_transfer"] for m in members],
                     "tasks": {m["config"]["seed"]: m["config"]["tasks_built"] for m in members}})
    pairs = []
    for a, b in combinations(rows, 2):
        if (a["benchmark"], a["scenario"]) != (b["benchmark"], b["scenario"]):
            continue
        common = sorted(set(a["seeds"]) & set(b["seeds"]))
        same_tasks = all(a["tasks"][s] == b["tasks"][s] for s in common)
        pair = {"a": a["runs"], "b": b["runs"], "difference": float(a["mean"] - b["mean"])}
        if len(common) >= 2 and same_tasks:
            from scipy.stats import ttest_rel

            xa = [a["average_accuracy"][a["seeds"].index(s)] for s in common]
            xb = [b["average_accuracy"][b["seeds"].index(s)] for s in common]
            diffs = {x - y for x, y in zip(xa, xb)}
            if len(diffs) == 1:  # the same difference at every seed: no spread to test against
                p = 1.0 if diffs == {0} else 0.0
            else:
                p = float(ttest_rel(xa, xb).pvalue)
            pairs.append({**pair, "test": "paired by seed", "seeds": common, "p_value": p})
        elif len(a["seeds"]) >= 2 and len(b["seeds"]) >= 2:
            pairs.append({**pair, "test": "welch", "p_value": stats.welch(a["average_accuracy"], b["average_accuracy"])})
    for pair, p in zip(pairs, stats.holm([x["p_value"] for x in pairs])):
        pair["p_holm"] = p
        pair["verdict"] = stats.verdict(p)
    for r in rows:
        r.pop("tasks")
    return {"level": stats.LEVEL, "groups": rows, "pairs": pairs}
