"""Training across environments (Colored and Rotated MNIST): each step draws one batch from every training
environment and hands them to the run's algorithm (training/algorithms.py); every `checkpoint_every` steps every
environment is evaluated and a checkpoint written, as DomainBed's train.py does.

    train_across -> per block of steps: the block's generator seeded from (seed, block), `algorithm.update` per step,
                    then evaluate_environments, then the row and the checkpoint; at the end, finish_across.

Each environment is split as DomainBed splits it (`misc.split_dataset` with `seed_hash(trial_seed, env)`): a held-out
"out" part (`holdout_fraction`) for model selection, the "in" part to train on (or, for a test environment, to test
on). A batch at least as large as an environment's "in" part is the whole of it (IRM's code trains full-batch); a
smaller one is drawn with replacement, as DomainBed's InfiniteDataLoader draws.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import numpy as np

from mnistlab.errors import InvalidArgument, UnknownName
from mnistlab.run import mean_accuracy
from mnistlab.split import Split

log = logging.getLogger(__name__)

DEFAULT_STEPS = 5001  # DomainBed's N_STEPS


def seed_hash(*args) -> int:
    """DomainBed's `misc.seed_hash`: an integer seed from any arguments (md5 of their tuple's text)."""
    return int(hashlib.md5(str(args).encode("utf-8"), usedforsecurity=False).hexdigest(), 16) % (2**31)


def holdout(n: int, fraction: float, trial_seed: int, env: int) -> tuple[np.ndarray, np.ndarray]:
    """DomainBed's split of one environment of n images: (in, out) positions, out the first int(n * fraction) of a
    shuffle seeded by seed_hash(trial_seed, env)."""
    keys = list(range(n))
    np.random.RandomState(seed_hash(trial_seed, env)).shuffle(keys)
    cut = int(n * fraction)
    return np.asarray(keys[cut:], dtype=np.int64), np.asarray(keys[:cut], dtype=np.int64)


def check_environments(cfg, spec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The training and test environments a run's settings name, checked (one line each): (train, test) indices."""
    names = spec.environments
    if not names:
        if cfg.algorithm is not None:
            raise InvalidArgument(f"--algorithm {cfg.algorithm} trains across environments; {spec.name} has one: use "
                                  "colored-mnist, colored-mnist-domainbed or rotated-mnist")
        return (), ()
    if cfg.test_environment is None:
        raise InvalidArgument(f"{spec.name} is trained across environments: name the one to test on with "
                              f"--test-environment ({', '.join(names)})")
    if cfg.test_environment not in names:
        raise UnknownName(f"environment of {spec.name}", cfg.test_environment, names)
    test = names.index(cfg.test_environment)
    chosen = cfg.train_environments if cfg.train_environments is not None else [n for n in names if n != cfg.test_environment]
    for name in chosen:
        if name not in names:
            raise UnknownName(f"environment of {spec.name}", str(name), names)
    if cfg.test_environment in chosen:
        raise InvalidArgument(f"environment {cfg.test_environment} is the test environment and a training one; train on "
                              f"the others ({', '.join(n for n in names if n != cfg.test_environment)})")
    if not chosen:
        raise InvalidArgument(f"no environment left to train on in {spec.name}")
    return tuple(names.index(n) for n in chosen), (test,)


@dataclass(frozen=True)
class Environments:
    """A run's environments: names, which train and which test, and each one's in and out rows of the dataset."""

    names: tuple[str, ...]
    train: tuple[int, ...]
    test: tuple[int, ...]
    rows_in: tuple[np.ndarray, ...]
    rows_out: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, ds, cfg) -> "Environments":
        train, test = check_environments(cfg, ds.spec)
        rows_in, rows_out = [], []
        for e, name in enumerate(ds.environment_names):
            rows = ds.in_environment(name)
            trial_seed = cfg.seed if cfg.trial_seed is None else cfg.trial_seed
            pos_in, pos_out = holdout(len(rows), cfg.holdout_fraction, trial_seed, e)
            rows_in.append(rows[pos_in])
            rows_out.append(rows[pos_out])
        return cls(ds.environment_names, train, test, tuple(rows_in), tuple(rows_out))

    def split(self) -> Split:
        """The run's split.npz: the training environments' in rows, their out rows as validation."""
        train = np.sort(np.concatenate([self.rows_in[e] for e in self.train]))
        val = np.sort(np.concatenate([self.rows_out[e] for e in self.train]))
        return Split(train, val, np.zeros(0, np.int64))

    def role(self, e: int) -> str:
        return "train" if e in self.train else "test" if e in self.test else "unused"

    def describe(self) -> dict:
        return {"train": [self.names[e] for e in self.train], "test": [self.names[e] for e in self.test],
                "sizes": {n: {"in": len(i), "out": len(o)} for n, i, o in zip(self.names, self.rows_in, self.rows_out)}}


def draw(x, y, rows: np.ndarray, batch_size: int, gen):
    """One environment's batch: all of its rows when the batch is as large, else batch_size drawn with replacement."""
    import torch

    if batch_size >= len(rows):
        idx = torch.from_numpy(rows)
    else:
        idx = torch.from_numpy(rows)[torch.randint(len(rows), (batch_size,), generator=gen)]
    idx = idx.to(x.device)
    return x[idx], y[idx]


def evaluate_environments(net, x, y, envs: Environments, batch_size: int, everything: bool) -> dict:
    """Accuracy of each environment's out part and of the in part of every environment not trained on (the test
    environment, and one left out for leave-one-environment-out selection); with `everything`, the training
    environments' in parts too (the last row)."""
    import torch

    from mnistlab.training.tensors import evaluate_net

    out = {}
    for e, name in enumerate(envs.names):
        parts = {"out": envs.rows_out[e]}
        if everything or e not in envs.train:
            parts["in"] = envs.rows_in[e]
        for part, rows in parts.items():
            if len(rows):
                idx = torch.from_numpy(rows).to(x.device)
                out.setdefault(name, {})[part] = evaluate_net(net, x[idx], y[idx], batch_size)[1]
    return out


def validation_accuracy(accs: dict, envs: Environments) -> float | None:
    """The mean accuracy of the training environments' held-out parts (None without a holdout): what a sweep's
    trials are judged and pruned on, DomainBed's training-domain validation."""
    parts = [accs[envs.names[e]]["out"] for e in envs.train if "out" in accs.get(envs.names[e], {})]
    return float(np.mean(parts)) if parts and len(parts) == len(envs.train) else None


def select(history: list[dict], envs_description: dict) -> dict:
    """Within one run, DomainBed's two selections that need no other run: training-domain validation (the row whose
    training environments' out parts are the most accurate on average) and the oracle (the last row, judged by the
    test environment's out part). Each gives the step, the validation accuracy and the test environment's in accuracy."""
    train, test = envs_description["train"], envs_description["test"]
    rows = [r for r in history if all("out" in r["environments"].get(n, {}) for n in train + test)]
    if not rows:
        return {}
    best = max(rows, key=lambda r: mean_accuracy(r, train, "out"))
    last = rows[-1]
    return {"training_domain": {"step": best["step"], "val_accuracy": mean_accuracy(best, train, "out"),
                                "test_accuracy": mean_accuracy(best, test)},
            "oracle": {"step": last["step"], "val_accuracy": mean_accuracy(last, test, "out"),
                       "test_accuracy": mean_accuracy(last, test)}}


def train_across(folder, ds, progress: bool = False, on_step=None):
    """Train the run in `folder` across the environments of `ds` (every image, all environments); its Run."""
    import torch

    from mnistlab.models import has_convolutions
    from mnistlab.run import build_net
    from mnistlab.training.algorithms import Algorithm, Settings
    from mnistlab.training.schedule import epoch_seed, lr_at
    from mnistlab.training.step import make_optimizer
    from mnistlab.training.tensors import to_tensors

    cfg = folder.cfg
    settings, envs = Settings.from_config(cfg), Environments.of(ds, cfg)
    engine = across_engine(cfg)
    device = engine.device
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net = build_net(folder.record()).to(device)
    if has_convolutions(net):  # as the trainer
        net = net.to(memory_format=torch.channels_last)
    algo = Algorithm(settings, net, lambda: make_optimizer(cfg.optimizer, [p for p in net.parameters() if p.requires_grad],
                                                           cfg.lr, cfg.weight_decay, engine), autocast=engine.autocast_dtype)
    ckpt = folder.last_checkpoint()
    step, history, seconds = 0, [], 0.0
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        algo.load_state_dict(ckpt["algorithm"])
        step, history, seconds = int(ckpt["step"]), list(ckpt["history"]), float(ckpt["train_seconds"])
        log.info("resuming %s after step %d", folder.path, step)
    x, y = to_tensors(ds.images, ds.labels, device)
    total = cfg.steps or DEFAULT_STEPS
    while step < total:
        gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, step // cfg.checkpoint_every))
        end = min(total, (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every)
        net.train()
        t0, sums = time.perf_counter(), {}
        for s in range(step, end):
            batches = [draw(x, y, envs.rows_in[e], cfg.batch_size, gen) for e in envs.train]
            out = algo.update(batches, lr_at(s, total, cfg.lr, cfg.schedule))
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v
        seconds += time.perf_counter() - t0
        accs = evaluate_environments(net, x, y, envs, cfg.eval_batch_size, everything=end == total)
        row = {"step": end, **{k: v / (end - step) for k, v in sums.items()}, "lr": lr_at(end - 1, total, cfg.lr, cfg.schedule),
               "environments": accs, "val_accuracy": validation_accuracy(accs, envs), "seconds": time.perf_counter() - t0}
        history.append(row)
        step = end
        folder.save_epoch(history, [], {"model": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
                                        "algorithm": algo.state_dict(), "step": step, "history": history,
                                        "train_seconds": seconds})
        if on_step:
            on_step(step, row)
        if progress:
            shown = " ".join(f"{n} {v.get('in', v.get('out')):.3f}" for n, v in row["environments"].items())
            log.warning("step %d/%d  loss %.4f  %s", step, total, row["loss"], shown)
    return finish_across(folder, net, envs, history, seconds, engine)


def across_engine(cfg):
    """The engine of training across environments: eager, in fp32 unless --precision bf16 asks (on hardware that
    computes it natively): `auto` keeps fp32 here, the number format of the published protocols."""
    from mnistlab.training.engine import resolve_engine

    return resolve_engine(cfg.device, "fp32" if cfg.precision == "auto" else cfg.precision, "eager",
                          optimizer=cfg.optimizer)


def finish_across(folder, net, envs: Environments, history: list[dict], seconds: float, engine):
    """The final files: the weights of the last step and metrics.json (each environment's accuracies, the test
    accuracy, the selections within the run)."""
    from mnistlab.training.record import finish_own_loop

    last = history[-1]["environments"]
    described = envs.describe()
    test = [last[n]["in"] for n in described["test"] if "in" in last.get(n, {})]
    trained = [last[n]["in"] for n in described["train"] if "in" in last.get(n, {})]
    return finish_own_loop(folder, net, {
        "test_accuracy": float(np.mean(test)) if test else None, "val_accuracy": history[-1].get("val_accuracy"),
        "train_accuracy": float(np.mean(trained)) if trained else None,
        "environments": {n: {**last.get(n, {}), "role": envs.role(e)} for e, n in enumerate(envs.names)},
        "trained_on": described["train"], "tested_on": described["test"], "environment_sizes": described["sizes"],
        "algorithm": folder.cfg.algorithm or "erm", "selection": select(history, described),
        "steps": history[-1]["step"]}, seconds, engine.device, engine.precision)
