"""The training loop: data held in memory as tensors, batches sliced from a seeded permutation,
augmentation batched on tensors, a checkpoint after every epoch, and a run folder at the end.

    train -> _open (settings checked, the run folder made or reopened and locked: rank 0)
          -> _train_net: build the net, then per epoch train_one_epoch, evaluate_epoch, save_epoch; then finish

Every source of randomness is re-seeded from (seed, epoch) at the start of each epoch (`epoch_seed`), so a run
resumed from its last checkpoint ends, on CPU, with exactly the metrics of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnistlab.calibration import expected_calibration_error, fit_temperature, nll, probabilities
from mnistlab.config import ON_A_CPU, TrainConfig, resolve_config
from mnistlab.data import get_spec, load_dataset
from mnistlab.data.cache import DatasetCache, data_home
from mnistlab.devices import kept_threads
from mnistlab.errors import InvalidArgument, MnistlabError, RunError, TrainingInterrupted
from mnistlab.models import count_macs, count_params, get_model_info, has_convolutions
from mnistlab.run import DatasetFacts, Run, RunFolder, build_net
from mnistlab.split import Split, split_indices
from mnistlab.training import tensorboard
from mnistlab.training.adversarial import Adversary
from mnistlab.training.augment import Augment, parse_augment
from mnistlab.training.averaging import WeightAverage
from mnistlab.training.batches import epoch_batches
from mnistlab.training.classical import train_classical
from mnistlab.training.curve import Curve
from mnistlab.training.distributed import SINGLE, Processes, all_sum, check_batch, on_main
from mnistlab.training.distributed import start as start_processes
from mnistlab.training.distributed import stop as stop_processes
from mnistlab.training.engine import Engine, resolve_engine
from mnistlab.training.environments import Environments, across_engine, check_environments, train_across
from mnistlab.training.record import final_metrics
from mnistlab.training.schedule import epoch_seed, lr_at
from mnistlab.training.semi import check_semi, labelled_split, train_semi
from mnistlab.training.step import EagerStep, make_optimizer, make_step
from mnistlab.training.tensors import TrainingData, evaluate_net, pixel_stats
from mnistlab.tta import with_tta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """What `train` was asked to do."""

    model: str | None
    dataset: str | None
    out: str | Path | None
    config_file: str | Path | None
    resume: str | Path | None
    data_dir: object
    progress: bool
    settings: dict


def train(model: str | None = None, dataset: str | None = None, *, out: str | Path | None = None,
          config_file: str | Path | None = None, resume: str | Path | None = None, progress: bool = False,
          data_dir=None, on_epoch_end: Callable[[int, dict], None] | None = None, distributed: bool = False,
          **settings) -> Run | None:
    """Train a model on a dataset and return its Run (the run folder holds everything it made).

    >>> run = mnistlab.train(model="cnn", dataset="mnist", epochs=3)
    >>> run.metrics["test_accuracy"]

    Settings are TrainConfig's fields (epochs, batch_size, optimizer, lr, schedule, augment, seed, ...);
    unset ones take the model's defaults. `resume=RUN` continues a stopped run from its last epoch.
    `distributed=True` joins the torchrun process group (see training/distributed.py); only rank 0
    writes the run folder and gets the Run back, the other processes get None.
    """
    job = Job(model, dataset, out, config_file, resume, data_dir, progress, settings)
    procs = start_processes(_requested_device(settings, resume)) if distributed else SINGLE
    try:
        with contextlib.ExitStack() as held, kept_threads():  # rank 0 holds the run folder (and its lock) until training ends
            folder = _shared_folder(held, job, procs)
            if folder.finished:
                return Run(folder.path) if procs.main else None
            try:
                return _train_folder(folder, job, procs, on_epoch_end)
            except KeyboardInterrupt:
                raise TrainingInterrupted(f"interrupted; {folder.path} keeps its last completed epoch: "
                                          f"mnistlab train --resume {folder.path}") from None
    finally:
        stop_processes(procs)


def _requested_device(settings: dict, resume) -> str:
    if settings.get("device"):
        return settings["device"]
    try:  # a resumed run trains where it said; a rank that cannot read the folder assumes "auto"
        return str(Run(resume).config.get("device", "auto")) if resume is not None else "auto"
    except MnistlabError:
        return "auto"


# ------------------------------------------------------------------------------------ the run folder

def _shared_folder(held: contextlib.ExitStack, job: Job, procs: Processes) -> RunFolder:
    """Rank 0 opens the run folder (its lock held in `held`); every other process gets a view of it."""
    shared = on_main(procs, lambda: held.enter_context(_open(job, procs)),
                                 share=lambda f: (str(f.path), f.record(), f.finished))
    return shared if procs.main else RunFolder.view(*shared)


def _open(job: Job, procs: Processes) -> RunFolder:
    """The settings resolved and checked, then the run folder made (or reopened) and locked."""
    if job.resume is not None:
        folder = RunFolder.reopen(job.resume)
        if folder.finished:
            log.info("%s is already complete", folder.path)
            return folder
        with _closed_on_error(folder):
            _check_settings(folder.cfg.validate(), procs)
        return folder
    cfg = resolve_config({**job.settings, "model": job.model, "dataset": job.dataset}, job.config_file)
    spec, device = _check_settings(cfg, procs)
    train_ds = load_dataset(spec, "train", data_dir=job.data_dir, progress=job.progress)
    if spec.environments:
        split = Environments.of(train_ds, cfg).split()
    elif cfg.labels is not None:
        split = labelled_split(np.asarray(train_ds.labels), cfg, spec.num_classes)
    else:
        split = split_indices(train_ds.labels, cfg, spec.num_classes, get_model_info(cfg.model).family == "neural")
    mean, std = pixel_stats(train_ds.images, split.train, device=device)
    meta = DatasetCache(data_home(job.data_dir), spec.name).meta() or {}
    facts = DatasetFacts(list(spec.classes), mean, std, meta.get("content_sha256"), spec.input_shape)
    return RunFolder.create(job.out, cfg, facts, split, world_size=procs.world if procs.active else None)


def _check_same_data(folder: RunFolder, spec, data_dir) -> None:
    """A resumed run goes on with the arrays it started on: a draw generated again (NAME@SEED) by another NumPy or
    PyTorch, or a dataset imported again from other files, would change them under it without a word."""
    recorded = folder.facts.dataset_sha256 or {}
    cached = (DatasetCache(data_home(data_dir), spec.name).meta() or {}).get("content_sha256") or {}
    changed = sorted(k for k in set(recorded) & set(cached) if recorded[k] != cached[k])
    if changed:
        k = changed[0]
        raise RunError(f"{folder.path} started on {spec.name} {k} with sha256 {recorded[k][:16]}..., but the cache now "
                       f"holds {cached[k][:16]}... (generated or imported again since); resume it with the data it "
                       "started on, or train it again")


@contextlib.contextmanager
def _closed_on_error(folder: RunFolder):
    try:
        yield
    except BaseException:
        folder.close()
        raise


def _check_settings(cfg: TrainConfig, procs: Processes):
    """Everything that can be refused before a run folder is made; the dataset's spec and the device a net trains on."""
    spec = get_spec(cfg.dataset)
    family = get_model_info(cfg.model).family
    across = check_environments(cfg, spec)[0]
    if across:
        _check_across(cfg, family, procs)
    check_semi(cfg, spec, family)
    if cfg.labels is not None and procs.active:
        raise InvalidArgument("training from few labels (--labels) runs in one process, not --distributed")
    if family != "neural":
        for given, what in ((not cfg.evaluate_test, "evaluate_test = false is for neural nets (sweep trials)"),
                            (procs.active, "--distributed trains neural nets"),
                            (cfg.tensorboard, "--tensorboard logs the training of neural nets"),
                            (cfg.adversarial != "none", "--adversarial attacks the batches of a neural net's training")):
            if given:
                raise InvalidArgument(f"{what}; {cfg.model!r} is a {family} model")
        return spec, None
    if procs.active:
        check_batch(procs, cfg.batch_size)
    engine = across_engine(cfg) if across else _engine(cfg, procs)  # the engine the run will train with
    device = engine.device  # a device, precision or step this machine cannot run fails here, before the run folder
    _try_net(cfg, spec, device)  # and so does a net that cannot be built, run there, or answers in the wrong shape
    if cfg.tensorboard:
        tensorboard.check_available()
    return spec, device


def _check_across(cfg: TrainConfig, family: str, procs: Processes) -> None:
    """What training across environments does not do (training/environments.py), refused before the run folder."""
    for given, what in ((family != "neural", f"{cfg.model!r} is a {family} model"), (procs.active, "--distributed"),
                        (cfg.augment != "none", "--augment"), (cfg.adversarial != "none", "--adversarial"),
                        (cfg.ema, "--ema"), (cfg.tta != "none", "--tta"),
                        (cfg.step == "cuda-graph", "--step cuda-graph"), (cfg.train_subset is not None, "--train-subset"),
                        (cfg.val_split, "--val-split (use --holdout-fraction)"), (cfg.tensorboard, "--tensorboard"),
                        (cfg.logit_norm is not None, "--logit-norm"), (cfg.init_from, "--init-from")):
        if given:
            raise InvalidArgument(f"training across environments (--algorithm) trains a neural net, eager, with none "
                                  f"of: {what}")


def _try_net(cfg: TrainConfig, spec, device) -> None:
    """Build the net and put one batch of two images through it, forward and backward, on the device it trains on."""
    import torch

    from mnistlab.models.reference import one_line

    net, n = build_net({**cfg.to_dict(), "classes": list(spec.classes), "input_shape": spec.input_shape}), spec.num_classes
    if cfg.freeze == "backbone" and not isinstance(getattr(net, "features", None), torch.nn.Module):
        raise InvalidArgument(f"--freeze backbone keeps a net's .features; model {cfg.model!r} has none (mnistlab's Net has)")
    try:
        logits = net.to(device).train()(torch.rand(2, *spec.input_shape, device=device))
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        if shape != (2, n):
            raise InvalidArgument(f"model {cfg.model!r} answers a batch of 2 images with {shape}; {spec.name} has {n} classes, "
                                  f"so it must return logits of shape (2, {n})")
        logits.float().sum().backward()
    except MnistlabError:
        raise
    except Exception as exc:
        shape = "x".join(map(str, spec.input_shape))
        raise InvalidArgument(f"model {cfg.model!r} fails on a batch of 2 images ({shape}) on {device}: {one_line(exc)}") from None


def _engine(cfg: TrainConfig, procs: Processes) -> Engine:
    import torch

    device = torch.device("cuda", procs.local_rank) if procs.backend == "nccl" else None
    return resolve_engine(cfg.device, cfg.precision, cfg.step, optimizer=cfg.optimizer, distributed=procs.active, device=device)


def _train_folder(folder: RunFolder, job: Job, procs, on_epoch_end) -> Run | None:
    cfg = folder.cfg
    spec = get_spec(cfg.dataset)
    train_ds = load_dataset(spec, "train", data_dir=job.data_dir, progress=job.progress and procs.main)
    _check_same_data(folder, spec, job.data_dir)
    test_ds = load_dataset(spec, "test", data_dir=job.data_dir) if cfg.evaluate_test and "test" in spec.sizes else None
    neural = get_model_info(cfg.model).family == "neural"
    if spec.environments:
        return train_across(folder, train_ds, job.progress, on_epoch_end)
    if cfg.labels is not None:
        return train_semi(folder, train_ds, test_ds, job.progress, on_epoch_end)
    split = on_main(procs, lambda: folder.split(train_ds.labels, neural))
    if not neural:
        return train_classical(folder, train_ds, test_ds, split)
    return _train_net(folder, train_ds, test_ds, split, procs, job.progress and procs.main, on_epoch_end)


# ------------------------------------------------------------------------------------------ the net

@dataclass
class Model:
    """The net being trained and what updates it; `kept` is what is evaluated and saved (the weight average, if any)."""

    net: object
    optimizer: object
    average: WeightAverage | None
    forward: object  # DistributedDataParallel around the net, or None
    channels_last: bool

    @property
    def kept(self):
        return self.average.module if self.average is not None else self.net


@dataclass
class Progress:
    """How far the run has come: restored from its checkpoint, saved in the next one."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    test_logits: np.ndarray | None = None  # the latest epoch's (rank 0; None when the test set is not evaluated)

    @classmethod
    def restore(cls, ckpt: dict | None) -> "Progress":
        if ckpt is None:
            return cls()
        return cls(int(ckpt["epoch"]), list(ckpt["history"]), list(ckpt.get("curve", [])), float(ckpt.get("train_seconds", 0)))


def _build_model(folder: RunFolder, engine: Engine, procs: Processes) -> tuple[Model, dict | None]:
    """The net, fresh, transferred (--init-from) or as its last checkpoint left it, on the device with its optimiser."""
    import torch

    cfg = folder.cfg
    torch.manual_seed(cfg.seed)
    net = build_net(folder.record())
    ckpt = on_main(procs, folder.last_checkpoint)
    if cfg.init_from and ckpt is None:
        on_main(procs, lambda: _init_from(net, cfg.init_from, cfg, len(folder.facts.classes)))
    if cfg.freeze == "backbone":
        for p in net.features.parameters():
            p.requires_grad_(False)
    net.to(engine.device)
    channels_last = has_convolutions(net)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = make_optimizer(cfg.optimizer, [p for p in net.parameters() if p.requires_grad], cfg.lr, cfg.weight_decay, engine)
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        log.info("resuming %s after epoch %d", folder.path, int(ckpt["epoch"]))
    average = WeightAverage(net, cfg.ema) if cfg.ema else None
    if average is not None and ckpt is not None and "average" in ckpt:
        average.load_state_dict(ckpt["average"])
    forward = None
    if procs.active:  # rank 0's weights (fresh, transferred or resumed) are broadcast to every process here
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(net, device_ids=[procs.local_rank] if engine.device.type == "cuda" else None)
    return Model(net, opt, average, forward, channels_last), ckpt


def _init_from(net, source: str | Path, cfg: TrainConfig, num_classes: int):
    """Transfer learning: load another run's weights; a new head when the class count differs."""
    src = Run(source)
    if src.config["model"] != cfg.model:
        raise RunError(f"--init-from {source}: that run is a {src.config['model']!r}, this one a {cfg.model!r}; "
                       f"use --model {src.config['model']} or another run")
    if src.kind != "neural":
        raise RunError(f"--init-from {source}: only neural runs can initialise another run")
    state = {k: v for k, v in src.model.state_dict().items() if not k.startswith("input_")}  # keep this data's mean/std
    if len(src.classes) != num_classes:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    stray = [k for k in missing if not (k.startswith("head.") or k.startswith("input_"))] + list(unexpected)
    if stray:
        raise RunError(f"--init-from {source}: weights do not fit this model ({', '.join(stray[:3])})")
    return sorted({k.split(".")[0] for k in state})


def _set_threads(cfg: TrainConfig, device, procs: Processes) -> None:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif procs.active and device.type == "cpu":  # processes on one machine share its cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // procs.local_world))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN time its kernels once


# ----------------------------------------------------------------------------------------- the loop

@dataclass
class Loop:
    """What every epoch of one run uses."""

    cfg: TrainConfig
    model: Model
    step: EagerStep
    data: TrainingData
    augment: Augment
    curve: Curve
    procs: Processes
    bar: object  # a rich Progress, or None
    board: object  # a TensorBoardLog, or None
    min_batch: int  # batch norm cannot train on one image
    classes: list[str]

    @property
    def steps_per_epoch(self) -> int:
        return (len(self.data.x) + self.cfg.batch_size - 1) // self.cfg.batch_size

    def evaluate(self, x, y, net=None):
        return evaluate_net(net if net is not None else self.model.kept, x, y, self.cfg.eval_batch_size)


def _train_net(folder: RunFolder, train_ds, test_ds, split: Split, procs, progress: bool, on_epoch_end) -> Run | None:
    import torch

    cfg = folder.cfg
    engine = _engine(cfg, procs)
    if engine.device.type == "cpu" and cfg.preset in ON_A_CPU and procs.main:
        log.warning(ON_A_CPU[cfg.preset])
    _set_threads(cfg, engine.device, procs)
    model, ckpt = _build_model(folder, engine, procs)
    done = Progress.restore(ckpt)
    data = TrainingData.load(train_ds, test_ds, split, engine.device, model.channels_last)
    augment = parse_augment(cfg.augment)
    step = make_step(model.net, model.optimizer, engine, batch_size=cfg.batch_size // procs.world,
                     label_smoothing=cfg.label_smoothing, augment=augment, forward=model.forward, average=model.average,
                     adversary=Adversary.from_config(cfg), logit_norm=cfg.logit_norm)
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.net.modules())
    steps = (len(data.x) + cfg.batch_size - 1) // cfg.batch_size
    board = (tensorboard.TensorBoardLog(cfg.tensorboard, folder.facts.classes, len(done.curve))
             if cfg.tensorboard and procs.main else None)
    loop = Loop(cfg, model, step, data, augment, Curve(steps * cfg.epochs, steps, done.curve), procs, _progress_bar(progress),
                board, 2 * procs.world if has_bn else 1, folder.facts.classes)
    with loop.bar or contextlib.nullcontext():
        for epoch in range(done.epoch, cfg.epochs):
            row = train_one_epoch(loop, epoch, done)
            on_main(procs, lambda: _end_epoch(folder, loop, done, row, on_epoch_end))
    if board:
        board.close()
    return finish(folder, loop, done, engine) if procs.main else None


def _end_epoch(folder: RunFolder, loop: Loop, done: Progress, row: dict, on_epoch_end) -> None:
    """Rank 0: evaluate, record, checkpoint."""
    evaluate_epoch(loop, done, row)
    save_epoch(folder, loop, done, row)
    if on_epoch_end:
        on_epoch_end(row["epoch"], row)
    if loop.bar:
        shown = row.get("test_accuracy", row.get("val_accuracy"))
        which = "test" if "test_accuracy" in row else "val"
        loop.bar.update(loop.bar.task_ids[-1], description=f"epoch {row['epoch']}/{loop.cfg.epochs}"
                        + (f" {which} acc {shown:.4f}" if shown is not None else ""))


def _epoch_generators(seed: int, epoch: int, rank: int, device):
    """Seed the epoch: the permutation's generator, shared by all processes; and augmentation's, which draws on
    the data's device: this process's own generator on the CPU (rank 0 goes on with the permutation's, drawing
    what a single process would), the device's default one (seeded here) on an accelerator. Dropout and
    augmentation differ per process."""
    import torch

    torch.manual_seed(epoch_seed(seed, epoch, rank))
    shared = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    if device.type != "cpu":
        return shared, None
    return shared, shared if rank == 0 else torch.Generator().manual_seed(epoch_seed(seed, epoch, rank))


def train_one_epoch(loop: Loop, epoch: int, done: Progress) -> dict:
    """One pass over the training images; its row (loss and accuracy summed over every process, speed)."""
    import torch

    cfg, procs, step, net = loop.cfg, loop.procs, loop.step, loop.model.net
    steps, total = loop.steps_per_epoch, loop.steps_per_epoch * cfg.epochs
    perm_gen, aug_gen = _epoch_generators(cfg.seed, epoch, procs.rank, loop.data.x.device)
    perm = torch.randperm(len(loop.data.x), generator=perm_gen).to(loop.data.x.device)
    net.train()
    if cfg.freeze == "backbone":
        net.features.eval()  # frozen batch-norm statistics too
    step.reset()
    loop.curve.start_epoch()
    t0 = time.perf_counter()
    task = loop.bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps, loss=0.0, acc=0.0, ips=0.0) if loop.bar else None
    for i, xb, yb in epoch_batches(loop.data.x, loop.data.y, perm, cfg.batch_size, loop.augment, aug_gen,
                                   rank=procs.rank, world=procs.world, min_batch=loop.min_batch):
        lr = lr_at(epoch * steps + i, total, cfg.lr, cfg.schedule)
        step(xb, yb, lr, aug_gen)
        loop.curve.record(step, epoch, i, lr)
        if loop.bar and (i % 20 == 0 or i == steps - 1):  # the only reads inside the epoch, for the bar
            seen, loss_sum, correct = step.totals()
            loop.bar.update(task, completed=i + 1, loss=loss_sum / seen, acc=correct / seen,
                            ips=seen / (time.perf_counter() - t0) * procs.world)
    seen, loss_sum, correct = step.totals()  # waits for the device: the epoch's time is real
    seconds = time.perf_counter() - t0
    done.train_seconds += seconds
    loop.curve.end_epoch()
    seen_all, loss_all, correct_all = all_sum(procs, seen, loss_sum, correct)
    return {"epoch": epoch + 1, "train_loss": loss_all / max(seen_all, 1), "train_accuracy": correct_all / max(seen_all, 1),
            "lr": lr, "seconds": seconds, "images_per_second": seen_all / seconds}


def evaluate_epoch(loop: Loop, done: Progress, row: dict) -> None:
    """The epoch's validation and test numbers, on the single image (test-time views would cost several times
    that per epoch), into its row; the test probabilities kept for the end."""
    data = loop.data
    if data.val is not None:
        row["val_loss"], row["val_accuracy"], _ = loop.evaluate(*data.val)
    if data.test is not None:
        t1 = time.perf_counter()
        row["test_loss"], row["test_accuracy"], done.test_logits = loop.evaluate(*data.test)
        row["eval_seconds"] = time.perf_counter() - t1
    done.history.append(row)
    done.epoch = row["epoch"]
    if loop.board:
        loop.board.epoch(row, loop.curve.points, None if done.test_logits is None else probabilities(done.test_logits),
                         data.test_labels)


def save_epoch(folder: RunFolder, loop: Loop, done: Progress, row: dict) -> None:
    """The epoch's rows and curve, and a checkpoint to resume from."""
    average = loop.model.average
    folder.save_epoch(done.history, loop.curve.points, {
        "model": _cpu_state(loop.model.net), "optimizer": loop.step.optimizer_state(), "epoch": row["epoch"],
        "history": done.history, "curve": loop.curve.points, "train_seconds": done.train_seconds,
        **({"average": average.state_dict()} if average is not None else {})})


def _cpu_state(net) -> dict:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}


def _progress_bar(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.4f}  {task.fields[ips]:,.0f} img/s"),
                    TimeRemainingColumn(), transient=False)


# ---------------------------------------------------------------------------------------- the end

def finish(folder: RunFolder, loop: Loop, done: Progress, engine: Engine) -> Run:
    """The net as it predicts (test-time views included) on the test set, its temperature fitted on the held-out
    images, and the final files."""
    kept, data = loop.model.kept, loop.data
    predictor = with_tta(kept, loop.cfg.tta)
    test_logits, final = done.test_logits, {}
    if data.test is not None and (test_logits is None or predictor is not kept):
        # with test-time views, or resumed after the last epoch but before the final files
        final["test_loss"], final["test_accuracy"], test_logits = loop.evaluate(*data.test, predictor)
    calibration = {"temperature": 1.0}
    if data.calibration is not None:
        _, _, cal_logits = loop.evaluate(*data.calibration_tensors(engine.device), predictor)
        calibration = calibrate(cal_logits, data.calibration[1], test_logits, data.test_labels)
    test_probs = None if test_logits is None else probabilities(test_logits, calibration["temperature"])
    folder.save_weights(_cpu_state(kept))
    if test_probs is not None:
        folder.save_test_probs(test_probs)
    final |= {"temperature": calibration["temperature"], "calibration": calibration}
    return folder.save_metrics(final_metrics(folder, _final_numbers(loop, done, engine, final, test_probs), engine.device))


def calibrate(cal_logits: np.ndarray, cal_labels: np.ndarray, test_logits: np.ndarray | None, test_labels) -> dict:
    """Fit the temperature on the held-out images' logits; the accuracy, the expected calibration error and NLL
    before and after, on them (what compares recipes without the test set) and (reported only, never used to fit)
    on the test set."""
    temperature = fit_temperature(cal_logits, cal_labels)
    out = {"temperature": temperature, "images": int(len(cal_labels))}
    for name, logits, labels in (("held_out", cal_logits, cal_labels), ("test", test_logits, test_labels)):
        if logits is None:
            continue
        probs, after = probabilities(logits), probabilities(logits, temperature)
        out[name] = {"accuracy": float((probs.argmax(1) == labels).mean()),
                     "ece_before": expected_calibration_error(probs, labels)[0], "ece_after": expected_calibration_error(after, labels)[0],
                     "nll_before": nll(probs, labels), "nll_after": nll(after, labels)}
    return out


def _final_numbers(loop: Loop, done: Progress, engine: Engine, final: dict, test_probs) -> dict:
    """`final`: the calibration, and the test accuracy and loss of the net as it predicts where they differ from the
    last epoch's (test-time augmentation), which stays in the metrics as the single view's."""
    import torch

    cfg, history, procs = loop.cfg, done.history, loop.procs
    last = history[-1]
    if cfg.tta != "none" and "test_accuracy" in last:
        final["test_accuracy_single_view"] = last["test_accuracy"]
    cpu_net = build_net({**cfg.to_dict(), "classes": loop.classes})
    tested = [r["test_accuracy"] for r in history if "test_accuracy" in r]
    speed = len(test_probs) / last["eval_seconds"] if last.get("eval_seconds") and test_probs is not None else None
    return {"test_accuracy": last.get("test_accuracy"), "test_loss": last.get("test_loss"), **final,
            "train_seconds": done.train_seconds, "eval_seconds": sum(r.get("eval_seconds", 0) for r in history),
            "test_images_per_second": speed, "params": count_params(cpu_net), "macs": count_macs(cpu_net),
            **engine.describe(), "threads": torch.get_num_threads(), "best_test_accuracy": max(tested) if tested else None,
            "train_images": len(loop.data.x), **({"world_size": procs.world, "backend": procs.backend} if procs.active else {}),
            **({"val_accuracy": last["val_accuracy"]} if "val_accuracy" in last else {})}
