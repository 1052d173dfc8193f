"""Is an mnistlab epoch as fast as a plain PyTorch loop? Same model, batch size and optimizer, data in
memory as tensors; the plain loop is the reference the speed issue names. Alternates the two, `--rounds` times.

Run: .venv/bin/python benchmarks/epoch_overhead.py --model cnn --batch-size 64 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F


def plain_epoch(model_name: str, bs: int, x, y, seed: int) -> float:
    from mnistlab.models import create_model

    torch.manual_seed(seed)
    net = create_model(model_name)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    perm = torch.randperm(len(x))
    t0 = time.perf_counter()
    for i in range(0, len(x), bs):
        idx = perm[i:i + bs]
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    import mnistlab
    from mnistlab.training import train

    (xs, ys), _ = mnistlab.load_data("mnist")
    x = torch.from_numpy(np.asarray(xs, np.float32) / 255).unsqueeze(1)
    y = torch.from_numpy(np.array(ys, np.int64))
    plain, ours = [], []
    def mnistlab_epoch(r):
        with tempfile.TemporaryDirectory() as tmp:
            run = train(args.model, "mnist", out=f"{tmp}/r", epochs=1, batch_size=args.batch_size, optimizer="adam",
                        schedule="none", lr=1e-3, augment="none", seed=r)
            return run.history[0]["seconds"]

    for r in range(args.rounds):  # alternate which goes first, so neither profits from the order
        if r % 2:
            ours.append(mnistlab_epoch(r))
            plain.append(plain_epoch(args.model, args.batch_size, x, y, r))
        else:
            plain.append(plain_epoch(args.model, args.batch_size, x, y, r))
            ours.append(mnistlab_epoch(r))
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"| {args.model} | {args.batch_size} | {p:.1f} | {o:.1f} | {o / p:.2f} |")


if __name__ == "__main__":
    main()
