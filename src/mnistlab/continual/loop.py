"""`mnistlab continual`: one net taught the tasks of a benchmark one after another; after each task, every task's test
accuracy (a row of the accuracy matrix R, R[i][j] = accuracy on task j after training task i).

    for each task t:
        a fresh Adam; `iterations` steps: a batch of task t (for `joint`, of every task so far), the strategy's
        batch (replay adds its sample), loss + the strategy's penalty, backward, the strategy's after_backward
        (A-GEM), step, the strategy's after_step (SI)
        the strategy's after_task (EWC's Fisher, SI's importance, LwF's copy, the buffer; GDumb trains a net from
        scratch on its buffer instead of on the task)
        R[t] = every task's test accuracy; the row, then the checkpoint, into the run folder

The run folder holds config.json, one line per task in metrics.jsonl, checkpoint.pt after every task (a run killed
at any moment resumes from its last finished task to the same end) and metrics.json at the end.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mnistlab.continual.benchmarks import Benchmark, make_benchmark, task_images
from mnistlab.continual.metrics import summary
from mnistlab.continual.strategies import Settings, make_strategy, masked_logits
from mnistlab.devices import kept_threads
from mnistlab.errors import InvalidArgument, RunError
from mnistlab.fileio import atomic_write_json, ensure_dir

log = logging.getLogger(__name__)

# van de Ven & Tolias 2019 (their code's defaults per experiment; the strengths per scenario for EWC and SI)
PRESETS = {
    "vandeven-split-mnist": {"benchmark": "split-mnist", "model": "mlp", "model_args": {"hidden": [400, 400]},
                             "iterations": 2000, "batch_size": 128, "lr": 1e-3, "distillation": "mean",
                             "strength": {"ewc": {"task": 1e5, "domain": 1e10, "class": 1e9},
                                          "online-ewc": {"task": 1e5, "domain": 1e10, "class": 1e9},
                                          "si": {"task": 10.0, "domain": 5e4, "class": 5e3}}},
    "vandeven-permuted-mnist": {"benchmark": "permuted-mnist", "model": "mlp", "model_args": {"hidden": [1000, 1000]},
                                "iterations": 5000, "batch_size": 128, "lr": 1e-4, "distillation": "mean",
                                "strength": {"ewc": {"task": 100.0, "domain": 100.0, "class": 100.0},
                                             "online-ewc": {"task": 100.0, "domain": 100.0, "class": 100.0},
                                             "si": {"task": 10.0, "domain": 10.0, "class": 5.0}}},
}


@dataclass
class ContinualConfig:
    benchmark: str = "split-mnist"
    scenario: str = "class"
    strategy: str = "naive"
    dataset: str = "mnist"
    tasks: int | None = None
    class_order: str = "fixed"
    model: str = "mlp"
    model_args: dict = field(default_factory=lambda: {"hidden": [400, 400]})
    iterations: int = 2000  # per task
    epochs: float | None = None  # per task instead of iterations: passes over the task's training images
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    buffer: int = 0
    strength: float | None = None
    gamma: float = 1.0
    temperature: float = 2.0
    distillation: str = "sum"  # lwf: "sum" over the classes or "mean" (the presets: the code of van de Ven's table)
    damping: float = 0.1
    fisher_samples: int = 1000
    threads: int | None = None

    @classmethod
    def resolve(cls, preset: str | None = None, **given) -> "ContinualConfig":
        """The settings: a preset's, then what was given (None: not given)."""
        given = {k: v for k, v in given.items() if v is not None}
        base: dict = {}
        if preset is not None:
            if preset not in PRESETS:
                from mnistlab.errors import UnknownName

                raise UnknownName("continual preset", preset, tuple(PRESETS))
            base = {k: v for k, v in PRESETS[preset].items() if k != "strength"}
            table = PRESETS[preset]["strength"].get(given.get("strategy", "naive"), {})
            if table:
                base["strength"] = table[given.get("scenario", "class")]
        unknown = set(given) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidArgument(f"unknown continual setting(s) {', '.join(sorted(unknown))}")
        cfg = cls(**{**base, **given})
        for name in ("iterations", "batch_size", "fisher_samples"):
            if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
                raise InvalidArgument(f"{name.replace('_', ' ')} must be a whole number >= 1, got {getattr(cfg, name)!r}")
        if cfg.epochs is not None and not cfg.epochs > 0:
            raise InvalidArgument(f"epochs must be > 0, got {cfg.epochs!r}")
        if not cfg.lr > 0:
            raise InvalidArgument(f"lr must be > 0, got {cfg.lr!r}")
        return cfg


class Learner:
    """The benchmark's images on the device, per task, and what strategies ask of them."""

    def __init__(self, bench: Benchmark, train_images, train_labels, test_images, test_labels, device):
        self.bench, self.device, self.seen = bench, device, 1
        self.x_train, self.y_train, self.x_test, self.y_test = [], [], [], []
        for t, task in enumerate(bench.tasks):
            self.x_train.append(torch.from_numpy(task_images(task, train_images[task.train_rows])).to(device))
            self.y_train.append(torch.from_numpy(bench.label_of(t, train_labels[task.train_rows])).to(device))
            self.x_test.append(torch.from_numpy(task_images(task, test_images[task.test_rows])).to(device))
            self.y_test.append(torch.from_numpy(bench.label_of(t, test_labels[task.test_rows])).to(device))
        self.task_masks = torch.stack([self.active_mask(t, t + 1) for t in range(len(bench.tasks))])

    def active_mask(self, t: int, seen: int) -> torch.Tensor:
        mask = torch.zeros(self.bench.outputs, dtype=torch.bool, device=self.device)
        mask[torch.from_numpy(self.bench.active(t, seen))] = True
        return mask

    def images(self, t: int, rows) -> torch.Tensor:
        return self.x_train[t][torch.as_tensor(rows, device=self.device)].float().div(255).unsqueeze(1)

    def labels_of(self, t: int, rows) -> torch.Tensor:
        return self.y_train[t][torch.as_tensor(rows, device=self.device)]

    def gather(self, items: list[tuple[int, int]]):
        """Stored (task, row) pairs as a batch: images, labels, task ids."""
        tasks = torch.tensor([t for t, _ in items], dtype=torch.long, device=self.device)
        x = torch.stack([self.x_train[t][r] for t, r in items]).float().div(255).unsqueeze(1)
        y = torch.stack([self.y_train[t][r] for t, r in items])
        return x, y, tasks

    def draw(self, tasks: list[int], n: int, gen: torch.Generator):
        """n training images drawn uniformly from the union of `tasks`."""
        sizes = torch.tensor([len(self.y_train[t]) for t in tasks])
        pick = torch.randint(int(sizes.sum()), (n,), generator=gen)
        bounds = torch.cumsum(sizes, 0)
        which = torch.searchsorted(bounds, pick, right=True)
        rows = pick - torch.cat([torch.zeros(1, dtype=torch.long), bounds[:-1]])[which]
        return self.gather([(tasks[w], r) for w, r in zip(which.tolist(), rows.tolist())])

    def loss(self, net, x, y, tasks) -> torch.Tensor:
        """Cross-entropy among each image's competing outputs: its task's (task scenario), all (domain), every
        task seen so far (class)."""
        if self.bench.scenario == "task":
            active = self.task_masks[tasks]
        else:
            active = self.active_mask(0, self.seen).expand(len(y), -1)
        return F.cross_entropy(masked_logits(net(x), active), y)

    @torch.no_grad()
    def accuracy(self, net, j: int, seen: int, batch: int = 2048) -> float:
        net.eval()
        active = self.active_mask(j, seen)
        right = 0
        for i in range(0, len(self.y_test[j]), batch):
            x = self.x_test[j][i:i + batch].float().div(255).unsqueeze(1)
            right += int((masked_logits(net(x), active).argmax(1) == self.y_test[j][i:i + batch]).sum())
        net.train()
        return right / len(self.y_test[j])

    def row(self, net, seen: int) -> list[float]:
        return [self.accuracy(net, j, seen) for j in range(len(self.bench.tasks))]


def _new_net(cfg: ContinualConfig, outputs: int, device, seed: int):
    from mnistlab.models import create_model

    torch.manual_seed(seed)
    net = create_model(cfg.model, num_classes=outputs, **dict(cfg.model_args or {}))
    if not isinstance(net, torch.nn.Module):
        raise InvalidArgument(f"continual learning trains neural nets; {cfg.model!r} is not one")
    return net.to(device)


def _train_steps(net, learner: Learner, strategy, tasks: list[int], t: int, cfg: ContinualConfig, gen, draw=None):
    """`iterations` steps on task t (or `epochs` passes over its images): the loop's inner part (`draw`: where the
    batches come from, GDumb's buffer)."""
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    net.train()
    total = 0.0
    steps = cfg.iterations if cfg.epochs is None else max(1, math.ceil(cfg.epochs * len(learner.y_train[t]) / cfg.batch_size))
    for _ in range(steps):
        x, y, ids = draw(gen) if draw else learner.draw(tasks, cfg.batch_size, gen)
        current = x
        if draw is None:
            x, y, ids = strategy.batch(x, y, t, learner)
        loss = learner.loss(net, x, y, ids)
        if draw is None:
            loss = strategy.current_weight(t) * loss + strategy.penalty(net, current)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if draw is None:
            strategy.after_backward(net, learner)
        opt.step()
        if draw is None:
            strategy.after_step(net)
        total += float(loss.detach())
    return total / steps


def run_continual(out: str | Path | None = None, *, preset: str | None = None, data_dir=None, device: str = "cpu",
                  progress: bool = False, stop_after: int | None = None, **given) -> dict:
    """Train and evaluate (or resume, or read back) a continual run; its metrics (see continual/metrics.py)."""
    from mnistlab.data import load_dataset
    from mnistlab.run.files import run_lock

    cfg = ContinualConfig.resolve(preset, **given)
    out = Path(out) if out else Path("runs") / f"continual-{cfg.benchmark}-{cfg.scenario}-{cfg.strategy}-s{cfg.seed}"
    strategy = make_strategy(cfg.strategy, Settings(cfg.strength, cfg.gamma, cfg.temperature, cfg.damping, cfg.buffer,
                                                    cfg.fisher_samples, cfg.distillation), cfg.seed)
    train_ds, test_ds = load_dataset(cfg.dataset, "train", data_dir=data_dir), load_dataset(cfg.dataset, "test", data_dir=data_dir)
    bench = make_benchmark(cfg.benchmark, cfg.scenario, np.asarray(train_ds.labels), np.asarray(test_ds.labels),
                           dataset=cfg.dataset, tasks=cfg.tasks, seed=cfg.seed, class_order=cfg.class_order)
    _new_net(cfg, bench.outputs, "cpu", cfg.seed)  # a model that cannot be built fails here, before the run folder
    ensure_dir(out, "pass --out to a writable folder")
    with run_lock(out, resume="run the same mnistlab continual command again"), kept_threads():
        return _run(out, cfg, bench, strategy, train_ds, test_ds, device, progress, stop_after)


def _run(out, cfg, bench, strategy, train_ds, test_ds, device, progress, stop_after):
    from mnistlab.run.files import append_jsonl, load_checkpoint, save_torch  # looked up at run time (tests/killed.py)

    config = {**asdict(cfg), "tasks_built": bench.describe()}
    if (out / "metrics.json").exists():
        return json.loads((out / "metrics.json").read_text())
    if (out / "config.json").exists():
        saved = {**asdict(ContinualConfig()), **json.loads((out / "config.json").read_text())}  # settings added since: their defaults
        if saved != json.loads(json.dumps(config)):
            raise RunError(f"{out} holds a continual run with other settings; choose another --out")
    else:
        atomic_write_json(out / "config.json", config)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(device)
    learner = Learner(bench, np.asarray(train_ds.images), np.asarray(train_ds.labels), np.asarray(test_ds.images),
                      np.asarray(test_ds.labels), device)
    net = _new_net(cfg, bench.outputs, device, cfg.seed)
    rows, history, seconds, start = [], [], 0.0, 0
    baseline = learner.row(net, 1)  # the untrained net: forward transfer's reference
    if (out / "checkpoint.pt").exists():
        ckpt = load_checkpoint(out / "checkpoint.pt")
        net.load_state_dict(ckpt["model"])
        strategy.load_state_dict(ckpt["strategy"])
        if hasattr(strategy, "restore"):
            strategy.restore(net)
        rows, history, seconds, start = ckpt["rows"], ckpt["history"], ckpt["seconds"], ckpt["task"]
        log.info("resuming %s after task %d", out, start)
    for t in range(start, len(bench.tasks)):
        t0 = time.perf_counter()
        net, loss = _learn_task(net, learner, strategy, cfg, t)
        seconds += time.perf_counter() - t0
        rows.append(learner.row(net, t + 1))
        history.append({"task": t, "name": bench.tasks[t].name, "loss": loss, "accuracy": rows[-1],
                        "average_accuracy": float(np.mean(rows[-1][: t + 1])), "seconds": seconds})
        save_torch(out / "checkpoint.pt", {"model": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                                           "strategy": _cpu(strategy.state_dict()), "rows": rows, "history": history,
                                           "seconds": seconds, "task": t + 1})
        append_jsonl(out / "metrics.jsonl", history)
        if progress:
            log.warning("task %d/%d (%s): mean accuracy on the tasks so far %.4f", t + 1, len(bench.tasks),
                        bench.tasks[t].name, history[-1]["average_accuracy"])
        if stop_after is not None and t + 1 >= stop_after and t + 1 < len(bench.tasks):
            return {"stopped_after": t + 1}
    return _finish(out, cfg, bench, rows, baseline, seconds)


def _learn_task(net, learner: Learner, strategy, cfg: ContinualConfig, t: int):
    """Task t learnt: (the net to evaluate, the mean loss of its steps)."""
    learner.seen = t + 1
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + t)
    rows_t = np.arange(len(learner.y_train[t]))
    if getattr(strategy, "retrains", False):  # GDumb: the task's images only fill the buffer
        strategy.after_task(net, learner, t, rows_t)
        net = _new_net(cfg, learner.bench.outputs, learner.device, cfg.seed + t + 1)
        loss = _train_steps(net, learner, strategy, [t], t, cfg, gen,
                            draw=lambda g: learner.gather(strategy.sample(cfg.batch_size)))
        return net, loss
    tasks = strategy.tasks_to_draw(t) if hasattr(strategy, "tasks_to_draw") else [t]
    loss = _train_steps(net, learner, strategy, tasks, t, cfg, gen)
    strategy.after_task(net, learner, t, rows_t)
    return net, loss


def _finish(out: Path, cfg: ContinualConfig, bench: Benchmark, rows, baseline, seconds: float) -> dict:
    """metrics.json and the two pictures."""
    result = {"benchmark": cfg.benchmark, "scenario": cfg.scenario, "strategy": cfg.strategy, "dataset": cfg.dataset,
              "tasks": [task.name for task in bench.tasks], "seed": cfg.seed, **summary(rows, baseline),
              "seconds": seconds, "run": str(out)}
    from mnistlab.continual.plots import curves_figure, matrix_figure
    from mnistlab.evaluate.plots import to_png
    from mnistlab.fileio import atomic_write_bytes

    atomic_write_bytes(out / "accuracy-matrix.png", to_png(matrix_figure(result)))
    atomic_write_bytes(out / "accuracy-per-task.png", to_png(curves_figure(result)))
    atomic_write_json(out / "metrics.json", result)
    return result


def _cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    return obj
