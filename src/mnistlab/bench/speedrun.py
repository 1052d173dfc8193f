"""`mnistlab speedrun`: a fixed recipe trained to a target test accuracy as fast as possible, timed
end to end (from a cached dataset not yet loaded, to the final test accuracy), and optionally the
reference beside it in the same invocation and on the same device: the guides' CNN in a plain
PyTorch loop (Adam, lr 1e-3, batch 32, fp32) until it reaches the same target or 5 epochs.

The recipes are fixed per device kind: a CPU wants small batches, a GPU large ones (and a wider net
where that is free)."""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np

from mnistlab.data import get_spec
from mnistlab.errors import InvalidArgument

# device kind -> dataset -> [(the accuracy a recipe is built to reach, recipe)], cheapest first; a run takes
# the first that suffices. Every other device kind (mps) takes the CPU's recipes.
RECIPES = {
    "cpu": {"mnist": [(0.990, "speedrun"), (0.995, "speedrun-995")], "fashion-mnist": [(0.920, "speedrun-fashion")]},
    "cuda": {"mnist": [(0.990, "speedrun-gpu"), (0.995, "speedrun-995-gpu")],
             "fashion-mnist": [(0.920, "speedrun-fashion-gpu")]},
}


def recipe_for(dataset: str, target: float, device_type: str = "cpu") -> str:
    recipes = RECIPES.get(device_type, RECIPES["cpu"])[dataset]
    for reach, name in recipes:
        if target <= reach + 1e-9:
            return name
    return recipes[-1][1]


def _one_run(dataset: str, recipe: str, seed: int, device: str, precision: str, threads: int | None, data_dir) -> dict:
    from mnistlab.training import train

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()  # the dataset is in the cache, not yet in this process
        run = train(dataset=dataset, preset=recipe, seed=seed, device=device, precision=precision, threads=threads,
                    out=f"{tmp}/run", data_dir=data_dir)
        seconds = time.perf_counter() - t0
        m = run.metrics
        return {"seed": seed, "seconds": seconds, "test_accuracy": m["test_accuracy"], "train_seconds": m["train_seconds"],
                "precision": m["precision"], "step": m["step"]}


def _warm_up(recipe_name: str, engine, spec) -> float:
    """The recipe's net and training step on random tensors, untimed, at every batch shape a run will use (full
    batches, the epoch's last partial one, the evaluation's): PyTorch builds its CPU kernels on first use, and a
    GPU starts its CUDA context and lets cuDNN time its kernels once per shape and process, costs of starting
    the process, not of training. No real data is seen. Returns the seconds it took (the start-up, reported apart)."""
    import torch

    from mnistlab.config import resolve_config
    from mnistlab.models import create_model
    from mnistlab.split import split_indices
    from mnistlab.training.step import GraphStep, make_optimizer, make_step
    from mnistlab.training.tensors import evaluate_net
    from mnistlab.vocabulary import parse_augment

    t0 = time.perf_counter()
    cfg = resolve_config({"preset": recipe_name})
    if engine.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer sets it
    split = split_indices(np.zeros(spec.sizes["train"], np.int64), cfg, spec.num_classes)
    train_idx, calib_idx = split.train, split.calibration
    bs = cfg.batch_size
    net = create_model(cfg.model, spec.num_classes, **cfg.model_args).to(engine.device, memory_format=torch.channels_last)
    opt = make_optimizer(cfg.optimizer, net.parameters(), cfg.lr, cfg.weight_decay, engine)
    step = make_step(net, opt, engine, batch_size=bs, label_smoothing=cfg.label_smoothing, augment=parse_augment(cfg.augment))
    sizes = [bs] * (GraphStep.WARMUP_STEPS + 2) + ([len(train_idx) % bs] if len(train_idx) % bs >= 2 else [])
    for n in sizes:  # the eager warm-up, the graph's capture and a replay, the last partial batch
        step(torch.rand(n, 1, 28, 28, device=engine.device), torch.arange(n, device=engine.device) % spec.num_classes,
             cfg.lr, torch.Generator().manual_seed(0) if engine.device.type == "cpu" else None)
    step.totals()
    for n in {spec.sizes["test"], len(calib_idx)} - {0}:  # the evaluations' batches, the last one included
        x = torch.rand(n, 1, 28, 28, device=engine.device).contiguous(memory_format=torch.channels_last)
        evaluate_net(net, x, torch.arange(n, device=engine.device) % spec.num_classes, cfg.eval_batch_size)
    return time.perf_counter() - t0


def reference_run(dataset: str, target: float, seed: int = 0, max_epochs: int = 5, data_dir=None, device="cpu") -> dict:
    """The guides' CNN in a plain loop over in-memory tensors on `device`, evaluated after each epoch until `target`."""
    import torch
    import torch.nn.functional as F

    from mnistlab.data import load_dataset
    from mnistlab.models import create_model

    t0 = time.perf_counter()
    train_ds, test_ds = load_dataset(dataset, "train", data_dir=data_dir), load_dataset(dataset, "test", data_dir=data_dir)
    x = torch.from_numpy(np.asarray(train_ds.images, np.float32) / 255).unsqueeze(1).to(device)
    y = torch.from_numpy(np.array(train_ds.labels, np.int64)).to(device)
    xt = torch.from_numpy(np.asarray(test_ds.images, np.float32) / 255).unsqueeze(1).to(device)
    yt = torch.from_numpy(np.array(test_ds.labels, np.int64)).to(device)
    torch.manual_seed(seed)
    net = create_model("cnn", len(train_ds.classes)).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    acc, epochs = 0.0, 0
    for epoch in range(max_epochs):
        net.train()
        perm = torch.randperm(len(x), device=device)
        for i in range(0, len(x), 32):
            idx = perm[i:i + 32]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.inference_mode():
            acc = float(sum((net(xt[i:i + 1000]).argmax(1) == yt[i:i + 1000]).sum().item() for i in range(0, len(xt), 1000)) / len(xt))
        epochs = epoch + 1
        if acc >= target:
            break
    return {"seconds": time.perf_counter() - t0, "test_accuracy": acc, "epochs": epochs, "reached": acc >= target,
            "device": str(device)}


def speedrun(dataset: str = "mnist", target: float = 0.99, runs: int = 5, device: str = "auto", threads: int | None = None,
             against: str | None = None, data_dir=None, progress=None, precision: str = "auto") -> dict:
    import torch

    from mnistlab.data import fetch
    from mnistlab.training.engine import hardware_name, resolve_engine

    spec = get_spec(dataset)
    if spec.name not in RECIPES["cpu"]:
        raise InvalidArgument(f"no speedrun recipe for {spec.name}; recipes: {', '.join(RECIPES['cpu'])}")
    if runs < 1:
        raise InvalidArgument(f"runs must be >= 1, got {runs}")
    if not 0 < target < 1:
        raise InvalidArgument(f"target must be between 0 and 1, got {target}")
    if against not in (None, "reference"):
        raise InvalidArgument(f"--against takes 'reference', got {against!r}")
    fetch(spec, data_dir=data_dir)  # outside the timed span: the span starts with the data in the cache
    if threads:
        torch.set_num_threads(threads)
    engine = resolve_engine(device, precision, "auto", optimizer="adam")  # the recipes all train with Adam
    recipe = recipe_for(spec.name, target, engine.device.type)
    startup = _warm_up(recipe, engine, spec)
    results = []
    for seed in range(runs):
        results.append(_one_run(spec.name, recipe, seed, device, precision, threads, data_dir))
        if progress:
            progress(results[-1])
    secs = [r["seconds"] for r in results]
    accs = [r["test_accuracy"] for r in results]
    out = {"dataset": spec.name, "recipe": recipe, "target": target, "runs": results,
           "mean_seconds": statistics.fmean(secs), "std_seconds": statistics.stdev(secs) if len(secs) > 1 else 0.0,
           "mean_accuracy": statistics.fmean(accs), "std_accuracy": statistics.stdev(accs) if len(accs) > 1 else 0.0,
           "min_accuracy": min(accs), "reached_target": statistics.fmean(accs) >= target,
           "startup_seconds": startup, **engine.describe(), "hardware": hardware_name(engine.device),
           "threads": torch.get_num_threads(), "torch": torch.__version__}
    if against == "reference":
        ref = reference_run(spec.name, target, data_dir=data_dir, device=engine.device)
        out["reference"] = ref
        out["speedup"] = ref["seconds"] / out["mean_seconds"]
    return out

