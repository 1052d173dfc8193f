"""The training step alone, without the trainer around it: images per second of `make_step` for a net, a
batch size, an augmentation (applied as the trainer does, a chunk of batches at a time), a precision and a way
of running the step (eager or CUDA graph), on random images already on the device. Tells where an epoch's
time goes: the step, the augmentation, or the loop.

    python benchmarks/step_speed.py --device cuda              # the GPU table of BENCHMARKS.md
    python benchmarks/step_speed.py --device cpu --steps 20    # a smoke run on a CPU
"""

from __future__ import annotations

import argparse
import time

import torch

from mnistlab.models import create_model
from mnistlab.training.augment import parse_augment
from mnistlab.training.batches import CHUNK_BATCHES, epoch_batches
from mnistlab.training.engine import hardware_name, resolve_engine
from mnistlab.training.step import make_optimizer, make_step

# (net, model settings, batch size, augmentation, batches augmented at once: 1 is a draw per batch)
CASES = [
    ("speednet", {"widths": [32, 64, 128]}, 512, "none", CHUNK_BATCHES),
    ("resnet", {}, 128, "none", CHUNK_BATCHES),
    ("resnet", {}, 128, "strong", 1),
    ("resnet", {}, 128, "strong", CHUNK_BATCHES),
    ("resnet", {}, 512, "strong", CHUNK_BATCHES),
]


def images_per_second(model: str, model_args: dict, bs: int, augment: str, chunk: int, device: str, precision: str,
                      step_kind: str, steps: int) -> float:
    """The step fed as the trainer feeds it: batches of a shuffled epoch, augmented a chunk of batches at a time."""
    engine = resolve_engine(device, precision, step_kind, optimizer="adamw")
    if engine.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer sets it
    torch.manual_seed(0)
    net = create_model(model, 10, **model_args).to(engine.device, memory_format=torch.channels_last)
    opt = make_optimizer("adamw", net.parameters(), 1e-3, 5e-4, engine)
    aug = parse_augment(augment)
    step = make_step(net, opt, engine, batch_size=bs, label_smoothing=0.1, augment=aug)
    n = (steps + 5) * bs
    x = torch.rand(n, 1, 28, 28, device=engine.device)
    y = torch.randint(0, 10, (n,), device=engine.device)
    gen = torch.Generator().manual_seed(0) if engine.device.type == "cpu" else None
    batches = epoch_batches(x, y, torch.randperm(n, device=engine.device), bs, aug, gen, chunk=chunk)
    for _ in range(5):  # warm-up (and the capture of a graph)
        _, xb, yb = next(batches)
        step(xb, yb, 1e-3, gen)
    step.totals()
    t0 = time.perf_counter()
    for _, xb, yb in batches:
        step(xb, yb, 1e-3, gen)
    step.totals()  # waits for the device
    return steps * bs / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    dev = torch.device(args.device)
    steps_kinds = ("eager", "cuda-graph") if dev.type == "cuda" else ("eager",)
    print(f"step alone on {hardware_name(dev)}, torch {torch.__version__}, {args.steps} timed steps each")
    print("| net | batch | augment (batches at once) | precision | step | images/s |\n| --- | ---: | --- | --- | --- | ---: |")
    for model, model_args, bs, augment, chunk in CASES:
        for precision in ("bf16", "fp32") if dev.type == "cuda" else ("auto",):
            for kind in steps_kinds:
                try:
                    ips = images_per_second(model, model_args, bs, augment, chunk, args.device, precision, kind, args.steps)
                    shown = f"{ips:,.0f}"
                except Exception as exc:  # noqa: BLE001 - a benchmark row that fails says why and the table goes on
                    shown = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                width = "-".join(map(str, model_args.get("widths", []))) or "default"
                print(f"| {model} ({width}) | {bs} | {augment} ({chunk}) | {precision} | {kind} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
