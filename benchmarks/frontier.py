"""The accuracy frontier's techniques, one at a time: each row changes one thing from its dataset's base
recipe, and is judged on a validation split of the training set (10,000 images held out, seeded), never on
the test set; the test accuracy is printed beside it for the record only.

Test-time augmentation needs no training: its rows evaluate the base runs' own nets with the views.

Run: .venv/bin/python benchmarks/frontier.py [--datasets mnist fashion-mnist] [--seeds 2] [--epochs 8]
Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

VAL = 10_000
SPEEDNET = {"model": "speednet", "batch_size": 128, "optimizer": "adam", "lr": 4e-3, "schedule": "onecycle",
            "label_smoothing": 0.1, "model_args": {"widths": [32, 64, 128]}, "val_split": VAL}
BASES = {"mnist": {**SPEEDNET, "augment": "light"}, "fashion-mnist": {**SPEEDNET, "augment": "none"}}
WIDER = {"model_args": {"widths": [48, 96, 192]}}
# (row, change from the base); "tta" rows are evaluations of the base runs
ROWS = {
    "mnist": [
        ("base: speednet 32-64-128, light augmentation, Adam 4e-3 one-cycle, label smoothing 0.1", {}),
        ("weight average (EMA, decay 0.999)", {"ema": 0.999}),
        ("test-time augmentation: 5 one-pixel shifts", "shift"),
        ("test-time augmentation: shifts and two 8-degree rotations", "shift-rotate"),
        ("cutmix (half the images)", {"augment": "light,cutmix=0.5"}),
        ("mixup (a third of the images)", {"augment": "light,mixup=0.3"}),
        ("elastic distortion (a third of the images)", {"augment": "light,elastic=0.3"}),
        ("wider: 48-96-192", WIDER),
        ("twice the epochs", "x2"),
    ],
    "fashion-mnist": [
        ("base: speednet 32-64-128, no augmentation, Adam 4e-3 one-cycle, label smoothing 0.1", {}),
        ("mirror (half the images)", {"augment": "flip=0.5"}),
        ("random erasing (half the images)", {"augment": "erase=0.5"}),
        ("cutmix (half the images)", {"augment": "cutmix=0.5"}),
        ("mixup (a third of the images)", {"augment": "mixup=0.3"}),
        ("weight average (EMA, decay 0.999)", {"ema": 0.999}),
        ("test-time augmentation: 5 one-pixel shifts", "shift"),
        ("wider: 48-96-192", WIDER),
        ("twice the epochs", "x2"),
    ],
}


def val_accuracy_with_views(run, views: str, data_dir=None) -> float:
    """The validation accuracy of a finished run's net under test-time augmentation `views`."""
    from mnistlab.data import load_dataset
    from mnistlab.tta import with_tta

    ds = load_dataset(run.config["dataset"], "train", data_dir=data_dir)
    val = run.split(ds.labels).val
    run.predictor = with_tta(run.model, views)  # the run's own prediction, with these views instead of its own
    return float((run.predict(ds.images[val]) == ds.labels[val]).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--rows", nargs="*", type=int, help="only these row numbers (0 = base, always run)")
    args = ap.parse_args()
    import torch

    from mnistlab.training import train
    from mnistlab.training.engine import hardware_name

    print(f"CPU: {hardware_name(torch.device('cpu'))}; {time.strftime('%Y-%m-%d')}; base {args.epochs} epochs; "
          f"{args.seeds} seeds; validation: {VAL:,} training images held out")
    print(f"| dataset | technique | val accuracy (mean of {args.seeds}) | spread | test accuracy (mean) | train s |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets:
            base_runs = []
            for i, (label, change) in enumerate(ROWS[dataset]):
                if args.rows and i and i not in args.rows:
                    continue
                if isinstance(change, str) and change != "x2":  # test-time augmentation of the base nets
                    vals = [val_accuracy_with_views(r, change) for r in base_runs]
                    print(f"| {dataset} | {label} | {statistics.mean(vals):.2%} | {max(vals) - min(vals):.2%} | - | - |", flush=True)
                    continue
                settings = {**BASES[dataset], "epochs": args.epochs * (2 if change == "x2" else 1),
                            **(change if isinstance(change, dict) else {})}
                runs = [train(dataset=dataset, out=f"{tmp}/{dataset}-{i}-{seed}", seed=seed, **settings)
                        for seed in range(args.seeds)]
                if i == 0:
                    base_runs = runs
                vals = [r.metrics["val_accuracy"] for r in runs]
                tests = [r.metrics["test_accuracy"] for r in runs]
                secs = statistics.mean(r.metrics["train_seconds"] for r in runs)
                print(f"| {dataset} | {label} | {statistics.mean(vals):.2%} | {max(vals) - min(vals):.2%} | "
                      f"{statistics.mean(tests):.2%} | {secs:.0f} |", flush=True)


if __name__ == "__main__":
    main()
