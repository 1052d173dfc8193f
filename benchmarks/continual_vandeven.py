"""van de Ven & Tolias 2019's Split MNIST table, reproduced with `mnistlab continual --preset vandeven-split-mnist`
(MLP 2x400, 2,000 iterations a task, batch 128, Adam 1e-3; EWC's and SI's strengths per scenario and LwF's
distillation averaged over the classes, from their code), and what a replay buffer of 100, 500 and 2,000 images buys
in the class-incremental scenario. Prints a markdown table for BENCHMARKS.md.

    .venv/bin/python benchmarks/continual_vandeven.py [--seeds 1] [--out runs/vandeven] [--threads N]
"""

import argparse
import os
import time
from pathlib import Path

import torch

from mnistlab.continual import run_continual
from mnistlab.devices import hardware_name
from mnistlab.evaluate.stats import over_seeds

PUBLISHED = {  # van de Ven & Tolias 2019, Table (Split MNIST), average accuracy in percent
    ("class", "naive"): 19.90, ("class", "ewc"): 20.01, ("class", "online-ewc"): 19.96, ("class", "si"): 19.99,
    ("class", "lwf"): 23.85, ("task", "naive"): 87.2, ("task", "ewc"): 98.6, ("task", "si"): 99.1,
}
RUNS = [(s, st, {}) for s in ("class", "task") for st in ("naive", "ewc", "si", "lwf")] + \
       [("class", "replay", {"buffer": n}) for n in (100, 500, 2000)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--out", default="runs/vandeven")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    print(f"{hardware_name(torch.device('cpu'))}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}")
    print("| scenario | strategy | average accuracy (ours, per seed) | published | backward transfer | seconds |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for scenario, strategy, extra in RUNS:
        accs, bwts, secs = [], [], []
        for seed in range(a.seeds):
            name = f"{scenario}-{strategy}{extra.get('buffer', '')}-s{seed}"
            r = run_continual(Path(a.out) / name, preset="vandeven-split-mnist", scenario=scenario, strategy=strategy,
                              seed=seed, threads=a.threads, **extra)
            accs.append(r["average_accuracy"])
            bwts.append(r["backward_transfer"])
            secs.append(r["seconds"])
        label = strategy + (f" (buffer {extra['buffer']})" if extra else "")
        pub = PUBLISHED.get((scenario, strategy))
        spread = over_seeds(accs)
        mean = f" (mean {100 * spread['mean']:.2f}, 95% interval {100 * spread['interval'][0]:.2f}-{100 * spread['interval'][1]:.2f})" \
            if spread["interval"] else ""
        print(f"| {scenario} | {label} | {', '.join(f'{100 * x:.2f}' for x in accs)}{mean} | "
              f"{'' if pub is None else f'{pub:.2f}'} | {', '.join(f'{x:+.3f}' for x in bwts)} | "
              f"{', '.join(f'{x:.0f}' for x in secs)} |", flush=True)


if __name__ == "__main__":
    main()
