"""IRM's Table 1 on Colored MNIST (Arjovsky et al. 2019), with its published settings (the presets
erm-colored-mnist, irm-colored-mnist, erm-grayscale): N restarts (seeds 0..N-1) of each, printed as
mean +- std of the training environments' and the test environment's accuracy, beside the paper's row.

Run: .venv/bin/python benchmarks/irm_colored_mnist.py [--restarts 10] [--presets erm-colored-mnist ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

PAPER = {"erm-colored-mnist": ("87.4 +- 0.2", "17.1 +- 0.6"), "irm-colored-mnist": ("70.8 +- 0.9", "66.9 +- 2.5"),
         "erm-grayscale": ("73.5", "73.0")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--restarts", type=int, default=10)
    ap.add_argument("--presets", nargs="+", default=list(PAPER))
    args = ap.parse_args()
    from mnistlab.training import train

    print("| preset | restarts | train (ours) | test (ours) | train (paper) | test (paper) | seconds per restart |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for preset in args.presets:
        train_acc, test_acc, seconds = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for seed in range(args.restarts):
                t0 = time.perf_counter()
                m = train(preset=preset, seed=seed, out=f"{tmp}/{seed}").metrics
                seconds.append(time.perf_counter() - t0)
                train_acc.append(100 * m["train_accuracy"])
                test_acc.append(100 * m["test_accuracy"])
        paper = PAPER.get(preset, ("-", "-"))
        print(f"| {preset} | {args.restarts} | {np.mean(train_acc):.1f} +- {np.std(train_acc):.1f} | "
              f"{np.mean(test_acc):.1f} +- {np.std(test_acc):.1f} | {paper[0]} | {paper[1]} | {np.mean(seconds):.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
