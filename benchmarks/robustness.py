"""BENCHMARKS.md's robustness tables: `mnistlab robustness` on each run named, one row per run, and the time of one
epoch of adversarial training against the plain epoch of the same recipe.

    .venv/bin/python benchmarks/robustness.py RUN... [--attack-images 1000]   # the table (each run's robustness.json)
    .venv/bin/python benchmarks/robustness.py --epoch-time                     # robust-mnist's epoch against plain

Each run is measured alone, one after another (never two heavy processes at once on a small CPU).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from mnistlab.devices import hardware_name, pick_device
from mnistlab.robustness import measure_robustness
from mnistlab.run import Run


def table(paths: list[str], attack_images: int) -> None:
    rows = []
    for path in paths:
        run = Run(path)
        t0 = time.perf_counter()
        r = measure_robustness(run, attack_images=attack_images)
        worst = sorted(r["corruptions"].items(), key=lambda kv: kv[1])[:3]
        adv = r["adversarial"]
        attacked = " | ".join(f"{adv['fgsm'][e]:.1%} / {adv['pgd'][e]:.1%}" if "pgd" in adv else "-" for e in ("0.1", "0.2", "0.3"))
        rows.append(f"| {path} ({run.config['model']}) | {r['clean']:.2%} | {r['mean_corruption_accuracy']:.2%} | "
                    + ", ".join(f"{k.replace('_', ' ')} {v:.1%}" for k, v in worst)
                    + f" | {attacked} | {time.perf_counter() - t0:.0f} s |")
    print(f"{hardware_name(pick_device('cpu'))}; PGD-40 of 0.01 from a random start, first {attack_images:,} test images")
    print("| run | clean | MNIST-C mean | worst three | FGSM / PGD eps 0.1 | eps 0.2 | eps 0.3 | seconds |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))


def epoch_time() -> None:
    """One epoch of robust-mnist (FGSM from a random start) and one of the same recipe without the attack, alone."""
    from mnistlab.training import train

    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("plain", {"adversarial": "none"}), ("fgsm", {}), ("pgd-7", {"adversarial": "pgd", "adversarial_steps": 7,
                                                                                         "adversarial_step_size": 0.1})):
            run = train(preset="robust-mnist", epochs=1, out=f"{tmp}/{name}", calibration_split=0, **extra)
            print(f"{name}: {run.metrics['train_seconds']:.1f} s for one epoch of 60,000 images "
                  f"({60000 / run.metrics['train_seconds']:,.0f} img/s), test {run.metrics['test_accuracy']:.2%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--attack-images", type=int, default=1000)
    ap.add_argument("--epoch-time", action="store_true")
    args = ap.parse_args()
    if args.epoch_time:
        epoch_time()
    if args.runs:
        table(args.runs, args.attack_images)


if __name__ == "__main__":
    main()
