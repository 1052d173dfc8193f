"""The training loop: data held in memory as tensors, batches sliced from a seeded permutation,
augmentation batched on tensors, a checkpoint after every epoch, and a run folder at the end.

Every source of randomness is re-seeded from (seed, epoch) at the start of each epoch, so a run
resumed from its last checkpoint ends, on CPU, with exactly the metrics of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from mnistlab.calibration import apply_temperature, expected_calibration_error, fit_temperature, nll
from mnistlab.data import get_spec, load_dataset
from mnistlab.data.cache import DatasetCache, data_home
from mnistlab.errors import InvalidArgument, MnistlabError, RunError, TrainingInterrupted
from mnistlab.models import count_macs, count_params, create_model, get_model_info
from mnistlab.training import distributed as dist
from mnistlab.training import tensorboard
from mnistlab.training.augment import parse_augment
from mnistlab.training.averaging import WeightAverage
from mnistlab.training.batches import epoch_batches
from mnistlab.training.config import ON_A_CPU, TrainConfig, resolve_config
from mnistlab.training.curve import Curve
from mnistlab.training.engine import Engine, hardware_name, resolve_engine
from mnistlab.run import (Run, append_jsonl, build_net, classical_proba, load_checkpoint, new_run_dir, run_lock,
                          save_torch, write_json)
from mnistlab.training.schedule import lr_at
from mnistlab.training.step import make_optimizer, make_step
from mnistlab.tta import with_tta

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------- data

MIN_CALIBRATION_IMAGES = 100  # fewer held-out images than this fit no temperature worth having


def split_indices(labels: np.ndarray, cfg: TrainConfig, num_classes: int,
                  neural: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training, validation and calibration indices: a seeded hold-out of `val_split` images; for a net
    without one, a seeded hold-out of `calibration_split` images (at most a tenth of the set) to fit its
    temperature on (with one, the validation images serve); then an optional class-balanced subset of
    `train_subset` images (for the low-data case)."""
    n = len(labels)
    if cfg.val_split >= n:
        raise InvalidArgument(f"val split {cfg.val_split} must be smaller than the training set ({n} images)")
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(n)
    val = np.sort(order[:cfg.val_split])
    calib_n = min(cfg.calibration_split, (n - cfg.val_split) // 10) if neural and not cfg.val_split else 0
    calib_n = calib_n if calib_n >= MIN_CALIBRATION_IMAGES else 0
    calib = np.sort(order[cfg.val_split:cfg.val_split + calib_n])
    train = order[cfg.val_split + calib_n:]
    if cfg.train_subset is not None:
        if cfg.train_subset > len(train):
            raise InvalidArgument(f"train subset {cfg.train_subset} is larger than the {len(train)} training images left")
        per_class = [train[labels[train] == c] for c in range(num_classes)]
        quota = np.full(num_classes, cfg.train_subset // num_classes)
        quota[: cfg.train_subset % num_classes] += 1
        train = np.concatenate([idx[:q] for idx, q in zip(per_class, quota)])
    if neural and cfg.calibration_split and len(val) >= MIN_CALIBRATION_IMAGES:
        calib = val
    return np.sort(train), val, calib


def held_out_indices(run_config: dict, labels: np.ndarray, num_classes: int, neural: bool = True) -> np.ndarray:
    """The training images a finished run never trained on, by index: its validation split, or else the images
    it held out to fit its temperature on (the same images for every run of the same seed and sizes)."""
    _, val, calib = split_indices(labels, _config_of(run_config), num_classes, neural)
    return val if len(val) else calib


def _every_row(idx: np.ndarray, n: int) -> bool:
    """Whether sorted unique indices `idx` are all n rows in order."""
    return len(idx) == n and (n == 0 or idx[-1] == n - 1)


def _take(array: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """array[idx], without the copy when idx is every row in order (the usual case)."""
    return array if _every_row(idx, len(array)) else array[idx]


def pixel_stats(images: np.ndarray, idx: np.ndarray | None = None, *, chunk: int = 4096, device=None) -> tuple[float, float]:
    """Mean and std of the uint8 pixels of rows `idx` (default all), scaled to [0, 1], in float64: on a CUDA
    `device` in one reduction there (the pixels cross as uint8 and are selected there), else on the host in
    chunks (no full-size float copy)."""
    if device is not None and device.type == "cuda":
        x = _on_device(_uint8_tensor(images), idx, device).double()
        total, sq, n = float(x.sum()), float((x * x).sum()), x.numel()
        mean = total / max(n, 1) / 255
        return mean, float(np.sqrt(max(sq / max(n, 1) / 255**2 - mean**2, 1e-12)))
    images = images if idx is None else _take(images, idx)
    total, sq, n = 0.0, 0.0, 0
    for i in range(0, len(images), chunk):
        x = np.asarray(images[i:i + chunk], dtype=np.float64).reshape(-1)
        total += float(x.sum(dtype=np.float64))
        sq += float(np.dot(x, x))
        n += x.size
    mean = total / max(n, 1) / 255
    return mean, float(np.sqrt(max(sq / max(n, 1) / 255**2 - mean**2, 1e-12)))


def _uint8_tensor(images: np.ndarray):
    """A tensor over uint8 images without a host copy (the cache's read-only maps included: it is only read)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))


def _tensors(images: np.ndarray, labels: np.ndarray, device, idx: np.ndarray | None = None):
    """Rows `idx` (default all) as float images in [0, 1] (N, 1, H, W) and int64 labels on `device`. The pixels
    cross to the device as uint8, a quarter of float32's bytes, and are selected and converted there."""
    import torch

    x = _on_device(_uint8_tensor(images), idx, device)  # only read: selecting and converting make new tensors
    y = _on_device(torch.from_numpy(np.array(labels, dtype=np.int64)), idx, device)  # a copy: the cache maps are read-only
    return x.unsqueeze(1).float().div_(255), y


def _on_device(t, idx: np.ndarray | None, device):
    """t's rows `idx` (default all) on `device`, selected there: the whole array crosses once, in one copy."""
    import torch

    t = t.to(device)
    if idx is None or _every_row(idx, len(t)):
        return t
    return t[torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(device)]


# --------------------------------------------------------------------------------------- models

def _init_from(net, source: str | Path, cfg: TrainConfig, num_classes: int):
    """Transfer learning: load another run's weights; a new head when the class count differs."""
    src = Run(source)
    if src.config["model"] != cfg.model:
        raise RunError(f"--init-from {source}: that run is a {src.config['model']!r}, this one a {cfg.model!r}; "
                       f"use --model {src.config['model']} or another run")
    if src.family != "neural":
        raise RunError(f"--init-from {source}: only neural runs can initialise another run")
    state = {k: v for k, v in src.model.state_dict().items() if not k.startswith("input_")}  # keep this data's mean/std
    if len(src.classes) != num_classes:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    stray = [k for k in missing if not (k.startswith("head.") or k.startswith("input_"))] + list(unexpected)
    if stray:
        raise RunError(f"--init-from {source}: weights do not fit this model ({', '.join(stray[:3])})")
    return sorted({k.split(".")[0] for k in state})


def evaluate_net(net, x, y, batch_size: int) -> tuple[float, float, np.ndarray]:
    """Mean cross-entropy, accuracy and float32 probabilities over (x, y); one wait for the device, at the end.

    In fp32 whatever the training's precision: the numbers are those of the saved weights, as
    `Run.predict`, the server and the exports compute them."""
    import torch
    import torch.nn.functional as F

    net.eval()
    if len(x) == 0:
        return 0.0, float("nan"), np.zeros((0, 0), np.float32)
    loss, probs = torch.zeros((), device=x.device, dtype=torch.float64), []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            logits = net(x[i:i + batch_size]).float()
            loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum")
            probs.append(torch.softmax(logits, 1))
        p = torch.cat(probs).cpu().numpy()
    acc = float((p.argmax(1) == y.cpu().numpy()).mean())
    return float(loss) / len(x), acc, p


# -------------------------------------------------------------------------------------- training

def _versions() -> dict:
    """Versions of what the run used, read from the installed packages' metadata (importing scikit-learn
    just to ask would cost a second and a half)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    v = {"mnistlab": __import__("mnistlab").__version__, "python": platform.python_version(), "numpy": np.__version__,
         "torch": torch.__version__}
    try:
        v["scikit-learn"] = version("scikit-learn")
    except PackageNotFoundError:
        pass
    return v


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.4f}  {task.fields[ips]:,.0f} img/s"),
                    TimeRemainingColumn(), transient=False)


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
    d = dist.start(_requested_device(settings, resume)) if distributed else dist.SINGLE
    try:
        return _train(d, model, dataset, out, config_file, resume, progress, data_dir, on_epoch_end, settings)
    finally:
        dist.stop(d)


def _requested_device(settings: dict, resume) -> str:
    if settings.get("device"):
        return settings["device"]
    try:  # a resumed run trains where it said; a rank that cannot read the folder assumes "auto"
        return str(Run(resume).config.get("device", "auto")) if resume is not None else "auto"
    except MnistlabError:
        return "auto"


def _config_of(cfg_dict: dict) -> TrainConfig:
    """The TrainConfig inside a run's config.json (which also holds classes, input statistics, ...). A run
    written before calibration existed held no images out for it, and resumes that way."""
    return TrainConfig(**{"calibration_split": 0,
                          **{k: v for k, v in cfg_dict.items() if k in TrainConfig.__dataclass_fields__}})


def _train(d: dist.Dist, model, dataset, out, config_file, resume, progress, data_dir, on_epoch_end, settings):
    with contextlib.ExitStack() as held:  # rank 0 holds the run folder's lock until training ends
        return _train_locked(held, d, model, dataset, out, config_file, resume, progress, data_dir, on_epoch_end, settings)


def _train_locked(held: contextlib.ExitStack, d: dist.Dist, model, dataset, out, config_file, resume, progress, data_dir,
                  on_epoch_end, settings):
    def prepare() -> tuple[dict, str, bool]:
        """Resolve and check the config, make and lock the run folder: rank 0 only, shared with the rest."""
        if resume is not None:
            run_dir = Path(resume)
            cfg_dict = Run(run_dir).config
            held.enter_context(run_lock(run_dir))  # before its checkpoint or metrics are looked at
            cfg = _config_of(cfg_dict).validate()
            if (run_dir / "metrics.json").exists():
                log.info("%s is already complete", run_dir)
                return cfg_dict, str(run_dir), True
        else:
            cfg = resolve_config({**settings, "model": model, "dataset": dataset}, config_file)
        spec = get_spec(cfg.dataset)
        if spec.image_shape != (28, 28):
            raise InvalidArgument(f"model {cfg.model!r} takes 28x28 images; {spec.name} has {spec.image_shape}")
        info = get_model_info(cfg.model)
        if info.family == "ensemble":
            raise MnistlabError("an ensemble is built from trained runs: mnistlab ensemble RUN RUN ...")
        if not cfg.evaluate_test and info.family != "neural":
            raise InvalidArgument(f"evaluate_test = false is for neural nets (sweep trials); {cfg.model!r} is {info.family}")
        if d.active:
            if info.family != "neural":
                raise InvalidArgument(f"--distributed trains neural nets; {cfg.model!r} is a {info.family} model")
            dist.check_batch(d, cfg.batch_size)
        if info.family == "neural":
            device = _engine(cfg, d).device  # a device, precision or step this machine cannot run fails here, before the run folder
            if cfg.model_args:  # and so do model settings the net cannot take (built on the meta device: no weights)
                import torch

                with torch.device("meta"):
                    build_net({**cfg.to_dict(), "classes": list(spec.classes)})
        else:
            device = None
        if cfg.tensorboard:
            if info.family != "neural":
                raise InvalidArgument(f"--tensorboard logs the training of neural nets; {cfg.model!r} is a {info.family} model")
            tensorboard.check_available()
        if resume is not None:
            return cfg_dict, str(run_dir), False
        train_ds = load_dataset(spec, "train", data_dir=data_dir, progress=progress)
        train_idx, _, _ = split_indices(train_ds.labels, cfg, spec.num_classes, info.family == "neural")
        run_dir = new_run_dir(out, cfg.model, spec.name)
        held.enter_context(run_lock(run_dir, new=True))
        mean, std = pixel_stats(train_ds.images, train_idx, device=device)
        meta = DatasetCache(data_home(data_dir), spec.name).meta() or {}
        cfg_dict = {**cfg.to_dict(), "classes": list(spec.classes), "input_mean": mean, "input_std": std,
                    "augment_resolved": parse_augment(cfg.augment).__dict__, "dataset_sha256": meta.get("content_sha256")}
        if d.active:
            cfg_dict["world_size"] = d.world
        write_json(run_dir / "config.json", cfg_dict)
        return cfg_dict, str(run_dir), False

    cfg_dict, run_dir, complete = dist.on_main(d, prepare)
    run_dir = Path(run_dir)
    if complete:
        return Run(run_dir) if d.main else None
    cfg = _config_of(cfg_dict)
    spec = get_spec(cfg.dataset)
    train_ds = load_dataset(spec, "train", data_dir=data_dir, progress=progress and d.main)
    test_ds = load_dataset(spec, "test", data_dir=data_dir) if cfg.evaluate_test else None
    neural = get_model_info(cfg.model).family == "neural"
    data = (train_ds, test_ds, *split_indices(train_ds.labels, cfg, spec.num_classes, neural))
    try:
        if get_model_info(cfg.model).family == "classical":
            return _train_classical(cfg, cfg_dict, run_dir, data, progress)
        return _train_net(cfg, cfg_dict, run_dir, data, progress and d.main, on_epoch_end, d)
    except KeyboardInterrupt:
        raise TrainingInterrupted(f"interrupted; {run_dir} keeps its last completed epoch: "
                                  f"mnistlab train --resume {run_dir}") from None


def _final_metrics(cfg: TrainConfig, cfg_dict: dict, extra: dict, device=None) -> dict:
    """`device`: where the net trained (None: a classical model, on the CPU)."""
    import torch

    device = device if device is not None else torch.device("cpu")
    return {"model": cfg.model, "dataset": cfg.dataset, "seed": cfg.seed, "epochs": cfg.epochs,
            "versions": _versions(), "dataset_sha256": cfg_dict.get("dataset_sha256"),
            "hardware": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                         "name": hardware_name(device)},
            **extra}


def _train_classical(cfg, cfg_dict, run_dir: Path, data, progress) -> Run:
    import skops.io as sio

    train_ds, test_ds, train_idx, val_idx, _ = data
    est = create_model(cfg.model, num_classes=len(cfg_dict["classes"]), seed=cfg.seed, **(cfg.model_args or {}))
    flat = lambda imgs: np.asarray(imgs, dtype=np.float32).reshape(len(imgs), -1) / np.float32(255)  # noqa: E731
    x, y = flat(train_ds.images[train_idx]), np.asarray(train_ds.labels[train_idx])
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(x, y)
    fit_s = time.perf_counter() - t0
    if any("converge" in str(w.message).lower() for w in caught):  # one line, not scikit-learn's screenful
        log.warning("%s stopped at its iteration limit before meeting its tolerance (the accuracy is still measured); "
                    "raise it with --model-arg max_iter=N", cfg.model)
    t0 = time.perf_counter()
    probs = classical_proba(est, flat(test_ds.images))
    predict_s = time.perf_counter() - t0
    y_test = np.asarray(test_ds.labels)
    acc = float((probs.argmax(1) == y_test).mean())
    loss = float(-np.log(np.clip(probs[np.arange(len(y_test)), y_test], 1e-12, None)).mean())
    row = {"epoch": 1, "test_accuracy": acc, "test_loss": loss, "seconds": fit_s}
    if len(val_idx):
        vp = classical_proba(est, flat(train_ds.images[val_idx]))
        row["val_accuracy"] = float((vp.argmax(1) == train_ds.labels[val_idx]).mean())
    append_jsonl(run_dir / "metrics.jsonl", [row])
    from mnistlab.fileio import atomic_write

    atomic_write(run_dir / "model.skops", lambda fh: fh.write(sio.dumps(est)), hint="pass --out to a writable folder", error=RunError)
    atomic_write(run_dir / "test_probs.npy", lambda fh: np.save(fh, probs, allow_pickle=False), error=RunError)
    write_json(run_dir / "metrics.json", _final_metrics(cfg, cfg_dict, {
        "test_accuracy": acc, "test_loss": loss, "train_seconds": fit_s, "predict_seconds": predict_s,
        "test_images_per_second": len(y_test) / predict_s, "train_images": int(len(train_idx)), "params": None,
        "device": "cpu", "threads": os.cpu_count(), **({"val_accuracy": row["val_accuracy"]} if "val_accuracy" in row else {})}))
    return Run(run_dir)


def _engine(cfg: TrainConfig, d: dist.Dist) -> Engine:
    import torch

    device = torch.device("cuda", d.local_rank) if d.backend == "nccl" else None
    return resolve_engine(cfg.device, cfg.precision, cfg.step, optimizer=cfg.optimizer, distributed=d.active, device=device)


def _train_net(cfg, cfg_dict, run_dir: Path, data, progress, on_epoch_end, d: dist.Dist = dist.SINGLE) -> Run | None:
    import torch

    train_ds, test_ds, train_idx, val_idx, calib_idx = data
    engine = _engine(cfg, d)
    device = engine.device
    if device.type == "cpu" and cfg.preset in ON_A_CPU and d.main:
        log.warning(ON_A_CPU[cfg.preset])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    elif d.active and device.type == "cpu":  # processes on one machine share its cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // d.local_world))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN time its kernels once
    torch.manual_seed(cfg.seed)
    net = build_net(cfg_dict)
    ckpt = dist.on_main(d, lambda: load_checkpoint(run_dir / "checkpoint.pt") if (run_dir / "checkpoint.pt").exists() else None)
    if cfg.init_from and ckpt is None:
        dist.on_main(d, lambda: _init_from(net, cfg.init_from, cfg, len(cfg_dict["classes"])))
    if cfg.freeze == "backbone":
        for p in net.features.parameters():
            p.requires_grad_(False)
    net.to(device)
    # channels_last: about 2x faster convolutions and pooling on CPUs (oneDNN) as on GPUs
    channels_last = any(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = make_optimizer(cfg.optimizer, [p for p in net.parameters() if p.requires_grad], cfg.lr, cfg.weight_decay, engine)
    history, curve_points, start_epoch, train_seconds = [], [], 0, 0.0
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        history, start_epoch, train_seconds = list(ckpt["history"]), int(ckpt["epoch"]), float(ckpt.get("train_seconds", 0))
        curve_points = list(ckpt.get("curve", []))
        log.info("resuming %s after epoch %d", run_dir, start_epoch)
    average = WeightAverage(net, cfg.ema) if cfg.ema else None  # evaluated and saved in the net's place
    if average is not None and ckpt is not None and "average" in ckpt:
        average.load_state_dict(ckpt["average"])
    kept = average.module if average is not None else net  # the weights that are evaluated and saved
    forward = None
    if d.active:  # rank 0's weights (fresh, transferred or resumed) are broadcast to every process here
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(net, device_ids=[d.local_rank] if device.type == "cuda" else None)

    x, y = _tensors(train_ds.images, train_ds.labels, device, train_idx)
    x_test, y_test = _tensors(test_ds.images, test_ds.labels, device) if test_ds is not None else (None, None)
    x_val, y_val = _tensors(train_ds.images[val_idx], train_ds.labels[val_idx], device) if len(val_idx) else (None, None)
    if channels_last:  # one channel: the same bytes, only the strides say channels_last
        x, x_test, x_val = (t.contiguous(memory_format=torch.channels_last) if t is not None else None for t in (x, x_test, x_val))
    n, bs = len(x), cfg.batch_size
    augment = parse_augment(cfg.augment)
    step = make_step(net, opt, engine, batch_size=bs // d.world, label_smoothing=cfg.label_smoothing,
                     augment=augment, forward=forward, average=average)
    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    steps_per_epoch = (n + bs - 1) // bs
    total_steps = steps_per_epoch * cfg.epochs
    curve = Curve(total_steps, steps_per_epoch, curve_points)
    bar = _progress(progress)
    # epochs are evaluated on the single image (test-time views would cost several times that per epoch);
    # the final test probabilities and the temperature are those of the net as it predicts, views included
    predictor = with_tta(kept, cfg.tta)
    evaluate = lambda xs, ys, net=kept: evaluate_net(net, xs, ys, cfg.eval_batch_size)  # noqa: E731
    board = tensorboard.TensorBoardLog(cfg.tensorboard, cfg_dict["classes"], len(curve_points)) if cfg.tensorboard and d.main else None

    last = {"test_probs": None}  # the latest test probabilities (rank 0; None when the test set is not evaluated)

    def end_epoch(row: dict) -> None:
        """Rank 0: evaluate, record, checkpoint."""
        if x_val is not None:
            row["val_loss"], row["val_accuracy"], _ = evaluate(x_val, y_val)
        if x_test is not None:
            t1 = time.perf_counter()
            row["test_loss"], row["test_accuracy"], last["test_probs"] = evaluate(x_test, y_test)
            row["eval_seconds"] = time.perf_counter() - t1
        history.append(row)
        if board:
            board.epoch(row, curve.points, last["test_probs"], np.asarray(test_ds.labels) if test_ds is not None else None)
        append_jsonl(run_dir / "metrics.jsonl", history)
        append_jsonl(run_dir / "curve.jsonl", curve.points)
        save_torch(run_dir / "checkpoint.pt", {"model": _cpu_state(net), "optimizer": step.optimizer_state(),
                                               "epoch": row["epoch"], "history": history, "curve": curve.points,
                                               "train_seconds": train_seconds,
                                               **({"average": average.state_dict()} if average is not None else {})})
        if on_epoch_end:
            on_epoch_end(row["epoch"], row)

    with bar or contextlib.nullcontext():
        for epoch in range(start_epoch, cfg.epochs):
            # every random choice is a pure function of (seed, epoch): the permutation is shared by all
            # processes; dropout and augmentation differ per process (rank 0 draws what a single process would)
            torch.manual_seed(cfg.seed * 1_000_003 + epoch + 7919 * d.rank)
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            perm = torch.randperm(n, generator=gen).to(device)
            # augmentation draws on the data's device: from this generator on the CPU, from the device's
            # default generator (seeded just above) on an accelerator
            aug_gen = None if device.type != "cpu" else gen if d.main else torch.Generator().manual_seed(
                cfg.seed * 1_000_003 + epoch + 7919 * d.rank)
            net.train()
            if cfg.freeze == "backbone":
                net.features.eval()  # frozen batch-norm statistics too
            step.reset()
            curve.start_epoch()
            t0 = time.perf_counter()
            task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, loss=0.0, acc=0.0, ips=0.0) if bar else None
            batches = epoch_batches(x, y, perm, bs, augment, aug_gen, rank=d.rank, world=d.world,
                                    min_batch=2 * d.world if has_bn else 1)  # batch norm cannot train on one image
            for i, xb, yb in batches:
                lr = lr_at(epoch * steps_per_epoch + i, total_steps, cfg.lr, cfg.schedule)
                step(xb, yb, lr, aug_gen)
                curve.record(step, epoch, i, lr)
                if bar and (i % 20 == 0 or i == steps_per_epoch - 1):  # the only reads inside the epoch, for the bar
                    seen, loss_sum, correct = step.totals()
                    bar.update(task, completed=i + 1, loss=loss_sum / seen, acc=correct / seen,
                               ips=seen / (time.perf_counter() - t0) * d.world)
            seen, loss_sum, correct = step.totals()  # waits for the device: the epoch's time is real
            epoch_s = time.perf_counter() - t0
            train_seconds += epoch_s
            curve.end_epoch()
            seen_all, loss_all, correct_all = dist.all_sum(d, seen, loss_sum, correct)
            row = {"epoch": epoch + 1, "train_loss": loss_all / max(seen_all, 1),
                   "train_accuracy": correct_all / max(seen_all, 1), "lr": lr, "seconds": epoch_s,
                   "images_per_second": seen_all / epoch_s}
            dist.on_main(d, lambda: end_epoch(row))
            if bar:
                shown = row.get("test_accuracy", row.get("val_accuracy"))
                bar.update(task, description=f"epoch {epoch + 1}/{cfg.epochs}" + (f" {'test' if 'test_accuracy' in row else 'val'} acc {shown:.4f}" if shown is not None else ""))
    if board:
        board.close()
    if not d.main:
        return None
    test_probs, final = last["test_probs"], {}
    if x_test is not None and (test_probs is None or predictor is not kept):
        # with test-time views, or resumed after the last epoch but before the final files
        final["test_loss"], final["test_accuracy"], test_probs = evaluate(x_test, y_test, predictor)
    calibration = {"temperature": 1.0}
    if len(calib_idx):
        x_cal, y_cal = _tensors(train_ds.images[calib_idx], train_ds.labels[calib_idx], device)
        _, _, cal_probs = evaluate(x_cal.contiguous(memory_format=torch.channels_last) if channels_last else x_cal, y_cal,
                                   predictor)
        calibration = calibrate(cal_probs, np.asarray(train_ds.labels[calib_idx]), test_probs,
                                np.asarray(test_ds.labels) if test_ds is not None else None)
        if test_probs is not None:
            test_probs = apply_temperature(test_probs, calibration["temperature"])
    return _finish_net(cfg, cfg_dict, run_dir, kept, history, train_seconds, test_probs, engine, d, calibration, n, final)


def _cpu_state(net) -> dict:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()}


def calibrate(cal_probs: np.ndarray, cal_labels: np.ndarray, test_probs: np.ndarray | None, test_labels) -> dict:
    """Fit the temperature on the held-out images; the accuracy, the expected calibration error and NLL before and
    after, on them (what compares recipes without the test set) and (reported only, never used to fit) on the test set."""
    temperature = fit_temperature(cal_probs, cal_labels)
    out = {"temperature": temperature, "images": int(len(cal_labels))}
    for name, probs, labels in (("held_out", cal_probs, cal_labels), ("test", test_probs, test_labels)):
        if probs is None:
            continue
        after = apply_temperature(probs, temperature)
        out[name] = {"accuracy": float((probs.argmax(1) == labels).mean()),
                     "ece_before": expected_calibration_error(probs, labels)[0], "ece_after": expected_calibration_error(after, labels)[0],
                     "nll_before": nll(probs, labels), "nll_after": nll(after, labels)}
    return out


def _finish_net(cfg, cfg_dict, run_dir, net, history, train_seconds, test_probs, engine: Engine, d: dist.Dist,
                calibration: dict, train_images: int, final: dict) -> Run:
    """`final`: the test accuracy and loss of the net as it predicts, where they differ from the last epoch's
    (test-time augmentation), which stays in the metrics as the single view's."""
    import torch
    from safetensors.torch import save

    from mnistlab.fileio import atomic_write

    atomic_write(run_dir / "model.safetensors", lambda fh: fh.write(save(_cpu_state(net))), error=RunError)
    if test_probs is not None:
        atomic_write(run_dir / "test_probs.npy", lambda fh: np.save(fh, test_probs.astype(np.float32), allow_pickle=False),
                     error=RunError)
    last = history[-1]
    if cfg.tta != "none" and "test_accuracy" in last:
        final["test_accuracy_single_view"] = last["test_accuracy"]
    cpu_net = build_net(cfg_dict)
    tested = [r["test_accuracy"] for r in history if "test_accuracy" in r]
    write_json(run_dir / "metrics.json", _final_metrics(cfg, cfg_dict, {
        "test_accuracy": last.get("test_accuracy"), "test_loss": last.get("test_loss"), **final, "train_seconds": train_seconds,
        "eval_seconds": sum(r.get("eval_seconds", 0) for r in history),
        "test_images_per_second": len(test_probs) / last["eval_seconds"] if last.get("eval_seconds") and test_probs is not None else None,
        "params": count_params(cpu_net), "macs": count_macs(cpu_net), **engine.describe(),
        "threads": torch.get_num_threads(), "best_test_accuracy": max(tested) if tested else None,
        "train_images": train_images, "temperature": calibration["temperature"], "calibration": calibration,
        **({"world_size": d.world, "backend": d.backend} if d.active else {}),
        **({"val_accuracy": last["val_accuracy"]} if "val_accuracy" in last else {})}, engine.device))
    return Run(run_dir)
