"""What each technique of the guides brings, measured one at a time against a baseline on MNIST and
Fashion-MNIST: learning-rate schedule, dropout, augmentation, batch norm, and an ensemble.

Run: .venv/bin/python benchmarks/techniques.py [--datasets mnist fashion-mnist] [--seeds 2]
Prints a Markdown table (mean test accuracy over the seeds) for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

# (row, model, settings): each row changes one thing from the row it is compared with
ROWS = [
    ("baseline: the guides' CNN, Adam 3e-3 one-cycle, 4 epochs", "cnn", {}),
    ("schedule: constant learning rate 1e-3 (Keras's default) instead of one-cycle", "cnn", {"schedule": "none", "lr": 1e-3}),
    ("dropout 0.25 before the dense layer", "cnn", {"dropout": 0.25}),
    ("augmentation: light (rotate 10, shift 10%, scale 10%)", "cnn", {"augment": "light"}),
    ("4-conv net (cnn-bn, width 16), no batch norm, no dropout", "cnn-bn", {"model_args": {"width": 16, "batch_norm": False},
                                                                          "dropout": 0.0, "epochs": 4, "augment": "none"}),
    ("the same net with batch norm", "cnn-bn", {"model_args": {"width": 16}, "dropout": 0.0, "epochs": 4, "augment": "none"}),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    from mnistlab.training import train
    from mnistlab.training.ensemble import make_ensemble

    print(f"| dataset | technique | test accuracy (mean of {args.seeds} seeds) | spread | train s |")
    print("| --- | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            baseline_runs = []
            for i, (label, model, settings) in enumerate(ROWS):
                runs = [train(model, dataset, out=f"{tmp}/{dataset}-{i}-{seed}", seed=seed, **settings) for seed in range(args.seeds)]
                if i == 0:
                    baseline_runs = runs
                accs = [r.metrics["test_accuracy"] for r in runs]
                secs = statistics.mean(r.metrics["train_seconds"] for r in runs)
                spread = max(accs) - min(accs)
                print(f"| {dataset} | {label} | {statistics.mean(accs):.2%} | {spread:.2%} | {secs:.1f} |", flush=True)
            if len(baseline_runs) > 1:
                ens = make_ensemble([r.path for r in baseline_runs], out=f"{tmp}/{dataset}-ensemble")
                print(f"| {dataset} | ensemble: the baseline's {len(baseline_runs)} seeds averaged | "
                      f"{ens.metrics['test_accuracy']:.2%} | - | - |", flush=True)


if __name__ == "__main__":
    main()
