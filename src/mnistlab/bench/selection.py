"""DomainBed's model selection and its tables (Gulrajani & Lopez-Paz 2020, domainbed/model_selection.py and
scripts/collect_results.py), on records of the same shape as theirs: one record per run and checkpoint,

    {"dataset", "algorithm", "test_envs": [i] or [i, j], "hparams_seed", "trial_seed", "step",
     "in": [accuracy of each environment's "in" part or None], "out": [the same for its held-out "out" part]}

A run with two test environments serves leave-one-environment-out: for test environment i it is the run that left
environment j out too, and judges the step by j's accuracy.

    training_domain   the step (and, across runs, the hyperparameters) whose training environments' held-out parts
                      are the most accurate on average
    leave_one_out     the step whose runs trained without each other environment in turn are, on average, the most
                      accurate on the environment they left out
    oracle            the last step, hyperparameters chosen by the test environment's held-out part (marked as such:
                      it looks at the test domain)

`sweep_acc` picks per (dataset, algorithm, test environment, trial seed) the hyperparameters whose run scores best;
`tables` gives the mean and standard error over trial seeds, as DomainBed prints them. Checked against DomainBed's
own test sweep and its printed results (tests/bench/test_selection.py).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

SELECTIONS = ("training_domain", "leave_one_out", "oracle")
TITLES = {"training_domain": "training-domain validation set", "leave_one_out": "leave-one-domain-out cross-validation",
          "oracle": "test-domain validation set (oracle)"}


def _single(records: list[dict]) -> list[dict]:
    return [r for r in records if len(r["test_envs"]) == 1]


def _key(value: float) -> float:
    """DomainBed sorts a NaN below everything."""
    return float("-inf") if isinstance(value, float) and math.isnan(value) else value


def training_domain(run_records: list[dict]) -> dict | None:
    """One run's best step by the mean accuracy of the other environments' held-out parts."""
    test_records = _single(run_records)
    if not test_records:
        return None

    def step_acc(r):
        e = r["test_envs"][0]
        return {"val_acc": float(np.mean([a for i, a in enumerate(r["out"]) if i != e])), "test_acc": r["in"][e]}

    return max(map(step_acc, test_records), key=lambda a: _key(a["val_acc"]))


def oracle(run_records: list[dict]) -> dict | None:
    """One run's last step, judged by the test environment's held-out part."""
    test_records = _single(run_records)
    if not test_records:
        return None
    last = sorted(test_records, key=lambda r: r["step"])[-1]
    e = last["test_envs"][0]
    return {"val_acc": last["out"][e], "test_acc": last["in"][e]}


def leave_one_out(run_records: list[dict]) -> dict | None:
    """The best step of one hyperparameter setting by leave-one-environment-out: at each step, the mean over the
    other environments j of the accuracy on j of the run that left j out besides the test environment."""
    by_step: dict[int, list[dict]] = defaultdict(list)
    for r in run_records:
        by_step[r["step"]].append(r)
    accs = [a for a in (_leave_one_out_step(rs) for rs in by_step.values()) if a is not None]
    return max(accs, key=lambda a: _key(a["val_acc"])) if accs else None


def _leave_one_out_step(records: list[dict]) -> dict | None:
    test_records = _single(records)
    if len(test_records) != 1:
        return None
    test = test_records[0]["test_envs"][0]
    n_envs = len(records[0]["out"])
    val = [None] * n_envs
    for r in records:
        if len(r["test_envs"]) == 2:
            other = (set(r["test_envs"]) - {test}).pop()
            val[other] = r["in"][other]
    val = val[:test] + val[test + 1:]
    if any(v is None for v in val):
        return None
    return {"val_acc": sum(val) / (n_envs - 1), "test_acc": test_records[0]["in"][test]}


RUN_ACC = {"training_domain": training_domain, "leave_one_out": leave_one_out, "oracle": oracle}


def sweep_acc(records: list[dict], selection: str) -> float | None:
    """The test accuracy of the hyperparameters whose run the selection scores best, among the records of one
    (dataset, algorithm, test environment, trial seed); None when no run can be scored."""
    by_hparams: dict[int, list[dict]] = defaultdict(list)
    for r in records:
        by_hparams[r["hparams_seed"]].append(r)
    scored = [a for a in (RUN_ACC[selection](rs) for rs in by_hparams.values()) if a is not None]
    if not scored:
        return None
    return sorted(scored, key=lambda a: _key(a["val_acc"]))[::-1][0]["test_acc"]


def grouped(records: list[dict]) -> dict[tuple, list[dict]]:
    """(trial_seed, dataset, algorithm, test environment) -> its records; a run with two test environments is in
    both of their groups."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        for e in r["test_envs"]:
            groups[(r["trial_seed"], r["dataset"], r["algorithm"], e)].append(r)
    return groups


def mean_se(values: list[float]) -> dict | None:
    """DomainBed's cell: the mean of the trial seeds' accuracies and its standard error (population std / sqrt(n)),
    both in percent."""
    if not values:
        return None
    data = np.asarray(values, dtype=float)
    return {"mean": float(100 * data.mean()), "se": float(100 * np.std(data / np.sqrt(len(data)))), "n": len(data)}


def cell_text(cell: dict | None) -> str:
    return "X" if cell is None else f"{cell['mean']:.1f} ± {cell['se']:.1f}"


def tables(records: list[dict], selection: str, environments: dict[str, list[str]],
           algorithms: list[str] | None = None) -> dict:
    """DomainBed's tables for one selection method: per dataset, per algorithm, each test environment's mean ± SE
    over trial seeds and the average of those means ("X" where an environment is missing); and the averages
    table (per trial seed the mean over test environments, then mean ± SE over seeds)."""
    accs = {k: sweep_acc(rs, selection) for k, rs in grouped(records).items()}
    accs = {k: v for k, v in accs.items() if v is not None}
    algorithms = algorithms or sorted({r["algorithm"] for r in records})
    out = {"selection": selection, "title": TITLES[selection], "datasets": {}, "averages": {}}
    for dataset, names in environments.items():
        rows = {}
        for algorithm in algorithms:
            cells = [mean_se([v for (t, d, a, e), v in accs.items() if (d, a, e) == (dataset, algorithm, i)])
                     for i in range(len(names))]
            avg = None if any(c is None for c in cells) else float(np.mean([c["mean"] for c in cells]))
            rows[algorithm] = {"environments": dict(zip(names, cells)), "average": avg}
            per_trial = defaultdict(list)
            for (t, d, a, e), v in accs.items():
                if (d, a) == (dataset, algorithm):
                    per_trial[t].append(v)
            out["averages"].setdefault(algorithm, {})[dataset] = mean_se([float(np.mean(v)) for v in per_trial.values()])
        out["datasets"][dataset] = rows
    return out
