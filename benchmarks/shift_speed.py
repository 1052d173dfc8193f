"""DomainBed's MNIST CNN on this machine: the seconds of one training step (5 environments x 64 images, Adam, as a
Rotated MNIST step) and the images per second of an evaluation, in PyTorch's default memory format and in
channels_last (what `train_across` uses for nets with convolutions), and, where the CPU computes bf16 natively,
channels_last under bf16 autocast (`--precision bf16`; evaluations stay fp32). Says what a DomainBed run costs here:
5,001 steps plus an evaluation of every environment's held-out part at each checkpoint.

Run: .venv/bin/python benchmarks/shift_speed.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from mnistlab.models import create_model
from mnistlab.training.engine import cpu_has_bf16, hardware_name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{hardware_name(torch.device('cpu'))}, {args.threads} thread(s), PyTorch {torch.__version__}")
    setups = [("default", torch.contiguous_format, None), ("channels_last", torch.channels_last, None)]
    if cpu_has_bf16():
        setups.append(("channels_last, bf16", torch.channels_last, torch.bfloat16))
    for name, fmt, dtype in setups:
        torch.manual_seed(0)
        net = create_model("domainbed-cnn", 10).to(memory_format=fmt)
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        x, y = torch.rand(5 * 64, 1, 28, 28).to(memory_format=fmt), torch.randint(10, (5 * 64,))

        def step():
            with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
                logits = net(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        for _ in range(3):
            step()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        seconds = (time.perf_counter() - t0) / args.steps
        net.eval()
        images = torch.rand(1000, 1, 28, 28).to(memory_format=fmt)
        with torch.inference_mode():
            net(images)
            t0 = time.perf_counter()
            for _ in range(3):
                net(images)
            rate = 3 * len(images) / (time.perf_counter() - t0)
        print(f"{name:>19}: a step of 320 images {seconds:.3f} s (5,001 steps: {5001 * seconds / 3600:.2f} h), "
              f"evaluation {rate:,.0f} images/s", flush=True)


if __name__ == "__main__":
    main()
