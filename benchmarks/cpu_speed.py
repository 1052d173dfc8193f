"""The speedrun recipes on this CPU in fp32 (the plain eager path) and in the engine's choice (bf16 where
the CPU has AMX or AVX512-BF16), in one process one after the other, with the reference loop of
`--against reference` in the same run. Prints the Markdown table of BENCHMARKS.md.

    .venv/bin/python benchmarks/cpu_speed.py [--runs 5] [--runs-995 2]
"""

from __future__ import annotations

import argparse
import datetime

import torch

from mnistlab.bench.speedrun import reference_run, speedrun
from mnistlab.training.engine import cpu_has_bf16, hardware_name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--runs-995", type=int, default=2)
    args = ap.parse_args()
    cpu = torch.device("cpu")
    print(f"<!-- {datetime.date.today()}, {hardware_name(cpu)}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"bf16 native: {cpu_has_bf16()} -->")
    print("| recipe | precision | runs | seconds per run | test accuracy (min) |")
    print("| --- | --- | ---: | ---: | ---: |")
    means = {}
    for target, runs in ((0.99, args.runs), (0.995, args.runs_995)):
        for precision in ("fp32", "auto"):
            r = speedrun("mnist", target, runs, device="cpu", precision=precision)
            means[(target, r["precision"])] = r["mean_seconds"]
            print(f"| {r['recipe']} | {r['precision']} | {runs} | {r['mean_seconds']:.2f} ± {r['std_seconds']:.2f} | "
                  f"{r['mean_accuracy']:.2%} ({r['min_accuracy']:.2%}) |", flush=True)
    ref = reference_run("mnist", 0.99)
    print(f"\nreference (the guides' CNN, plain loop, batch 32, fp32): {ref['seconds']:.1f} s, {ref['epochs']} epochs, "
          f"{ref['test_accuracy']:.2%}")
    for target in (0.99, 0.995):
        fp32, best = means[(target, "fp32")], min(means[k] for k in means if k[0] == target)
        print(f"target {target}: fp32 {fp32:.2f} s, engine's choice {best:.2f} s: {fp32 / best:.2f}x; "
              f"reference / engine's choice: {ref['seconds'] / best:.1f}x")


if __name__ == "__main__":
    main()
