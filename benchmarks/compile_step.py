"""Does `torch.compile` pay for the speedrun's training step on this CPU? One epoch (60,000 random images,
batch 128, the speedrun's net in channels_last, Adam, label smoothing), eager against compiled, alternating,
each in the same process; "first step" is the time to the first optimiser step (for compiled: compilation).

Run: .venv/bin/python benchmarks/compile_step.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from mnistlab.models import create_model


def epoch(x, y, compiled: bool, bs: int = 128) -> tuple[float, float]:
    torch.manual_seed(0)
    net = create_model("speednet").to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), 4e-3)
    step_net = torch.compile(net) if compiled else net
    t0, first = time.perf_counter(), None
    for i in range(0, len(x), bs):
        loss = F.cross_entropy(step_net(x[i:i + bs]), y[i:i + bs], label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if first is None:
            first = time.perf_counter() - t0
    return time.perf_counter() - t0, first


def main() -> None:
    x = torch.rand(60000, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (60000,))
    print("| step | epoch s | first step s |\n| --- | ---: | ---: |")
    for name, compiled in (("eager", False), ("compiled", True), ("eager", False), ("compiled (cache warm)", True)):
        total, first = epoch(x, y, compiled)
        print(f"| {name} | {total:.1f} | {first:.2f} |")


if __name__ == "__main__":
    main()
