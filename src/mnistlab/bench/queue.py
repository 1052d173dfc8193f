"""A protocol's runs as the jobs of an Optuna study used as a queue (the sweeps' storage, sweep/study.py), so that a
protocol bench scales out as the sweeps do:

    the first process fills the queue (each job once, under the storage's lock); any number of processes, here
    (`jobs`) or on other machines given the same storage URL and study name, take the next waiting job; a worker that
    dies stops sending heartbeats and its job is queued again; each job's records are stored in the study, so the
    tables can be written from any machine.

A job is a dict with a "key"; `run(job)` trains it (resuming its run folder when it can) and returns its records.
"""

from __future__ import annotations

import logging
import multiprocessing
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnistlab.errors import MnistlabError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Queue:
    kind: str  # what the study holds ("domainbed", "continual"): a study made for one is refused by the other
    identity: dict  # the protocol's settings; a study name used again must mean the same protocol
    storage: str
    study: str
    heartbeat: int = 10
    threads: int | None = None
    budget_minutes: float | None = None
    locks: str | None = None  # a folder for the jobs' locks: a job queued again waits there for its first runner


class _NotQueued(Exception):
    """A trial Optuna made because the queue was empty when this worker asked (another took the last job)."""


def open_queue(q: Queue, jobs: list[dict]):
    """The study, every job enqueued once (the first process to get the storage's lock enqueues)."""
    from mnistlab.sweep.study import SweepError, _quiet_optuna, open_storage, storage_lock

    optuna = _quiet_optuna()
    storage = open_storage(q.storage, q.heartbeat)
    study = optuna.create_study(storage=storage, study_name=q.study, direction="maximize", load_if_exists=True)
    attr = f"mnistlab-{q.kind}"
    with storage_lock(q.storage):  # not nested in open_storage's own hold of it
        theirs = study.user_attrs.get(attr)
        if theirs is None and any(k.startswith("mnistlab") for k in study.user_attrs):
            raise SweepError(f"study {q.study!r} was made for something else than a {q.kind} protocol; use another --study name")
        if theirs is None:
            for job in jobs:
                study.enqueue_trial({}, user_attrs={"job": job})
            study.set_user_attr(attr, q.identity)
        elif theirs != q.identity:
            diff = sorted(k for k in set(theirs) | set(q.identity) if theirs.get(k) != q.identity.get(k))
            raise SweepError(f"study {q.study!r} was made for another protocol (its {', '.join(diff)} differ); use "
                             "another --study name or the same settings")
    return study


def work(q: Queue, jobs: list[dict], run: Callable[[dict], list], say: Callable[[str], None]) -> str:
    """One worker: run waiting jobs until none is left (then wait for other workers' last ones, taking over any
    whose worker died) or the budget is spent. Returns why it stopped."""
    from mnistlab.devices import kept_threads

    with kept_threads():
        return _work(q, jobs, run, say)


def _work(q: Queue, jobs: list[dict], run: Callable[[dict], list], say: Callable[[str], None]) -> str:
    from optuna.trial import TrialState

    from mnistlab.sweep.study import _quiet_optuna, optimize_one

    optuna = _quiet_optuna()
    if q.threads:
        import torch

        torch.set_num_threads(q.threads)
    study = open_queue(q, jobs)
    deadline = time.monotonic() + q.budget_minutes * 60 if q.budget_minutes else None

    def objective(trial) -> float:
        job = trial.user_attrs.get("job")
        if job is None:
            raise _NotQueued()
        trial.set_user_attr("host", socket.gethostname())
        say(f"{job['key']}: started")
        t0 = time.perf_counter()
        try:
            with _held(q, job):
                records = run(job)
        except MnistlabError as exc:
            trial.set_user_attr("error", str(exc))
            say(f"{job['key']} failed: {exc}")
            raise
        trial.set_user_attr("records", records)
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        say(f"{job['key']}: done in {time.perf_counter() - t0:.0f} s")
        return float(len(records))

    while True:
        optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        if deadline is not None and time.monotonic() >= deadline:
            return "budget"
        if any(t.state == TrialState.WAITING for t in trials):
            optimize_one(study, objective, (MnistlabError, _NotQueued), say)
        elif any(t.state == TrialState.RUNNING for t in trials):
            time.sleep(max(1.0, q.heartbeat / 2))
        else:
            return "done"


def _held(q: Queue, job: dict):
    """The job's lock, waited for: a job another worker failed as stale (its heartbeats late) and queued again is
    run once that worker is done with it (or dead), and then finds its run folder finished."""
    import contextlib

    from filelock import FileLock

    if q.locks is None:
        return contextlib.nullcontext()
    return FileLock(str(Path(q.locks) / (job["key"].replace("/", "+") + ".lock")))


def _spawned(q: Queue, jobs: list[dict], run, worker: int) -> None:
    logging.basicConfig(level=logging.INFO, format=f"[worker {worker}] %(message)s")
    try:
        work(q, jobs, run, lambda msg: log.info("%s", msg))
    except KeyboardInterrupt:
        pass


def run_workers(q: Queue, jobs: list[dict], run, n: int, say: Callable[[str], None]) -> str:
    """This process and n - 1 spawned ones work the queue (`run` must be picklable: a module's function, or a partial
    of one); why this process stopped."""
    procs = []
    if n > 1:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_spawned, args=(q, jobs, run, w), daemon=False) for w in range(1, n)]
        for proc in procs:
            proc.start()
    try:
        return work(q, jobs, run, say)
    finally:
        for proc in procs:
            proc.join()


def collect(study) -> tuple[list, dict]:
    """The records of every finished job (the last finish of each) and the count of jobs per state."""
    from optuna.trial import TrialState

    done, states = {}, {}
    for t in study.get_trials(deepcopy=False):
        if "job" not in t.user_attrs:
            continue
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        if t.state == TrialState.COMPLETE:
            done[t.user_attrs["job"]["key"]] = (t.user_attrs["records"], t.user_attrs.get("seconds", 0.0))
    return [r for recs, _ in done.values() for r in recs], {"states": states, "runs": len(done),
                                                            "run_seconds": float(sum(s for _, s in done.values()))}
