"""How robust a run is: its accuracy on MNIST-C's 15 corruptions and under l_inf attacks (FGSM, PGD).

    measure_robustness(RUN) -> the numbers, also written to RUN/robustness.json, and RUN/robustness.png

The corruptions are mnistlab's own (corruptions.py, seeded) on the run's test set, or, for an MNIST run whose cache
holds them, the official MNIST-C files (`mnistlab data import mnist-c mnist_c.zip`); which set was used is in the
result, and with the official files the own ones are measured beside them to say how close they come. The attacks
(attacks.py) attack the whole prediction, test-time views and temperature included, on the first N test images.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import numpy as np

from mnistlab.data.catalog import mnist_c_name as official_name
from mnistlab.errors import DatasetNotFound, InvalidArgument, MnistlabError, RunError
from mnistlab.robustness.attacks import EPSILONS, STEP_SIZE, STEPS, LogProbabilities, fgsm, pgd
from mnistlab.robustness.corruptions import CORRUPTIONS, corrupt
from mnistlab.run import ENSEMBLE, Run, leaf_runs, read_result, write_result

log = logging.getLogger("mnistlab")
RESULT = "robustness.json"
PICTURE = "robustness.png"
SOURCES = ("auto", "own", "official")  # which corrupted images: the official files where cached, else the own
ATTACK_IMAGES = 1000
SHOWN = 8  # digits per corruption in the picture


def measure_robustness(run: Run | str | Path, *, attack_images: int = ATTACK_IMAGES, epsilons=EPSILONS,
                       steps: int = STEPS, step_size: float = STEP_SIZE, restarts: int = 1, corruptions: str = "auto",
                       corruption_images: int | None = None, seed: int = 0, device: str = "auto", batch_size: int = 500,
                       out: str | Path | None = None, data_dir=None, progress: bool = False, write: bool = True) -> dict:
    """The run's clean test accuracy, its accuracy on each corruption and their mean, and (nets) FGSM and PGD
    accuracy at each eps on the first `attack_images` test images, each with its 95% interval."""
    import torch

    from mnistlab.data import load_dataset
    from mnistlab.devices import hardware_name, pick_device

    run = run if isinstance(run, Run) else Run(run)
    run.refuse_across_environments("robustness")
    if not run.complete:
        raise RunError(f"{run.path} has not finished training; resume it first: mnistlab train --resume {run.path}")
    if corruptions not in SOURCES:
        raise InvalidArgument(f"--corruptions must be one of {', '.join(SOURCES)}, got {corruptions!r}")
    epsilons = _check_attack(attack_images, epsilons, steps, step_size, restarts)
    dev = pick_device(device)
    test = load_dataset(run.config["dataset"], "test", data_dir=data_dir)
    n = len(test) if corruption_images is None else min(int(corruption_images), len(test))
    images, labels = test.images[:n], np.asarray(test.labels[:n])
    target = _target(run, dev)
    predict = _predictor(run, target, dev, batch_size)
    t0 = time.perf_counter()
    x = torch.from_numpy(images.astype(np.float32) / 255).to(dev)  # the test images once, for the clean and every corruption
    clean = predict(x)
    result = {"run": str(run.path), "model": run.config["model"], "dataset": run.config["dataset"],
              "device": hardware_name(dev), "clean": _accuracy(clean, labels), "images": n, "seed": seed}
    result["clean_interval"] = _interval(clean == labels)
    with _bar(progress) as bar:
        result |= _corruptions(run, x, labels, predict, corruptions, seed, data_dir, bar)
        if target is None:
            result["adversarial"] = {"skipped": "attacks need gradients; " + (
                "a member of this ensemble is not a neural net" if run.kind == ENSEMBLE else f"{run.config['model']!r} is not a neural net")}
        elif attack_images == 0:
            result["adversarial"] = {"skipped": "--attack-images 0: no attacks"}
        else:
            result["adversarial"] = _attacks(target, test, attack_images, epsilons, steps, step_size, restarts, seed,
                                             dev, batch_size, bar)
    result["seconds"] = time.perf_counter() - t0
    shown = result.pop("_shown")
    if write:
        _write(run, result, shown, out)
    return result


def _check_attack(attack_images, epsilons, steps, step_size, restarts) -> list[float]:
    eps = [float(e) for e in epsilons]
    for what, ok in ((f"--attack-images must be >= 0, got {attack_images}", attack_images >= 0),
                     (f"--steps must be >= 1, got {steps}", steps >= 1),
                     (f"--restarts must be >= 1, got {restarts}", restarts >= 1),
                     (f"--step-size must be > 0, got {step_size}", step_size > 0),
                     (f"each eps must be in (0, 1] (pixels are in [0, 1]), got {eps}", all(0 < e <= 1 for e in eps))):
        if not ok:
            raise InvalidArgument(what)
    if eps and steps * step_size < max(eps):
        log.warning("PGD's %d steps of %g reach %g, less than eps %g: it cannot get to the edge of the ball, so it can be "
                    "weaker than FGSM there; raise --steps or --step-size", steps, step_size, steps * step_size, max(eps))
    return eps


def _target(run: Run, dev):
    """The run's prediction as a differentiable module on `dev` (LogProbabilities), or None when a member is not a
    net (its corruptions are read through Run.predict_proba instead, and it is not attacked). The nets are copies:
    moving them to `dev` leaves the caller's run as it was."""
    nets = leaf_runs(run)
    if any(net.kind != "neural" for net in nets):
        return None
    return LogProbabilities([copy.deepcopy(net.predictor) for net in nets], [net.temperature for net in nets]).to(dev).eval()


def _predictor(run: Run, target, dev, batch_size: int):
    """images (N, 28, 28) float tensor in [0, 1] -> predicted classes (NumPy), as the run predicts."""
    import torch

    def predict(x):
        if target is None:
            return run.predict_proba(x.cpu().numpy()).argmax(1)
        out = []
        with torch.no_grad():
            for part in x.split(batch_size * 4):
                out.append(target(part.to(dev).unsqueeze(1)).argmax(1).cpu())
        return torch.cat(out).numpy()

    return predict


def _accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    return float((predicted == labels).mean()) if len(labels) else float("nan")


def _interval(right: np.ndarray) -> list[float]:
    from mnistlab.evaluate.stats import accuracy_interval

    return list(accuracy_interval(int(right.sum()), len(right)))


def _official(name: str, n: int, data_dir):
    """The official MNIST-C test images of one corruption, when the cache holds them (else None)."""
    from mnistlab.data import load_dataset
    from mnistlab.data.cache import DatasetCache, data_home

    spec = official_name(name)
    if DatasetCache(data_home(data_dir), spec).meta() is None:
        return None
    ds = load_dataset(spec, "test", data_dir=data_dir)
    return ds.images[:n], np.asarray(ds.labels[:n])


def _corruptions(run, x, labels, predict, source, seed, data_dir, bar) -> dict:
    """Accuracy per corruption of the test images `x` ((N, 28, 28) in [0, 1], on the device), the mean, which images
    were used, and a few digits of each for the picture."""
    import torch

    digits = run.config["dataset"] == "mnist"
    if source == "official" and not digits:
        raise InvalidArgument(f"the official MNIST-C files are MNIST digits; {run.path} is a {run.config['dataset']} run "
                              "(--corruptions own corrupts its own test set)")
    task = bar.add_task("corruptions", total=len(CORRUPTIONS)) if bar else None
    accuracy, sources, own_vs_official, shown = {}, {}, {}, {}
    for name in CORRUPTIONS:
        found = _official(name, len(x), data_dir) if digits and source != "own" else None
        if source == "official" and found is None:
            raise DatasetNotFound(f"the official MNIST-C {name} is not in the cache; mnistlab data import mnist-c "
                                "PATH/mnist_c.zip (or --corruptions own)")
        own = corrupt(x, name, seed)
        own_pred = predict(own)
        if found is not None:
            off_images, off_labels = found
            if not np.array_equal(off_labels, labels):
                raise MnistlabError(f"the cached official {name} labels differ from {run.config['dataset']}'s test labels; "
                                    f"mnistlab data verify {official_name(name)}")
            off_pred = predict(torch.from_numpy(off_images.astype(np.float32) / 255))
            accuracy[name], sources[name] = _accuracy(off_pred, labels), "official"
            own_vs_official[name] = {"official": accuracy[name], "own": _accuracy(own_pred, labels),
                                     "mean_abs_pixel_difference": float(np.abs(off_images / 255 - own.cpu().numpy()).mean())}
            pictured, predicted = off_images[:SHOWN], off_pred[:SHOWN]
        else:
            accuracy[name], sources[name] = _accuracy(own_pred, labels), f"mnistlab (seed {seed})"
            pictured, predicted = np.round(own[:SHOWN].cpu().numpy() * 255).astype(np.uint8), own_pred[:SHOWN]
        shown[name] = (pictured, predicted, labels[:SHOWN])
        if bar:
            bar.advance(task)
    out = {"corruptions": accuracy, "mean_corruption_accuracy": float(np.mean(list(accuracy.values()))),
           "corruption_source": _one_source(sources), "_shown": shown}
    if own_vs_official:
        out["own_vs_official"] = own_vs_official
    return out


def _one_source(sources: dict) -> str | dict:
    kinds = set(sources.values())
    return kinds.pop() if len(kinds) == 1 else sources


def source_words(source: str | dict) -> str:
    """robustness.json's `corruption_source` in words: the one set used, or a mix of them."""
    return source if isinstance(source, str) else "official where cached, mnistlab's for the rest"


def _attacks(target, test, n, epsilons, steps, step_size, restarts, seed, dev, batch_size, bar) -> dict:
    """FGSM and PGD accuracy per eps on the first `n` test images, batch by batch."""
    import torch

    n = min(n, len(test))
    x_all = torch.from_numpy(test.images[:n].astype(np.float32) / 255).unsqueeze(1)
    y_all = torch.as_tensor(np.array(test.labels[:n]), dtype=torch.long)
    gen = torch.Generator(device=dev).manual_seed(seed)
    batches = list(zip(x_all.split(batch_size), y_all.split(batch_size)))
    task = bar.add_task("attacks", total=len(epsilons) * len(batches)) if bar else None
    clean, fgsm_right, pgd_right = [], {e: [] for e in epsilons}, {e: [] for e in epsilons}
    for xb, yb in batches:
        xb, yb = xb.to(dev), yb.to(dev)
        with torch.no_grad():
            clean.append((target(xb).argmax(1) == yb).cpu())
        for eps in epsilons:
            with torch.no_grad():
                fgsm_right[eps].append((target(fgsm(target, xb, yb, eps)).argmax(1) == yb).cpu())
            pgd_right[eps].append((~pgd(target, xb, yb, eps, steps, step_size, restarts, gen)[1]).cpu())
            if bar:
                bar.advance(task)

    def summary(parts):
        right = torch.cat(parts).numpy() if parts else np.zeros(0, bool)
        return float(right.mean()) if len(right) else float("nan"), _interval(right)

    out = {"images": n, "norm": "linf", "pgd_steps": steps, "pgd_step_size": step_size, "pgd_restarts": restarts,
           "fgsm": {}, "pgd": {}, "intervals": {"fgsm": {}, "pgd": {}}}
    out["clean"], out["clean_interval"] = summary(clean)
    for eps in epsilons:
        for kind, parts in (("fgsm", fgsm_right[eps]), ("pgd", pgd_right[eps])):
            out[kind][f"{eps:g}"], out["intervals"][kind][f"{eps:g}"] = summary(parts)
    return out


def _bar(enabled: bool):
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def _write(run: Run, result: dict, shown: dict, out) -> None:
    """robustness.json and its picture into the run folder, and with `out` a copy of both there."""
    from mnistlab.evaluate.plots import corruption_grid, to_png

    png = to_png(corruption_grid(shown, run.classes, result["corruptions"]))
    result["picture"] = write_result(run.path, result, RESULT, PICTURE, png, out)


def read_robustness(run: Run) -> dict | None:
    """RUN/robustness.json as `mnistlab robustness` wrote it, or None."""
    return read_result(run.path, RESULT)
