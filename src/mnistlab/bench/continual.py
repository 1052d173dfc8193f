"""`mnistlab bench --protocol continual`: every strategy on Split MNIST (task- and class-incremental) and Permuted MNIST
(domain-incremental), over seeds, with van de Ven's settings (the `vandeven-*` presets), written beside the published
tables. The runs are the jobs of a queue that scales out as the sweeps do (bench/queue.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

from mnistlab.bench.queue import Queue, collect, open_queue, run_workers
from mnistlab.continual.strategies import STRATEGIES, WITH_BUFFER
from mnistlab.errors import InvalidArgument, UnknownName
from mnistlab.evaluate.stats import over_seeds
from mnistlab.fileio import atomic_write_bytes, atomic_write_json, ensure_dir

log = logging.getLogger(__name__)

CELLS = (("split-mnist", "task"), ("split-mnist", "class"), ("permuted-mnist", "domain"))
PRESET = {"split-mnist": "vandeven-split-mnist", "permuted-mnist": "vandeven-permuted-mnist"}
# average accuracy in percent: van de Ven & Tolias 2019 (Split MNIST) and Avalanche's reproduced baselines
# (ContinualAI/continual-learning-baselines), as the issue quotes them
PUBLISHED = {
    ("split-mnist", "class", "naive"): (19.90, "van de Ven"), ("split-mnist", "class", "ewc"): (20.01, "van de Ven"),
    ("split-mnist", "class", "online-ewc"): (19.96, "van de Ven"), ("split-mnist", "class", "si"): (19.99, "van de Ven"),
    ("split-mnist", "class", "lwf"): (23.85, "van de Ven"), ("split-mnist", "task", "naive"): (87.2, "van de Ven"),
    ("split-mnist", "task", "ewc"): (98.6, "van de Ven"), ("split-mnist", "task", "si"): (99.1, "van de Ven"),
    ("split-mnist", "class", "gdumb"): (97.0, "Avalanche"), ("split-mnist", "class", "replay"): (92.0, "Avalanche"),
    ("permuted-mnist", "domain", "ewc"): (83.0, "Avalanche"), ("permuted-mnist", "domain", "si"): (83.0, "Avalanche"),
}


def make_jobs(strategies: list[str], seeds: int, buffer: int, iterations: int | None, extra: dict | None = None) -> list[dict]:
    return [{"key": f"{b}/{s}/{st}/s{seed}", "benchmark": b, "scenario": s, "strategy": st, "seed": seed,
             "buffer": buffer if st in WITH_BUFFER else 0, "iterations": iterations, "extra": dict(extra or {})}
            for seed in range(seeds) for b, s in CELLS for st in strategies]


def _run(out: str, data_dir, threads, job: dict) -> list[dict]:
    from mnistlab.continual import run_continual

    settings = {k: job[k] for k in ("scenario", "strategy", "seed")}
    if job["buffer"]:
        settings["buffer"] = job["buffer"]
    if job["iterations"]:
        settings["iterations"] = job["iterations"]
    r = run_continual(Path(out) / "runs" / job["key"], preset=PRESET[job["benchmark"]], data_dir=data_dir,
                      threads=threads, **settings, **job["extra"])
    return [{k: r[k] for k in ("benchmark", "scenario", "strategy", "seed", "average_accuracy", "backward_transfer",
                                "forward_transfer", "seconds")}]


def run_protocol(strategies: list[str] | None = None, *, seeds: int = 3, buffer: int = 500, iterations: int | None = None,
                 out: str | Path | None = None, storage: str | None = None, study: str | None = None, jobs: int = 1,
                 threads: int | None = None, budget_minutes: float | None = None, data_dir=None,
                 extra: dict | None = None, say: Callable[[str], None] | None = None) -> dict:
    """Run (or join) the protocol; continual.json and continual.md in `out`. `extra`: continual settings for every
    run on top of the presets' (model_args, batch_size...)."""
    from mnistlab.data import load_dataset

    say = say or (lambda msg: log.info("%s", msg))
    strategies = [s.lower() for s in (strategies or list(STRATEGIES))]
    for s in strategies:
        if s not in STRATEGIES:
            raise UnknownName("strategy", s, STRATEGIES)
    for name, value in (("seeds", seeds), ("buffer", buffer), ("jobs", jobs)):
        if not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"{name} must be a whole number >= 1, got {value!r}")
    if iterations is not None and iterations < 1:
        raise InvalidArgument(f"iterations must be a whole number >= 1, got {iterations!r}")
    out = Path(out) if out else Path("bench-continual")
    ensure_dir(out / "runs", "pass --out to a writable folder")
    identity = {"strategies": strategies, "seeds": seeds, "buffer": buffer, "iterations": iterations, "extra": dict(extra or {})}
    q = Queue("continual", identity, storage or f"sqlite:///{(out / 'study.db').resolve()}", study or "continual",
              threads=threads, budget_minutes=budget_minutes, locks=str(out / "runs"))
    job_list = make_jobs(strategies, seeds, buffer, iterations, extra)
    study_obj = open_queue(q, job_list)
    load_dataset("mnist", "train", data_dir=data_dir)  # fetched once, before the workers start
    say(f"study {q.study!r}: {len(job_list)} runs ({len(strategies)} strategies x {len(CELLS)} benchmarks x {seeds} seeds)")
    why = run_workers(q, job_list, functools.partial(_run, str(out), str(data_dir) if data_dir else None, threads), jobs, say)
    records, counts = collect(study_obj)
    result = {"protocol": "continual", **identity, "stopped": why, **counts, "table": table(records, strategies)}
    atomic_write_json(out / "continual.json", result)
    atomic_write_bytes(out / "continual.md", markdown(result).encode())
    result["out"] = str(out)
    return result


def table(records: list[dict], strategies: list[str]) -> list[dict]:
    """Per benchmark, scenario and strategy: the average accuracy and backward transfer over seeds (mean, 95%
    interval), the published value beside."""
    rows = []
    for b, s in CELLS:
        for st in strategies:
            mine = [r for r in records if (r["benchmark"], r["scenario"], r["strategy"]) == (b, s, st)]
            pub = PUBLISHED.get((b, s, st))
            rows.append({"benchmark": b, "scenario": s, "strategy": st, "seeds": len(mine),
                         "average_accuracy": over_seeds([r["average_accuracy"] for r in mine]) if mine else None,
                         "backward_transfer": over_seeds([r["backward_transfer"] for r in mine], bounds=None) if mine else None,
                         "published": None if pub is None else {"value": pub[0], "source": pub[1]}})
    return rows


def _cell(stat: dict | None, scale: float = 100, fmt: str = ".1f") -> str:
    if stat is None:
        return "X"
    text = f"{scale * stat['mean']:{fmt}}"
    if stat["interval"]:
        text += f" ({scale * stat['interval'][0]:{fmt}}-{scale * stat['interval'][1]:{fmt}})"
    return text


def markdown(result: dict) -> str:
    lines = ["# Continual learning: the protocol", "",
             f"{result['seeds']} seeds, buffer {result['buffer']} for {', '.join(WITH_BUFFER)}, van de Ven's settings"
             + (f" but {result['iterations']} iterations a task" if result["iterations"] else "")
             + f"; {result['runs']} runs finished ({result['run_seconds']:.0f} s). Average accuracy in percent, mean "
             "and 95% interval over seeds; X: not finished.", "",
             "| benchmark | scenario | strategy | average accuracy | backward transfer | published |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for r in result["table"]:
        pub = r["published"]
        lines.append(f"| {r['benchmark']} | {r['scenario']} | {r['strategy']} | {_cell(r['average_accuracy'])} | "
                     f"{_cell(r['backward_transfer'], 1, '+.3f')} | "
                     f"{'' if pub is None else '%.1f (%s)' % (pub['value'], pub['source'])} |")
    return "\n".join(lines) + "\n"
