"""Hyperparameter sweeps on an Optuna study.

Every trial is an ordinary run folder under `<sweep>/trials/`; its objective is the accuracy on a
held-out part of the training set (the test set is never evaluated during a sweep); a trial that
falls behind the median of earlier ones at the same epoch is pruned. Any number of `mnistlab sweep`
processes, here (`--jobs`) or on other machines, pointed at one storage and study name share the
work: trial numbers come from the storage, each process takes the next free one, and a worker that
dies mid-trial stops sending heartbeats, so another marks that trial failed and runs its settings
again (resuming its run folder when it can see it). At the end the best settings are retrained on
the whole training set and evaluated once on the test set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mnistlab.errors import InvalidArgument, MnistlabError, TrainingInterrupted
from mnistlab.fileio import ensure_dir
from mnistlab.sweep.space import SearchSpace, default_space, load_space
from mnistlab.sweep.urls import safe_url

log = logging.getLogger(__name__)

RETRIES = 2  # how often the settings of a trial whose worker died are tried again
SCHEMA_RACE_TRIES = 5  # opening a new database on a backend mnistlab has no lock for (see _schema_lock)


class SweepError(MnistlabError):
    """A study that cannot be opened, created or continued."""


class _Surplus(Exception):
    """A trial created after the requested number was reached (two workers raced for the last one)."""


@dataclass(frozen=True)
class SweepPlan:
    model: str
    dataset: str
    trials: int  # trials the study should finish, all workers together
    space: SearchSpace
    study: str
    storage: str
    out: Path
    val_split: int = 10_000  # training images held out as the objective's validation set
    seed: int = 0  # the training seed of every trial, so trials differ only in their settings
    budget_minutes: float | None = None  # stop starting trials after this long (per process)
    jobs: int = 1  # worker processes on this machine
    threads: int | None = None  # PyTorch threads per worker (default: the cores shared among the jobs)
    final_threads: int | None = None  # PyTorch threads for the final retraining (run_sweep: PyTorch's default)
    final: bool = True  # retrain the best settings on the whole training set and test once
    final_epochs: int | None = None  # epochs for that retraining (default: the trials' own)
    heartbeat: int = 10  # seconds between a running trial's heartbeats; silent for 3x this = dead
    data_dir: str | None = None
    extra: dict = field(default_factory=dict)  # settings for every trial that the CLI adds (e.g. device)


def _quiet_optuna():
    """mnistlab says what happens in one line each; Optuna's own notes (experimental features, a new
    study created) are not the user's business."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def open_storage(url: str, heartbeat: int = 10):
    """An Optuna RDB storage (SQLite, PostgreSQL, MySQL...) with heartbeats and retry of dead trials.

    Opening a storage creates Optuna's tables when they are missing; two processes that do that at
    once both create them and the slower one fails. So opening is serialised per database
    (`_schema_lock`): any number of processes, on any number of machines, may open a new storage
    together."""
    import sqlalchemy.exc

    optuna = _quiet_optuna()

    given = url
    url, kwargs = _engine_args(url)

    def make():
        return optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=RETRIES, inherit_intermediate_values=True))

    try:
        with _schema_lock(url, kwargs):
            for attempt in range(SCHEMA_RACE_TRIES):
                try:
                    return make()
                except sqlalchemy.exc.IntegrityError:
                    # only a backend without a lock of its own (see _schema_lock) gets here: the
                    # other process's tables are there now, so open again
                    if attempt + 1 == SCHEMA_RACE_TRIES:
                        raise
                    time.sleep(0.2 * (attempt + 1))
    except ImportError as exc:
        missing = getattr(exc.__cause__, "name", None) or getattr(exc, "name", None) or "its database driver"
        extra = " (pip install 'mnistlab[postgres]')" if "postgres" in url else ""
        raise SweepError(f"study storage {safe_url(given)} needs the Python package {missing!r}{extra}") from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ValueError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise SweepError(f"cannot open study storage {safe_url(given)}: {reason}; check the URL and that the "
                         "database server is running and reachable") from None


def _engine_args(url: str) -> tuple[str, dict]:
    """The SQLAlchemy URL and engine arguments mnistlab opens a storage URL with."""
    kwargs = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 120}  # several processes on one file wait for its lock
    elif url.startswith(("postgresql", "postgres:")):
        kwargs["connect_args"] = {"connect_timeout": 10}
        # the driver mnistlab[postgres] installs (psycopg 3), whatever SQLAlchemy's default for the bare scheme
        url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)
    return url, kwargs


@contextlib.contextmanager
def storage_lock(url: str):
    """Hold the lock every process opening the storage at `url` takes (see _schema_lock): for work that must be done
    once per study, such as filling a queue."""
    with _schema_lock(*_engine_args(url)):
        yield


# One number for "mnistlab is creating Optuna's tables" in PostgreSQL's advisory-lock space
SCHEMA_LOCK_KEY = zlib.crc32(b"mnistlab: optuna schema creation")
SCHEMA_LOCK_SECONDS = 600
# backend -> (take the lock, give it back, their parameters): session-level locks, held until given back
# or until the connection closes (so a process that dies holding one frees it)
_DATABASE_LOCKS = {
    "postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)", {"key": SCHEMA_LOCK_KEY}),
    "mysql": ("SELECT GET_LOCK(:name, :seconds)", "SELECT RELEASE_LOCK(:name)",
              {"name": f"mnistlab-{SCHEMA_LOCK_KEY}", "seconds": SCHEMA_LOCK_SECONDS}),
}


@contextlib.contextmanager
def _schema_lock(url: str, engine_kwargs: dict):
    """Hold, while a storage is opened, a lock that every process opening the same database takes:
    a file lock beside an SQLite file, an advisory lock on PostgreSQL, a named lock on MySQL. Other
    backends go unlocked (open_storage retries their integrity errors instead)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
        with _file_lock(Path(parsed.database).expanduser()):
            yield
    elif backend in _DATABASE_LOCKS:
        with _database_lock(url, engine_kwargs, *_DATABASE_LOCKS[backend]):
            yield
    else:
        yield


@contextlib.contextmanager
def _file_lock(database: Path):
    from filelock import FileLock, Timeout

    lock = FileLock(f"{database}.lock", timeout=SCHEMA_LOCK_SECONDS)
    try:
        lock.acquire()
    except Timeout:
        raise SweepError(f"{database} has been locked by another process for {SCHEMA_LOCK_SECONDS} s; "
                         f"if no sweep is running, delete {database}.lock") from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _database_lock(url: str, engine_kwargs: dict, take: str, give: str, params: dict):
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, connect_args=engine_kwargs.get("connect_args", {}), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text(take), params)
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text(give), params)
                conn.commit()
    finally:
        engine.dispose()


def _identity(plan: SweepPlan) -> dict:
    """What a study is for; a study name used again must mean the same sweep."""
    return json.loads(json.dumps({"model": plan.model, "dataset": plan.dataset, "space": plan.space.to_dict(),
                                  "val_split": plan.val_split, "seed": plan.seed, **({"extra": plan.extra} if plan.extra else {})}))


def open_study(plan: SweepPlan):
    optuna = _quiet_optuna()
    storage = open_storage(plan.storage, plan.heartbeat)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=min(5, max(2, plan.trials // 4)), n_warmup_steps=1)
    try:
        study = optuna.create_study(storage=storage, study_name=plan.study, direction="maximize", load_if_exists=True,
                                    sampler=optuna.samplers.TPESampler(), pruner=pruner)
    except Exception as exc:  # the storage answered at connect time but fails on use
        if isinstance(exc, MnistlabError):
            raise
        raise SweepError(f"cannot create or load study {plan.study!r} in {safe_url(plan.storage)}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
    mine = _identity(plan)
    theirs = study.user_attrs.get("mnistlab")
    if theirs is None:
        study.set_user_attr("mnistlab", mine)
        theirs = optuna.load_study(study_name=plan.study, storage=storage).user_attrs.get("mnistlab")
    if theirs != mine:
        diff = sorted(k for k in set(mine) | set(theirs or {}) if (theirs or {}).get(k) != mine.get(k))
        raise SweepError(f"study {plan.study!r} in {safe_url(plan.storage)} was made for another sweep (its "
                         f"{', '.join(diff)} differ); use another --study name, or the same model, dataset and space")
    return study


def _takes_slot(t) -> bool:
    """Whether a trial counts toward the requested number: finished, pruned, running, waiting, or
    failed by an error in its settings. A trial whose worker died does not: its retry does."""
    from optuna.trial import TrialState

    if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
        return True
    return t.state == TrialState.FAIL and "error" in t.user_attrs


def trial_dir(plan: SweepPlan, number: int) -> Path:
    return plan.out / "trials" / f"trial-{number:04d}"


def _objective(plan: SweepPlan, study, say: Callable[[str], None]):
    import optuna

    from mnistlab.run.files import wait_for_run
    from mnistlab.training import train

    def objective(trial) -> float:
        trials = study.get_trials(deepcopy=False)
        earlier = sum(1 for t in trials if t.number < trial.number and _takes_slot(t))
        if earlier >= plan.trials:
            trial.set_user_attr("surplus", True)
            raise _Surplus(f"trial {trial.number} is beyond the {plan.trials} requested")
        values = {p.name: p.suggest(trial) for p in plan.space.params}
        settings = {**plan.space.settings(values), **plan.extra}
        out, resume = trial_dir(plan, trial.number), None
        me = next(t for t in trials if t.number == trial.number)
        if "failed_trial" in me.system_attrs:  # a retry: user attrs are the dead trial's
            previous = Path(me.user_attrs.get("run", ""))
            if me.user_attrs.get("host") == socket.gethostname() and (previous / "checkpoint.pt").exists():
                resume = previous  # the dead worker's last completed epoch, on this machine
        trial.set_user_attr("run", str(resume or out))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())

        def report(epoch: int, row: dict) -> None:
            trial.report(row["val_accuracy"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"val accuracy {row['val_accuracy']:.4f} after epoch {epoch}")

        say(f"trial {trial.number}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
            + (f" (again, resuming {resume.name})" if resume else ""))
        t0 = time.perf_counter()
        try:
            if resume is not None:
                wait_for_run(resume)  # a worker late with its heartbeats may still be training it (a finished run
                run = train(resume=resume, on_epoch_end=report, data_dir=plan.data_dir)  # is read back, not retrained)
            else:
                run = train(plan.model, plan.dataset, out=out, on_epoch_end=report, data_dir=plan.data_dir,
                            seed=plan.seed, threads=plan.threads, evaluate_test=False, **_held_out(plan, settings))
        except optuna.TrialPruned as exc:
            say(f"trial {trial.number} pruned: {exc}, below the median of earlier trials")
            raise
        except TrainingInterrupted:
            raise KeyboardInterrupt from None  # Ctrl-C: the trial fails without taking a slot, the worker stops
        except MnistlabError as exc:
            trial.set_user_attr("error", str(exc))
            say(f"trial {trial.number} failed: {exc}")
            raise
        trial.set_user_attr("seconds", time.perf_counter() - t0)
        acc = float(run.metrics["val_accuracy"])
        say(f"trial {trial.number}: val accuracy {acc:.4f} ({time.perf_counter() - t0:.0f} s)")
        return acc

    return objective


def _held_out(plan: SweepPlan, settings: dict) -> dict:
    """A trial's settings with the images its objective is judged on held out: --val-split training images, or, on
    a dataset of environments, a fifth of each (DomainBed's training-domain validation) unless the space fixes it."""
    from mnistlab.data import get_spec

    if get_spec(plan.dataset).environments:
        return {"holdout_fraction": 0.2, **settings}
    return {"val_split": plan.val_split, **settings}


def work(plan: SweepPlan, worker: int = 0, say: Callable[[str], None] | None = None) -> str:
    """One worker: take trials until the study has its number (then wait for the others' last trials,
    taking over any whose worker died), or until the budget is spent. Returns why it stopped. The thread count
    it sets (`threads`) is the process's again afterwards."""
    from mnistlab.devices import kept_threads

    with kept_threads():
        return _work(plan, say)


def optimize_one(study, objective, catch: tuple, say: Callable[[str], None]) -> None:
    """`study.optimize` for one trial, where a trial that another worker failed as stale meanwhile is no error: a
    worker whose heartbeats come late (a loaded machine) finds, when it reports, its trial failed and queued again;
    its work is not lost, since the retry waits for the run folder's lock and reuses the finished run."""
    import optuna
    from optuna.trial import TrialState

    taken: dict = {}

    def tracked(trial):
        taken["trial"] = trial
        try:
            value = objective(trial)
        except (*catch, optuna.TrialPruned, optuna.exceptions.UpdateFinishedTrialError):  # the last: failed meanwhile
            taken["ended"] = True
            raise
        taken["ended"] = True
        return value

    try:
        study.optimize(tracked, n_trials=1, catch=catch)
    except ValueError:  # optuna's tell refuses a trial that is no longer running
        trial = taken.get("trial")
        running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        if not taken.get("ended") or trial.number in running:
            raise
        say(f"trial {trial.number} was failed as stale by another worker (this one's heartbeats came late) and "
            "queued again; the retry reuses its run")


def _work(plan: SweepPlan, say: Callable[[str], None] | None) -> str:
    from optuna.trial import TrialState

    optuna = _quiet_optuna()
    say = say or (lambda msg: log.info("%s", msg))
    if plan.threads:
        import torch

        torch.set_num_threads(plan.threads)
    study = open_study(plan)
    objective = _objective(plan, study, say)
    deadline = time.monotonic() + plan.budget_minutes * 60 if plan.budget_minutes else None
    while True:
        optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials) or sum(map(_takes_slot, trials)) < plan.trials:
            if deadline is not None and time.monotonic() >= deadline:
                return "budget"
            optimize_one(study, objective, (MnistlabError, _Surplus), say)
            continue
        if any(t.state == TrialState.RUNNING for t in trials):
            if deadline is not None and time.monotonic() >= deadline:
                return "budget"
            time.sleep(max(1.0, plan.heartbeat / 2))  # another worker's trial: wait, or take over if it dies
            continue
        return "done"


def _spawned_worker(plan: SweepPlan, worker: int) -> None:
    logging.basicConfig(level=logging.INFO, format=f"[worker {worker}] %(message)s")
    try:
        work(plan, worker)
    except KeyboardInterrupt:
        pass


def run_sweep(model: str, dataset: str = "mnist", trials: int = 20, *, space: SearchSpace | str | Path | None = None,
              storage: str | None = None, study: str | None = None, out: str | Path | None = None,
              budget_minutes: float | None = None, jobs: int = 1, val_split: int = 10_000, seed: int = 0,
              threads: int | None = None, final: bool = True, final_epochs: int | None = None, heartbeat: int = 10,
              data_dir=None, extra: dict | None = None, say: Callable[[str], None] | None = None) -> dict:
    """Run (or join) a sweep and, when the study is complete, retrain its best settings and report.

    >>> summary = mnistlab.sweep.run_sweep("cnn", "mnist", trials=20, space="space.toml")
    >>> summary["best"]["params"], summary["final"]["test_accuracy"]

    Returns the summary also written to `<out>/sweep.json`.
    """
    from mnistlab.data import get_spec, load_dataset

    say = say or (lambda msg: log.info("%s", msg))
    for name, value, low in (("trials", trials, 1), ("jobs", jobs, 1), ("val split", val_split, 1), ("heartbeat", heartbeat, 1)):
        if not isinstance(value, int) or value < low:
            raise InvalidArgument(f"{name} must be a whole number >= {low}, got {value!r}")
    if budget_minutes is not None and budget_minutes <= 0:
        raise InvalidArgument(f"budget must be > 0 minutes, got {budget_minutes!r}")
    if final_epochs is not None and final_epochs < 1:
        raise InvalidArgument(f"final epochs must be >= 1, got {final_epochs!r}")
    spec = get_spec(dataset)
    from mnistlab.models import get_model_info
    from mnistlab.models.reference import label

    model = get_model_info(model).name  # a model of your own by its full reference, for workers started anywhere
    space = default_space(model) if space is None else space if isinstance(space, SearchSpace) else load_space(space)
    _check_settings(model, spec.name, space, extra or {})
    study = study or f"{label(model)}-{spec.name}"
    out = Path(out) if out else Path("sweeps") / study
    ensure_dir(out / "trials", "pass --out to a writable folder")
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    import torch

    worker_threads = threads or (max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None)
    plan = SweepPlan(model, spec.name, trials, space, study, storage, out, val_split, seed, budget_minutes, jobs,
                     worker_threads, threads or torch.get_num_threads(), final, final_epochs, heartbeat, str(data_dir) if data_dir else None,
                     dict(extra or {}))
    open_study(plan)  # a bad URL, an unreachable server or a reused name fails here, before any work
    load_dataset(spec, "train", data_dir=data_dir)  # fetched once, before the workers start
    say(f"study {study!r} in {safe_url(storage)}: {trials} trials of {model} on {spec.name}; trial runs in {out / 'trials'}")
    procs = []
    if jobs > 1:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_spawned_worker, args=(plan, w), daemon=False) for w in range(1, jobs)]
        for p in procs:
            p.start()
    try:
        why = work(plan, 0, say)
    finally:
        for p in procs:
            p.join()
    return finish(plan, why, say)


def _check_settings(model: str, dataset: str, space: SearchSpace, extra: dict) -> None:
    """Resolve one trial's config (each range's low end, each list's first choice) and build its
    model, so a setting no trial could use fails now, in one line, rather than in every trial."""
    from mnistlab.data import get_spec
    from mnistlab.models import create_model
    from mnistlab.training import resolve_config

    probe = {p.name: p.choices[0] if p.choices else p.low for p in space.params}
    spec = get_spec(dataset)
    if spec.environments:
        from mnistlab.training.environments import check_environments

        cfg = resolve_config({**space.settings(probe), **extra, "model": model, "dataset": dataset})
        check_environments(cfg, spec)  # a missing or unknown test environment, in one line
        if "holdout_fraction" in space.fixed and not space.fixed["holdout_fraction"]:
            raise InvalidArgument(f"a sweep on {spec.name} judges its trials on a held-out part of each training "
                                  "environment: holdout_fraction must be > 0 (default 0.2)")
    else:
        cfg = resolve_config({**space.settings(probe), **extra, "model": model, "dataset": dataset, "val_split": 1})
    kwargs = dict(cfg.model_args or {})
    if cfg.dropout is not None:
        kwargs["dropout"] = cfg.dropout
    create_model(cfg.model, num_classes=get_spec(dataset).num_classes, **kwargs)


def finish(plan: SweepPlan, why: str, say: Callable[[str], None]) -> dict:
    """After this worker stops: the study summary, and (once the study is complete) the best settings
    retrained on the whole training set, evaluated on the test set, with a report of the study."""
    from filelock import FileLock
    from optuna.trial import TrialState

    from mnistlab.sweep.report import write_study_report

    study = open_study(plan)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    unfinished = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    if not complete:
        raise SweepError(f"no trial of study {plan.study!r} has finished yet ({len(trials)} started); "
                         "run mnistlab sweep again to continue")
    best = study.best_trial
    final_run = None
    if plan.final and not unfinished:
        settings = {**plan.space.settings(best.params), **plan.extra}
        settings.pop("train_subset", None)  # trials may tune on a subset; the winner learns from every image
        if plan.final_epochs:
            settings["epochs"] = plan.final_epochs
        best_dir = plan.out / f"best-trial-{best.number:04d}"
        with FileLock(str(plan.out / "final.lock")):  # one process of this machine retrains; the others reuse it
            from mnistlab.training import Run, train

            if (best_dir / "metrics.json").exists():
                final_run = Run(best_dir)
            elif (best_dir / "checkpoint.pt").exists():
                say(f"resuming the retraining of trial {best.number}'s settings in {best_dir}")
                final_run = train(resume=best_dir, data_dir=plan.data_dir)
            else:
                shutil.rmtree(best_dir, ignore_errors=True)  # a retraining that died before its first epoch
                say(f"retraining trial {best.number}'s settings on the whole training set -> {best_dir}")
                final_run = train(plan.model, plan.dataset, out=best_dir, data_dir=plan.data_dir, seed=plan.seed,
                                  threads=plan.final_threads, **settings)
        with contextlib.suppress(MnistlabError):
            from mnistlab.report import build_report

            build_report(final_run, data_dir=plan.data_dir)
    elif plan.final:
        say(f"{len(unfinished)} trial(s) still running or waiting in other workers; the last one to finish retrains the best")
    summary = write_study_report(plan, study, final_run, why)
    return summary

