"""Test-time views judged on the held-out images: each finished run's own net evaluated under each set of
views (mnistlab/tta.py), on the training images it never trained on (those its temperature was fitted on),
with the test accuracy beside it for the record only. No training: the nets are the runs' own.

Run: .venv/bin/python benchmarks/tta_views.py RUN [RUN ...] [--views none shift shift-flip]
Prints a Markdown table for BENCHMARKS.md (log-loss after a temperature fitted on the same held-out images).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--views", nargs="+", default=["none", "shift", "flip", "shift-flip"])
    args = ap.parse_args()
    import numpy as np
    import torch

    from mnistlab.calibration import fit_temperature, nll, probabilities
    from mnistlab.data import get_spec, load_dataset
    from mnistlab.evaluate.evaluate import held_out_split
    from mnistlab.run import Run
    from mnistlab.training.engine import hardware_name
    from mnistlab.tta import with_tta

    print(f"CPU: {hardware_name(torch.device('cpu'))}; {time.strftime('%Y-%m-%d')}")
    print("| run | views | held-out errors | held-out accuracy | held-out log-loss | test accuracy (for the record) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for path in args.runs:
        run = Run(path)
        spec = get_spec(run.config["dataset"])
        _, held = held_out_split(run, spec)
        test = load_dataset(spec, "test")
        for views in args.views:
            run.predictor = with_tta(run.model, views)  # the run's own prediction, with these views instead of its own
            p_held, p_test = run.predict_proba(held.images), run.predict_proba(test.images)
            errors = int((p_held.argmax(1) != held.labels).sum())
            z = np.log(np.clip(p_held, 1e-30, None))  # log-probabilities: logits up to a constant per row
            t = fit_temperature(z, held.labels)  # on top of the run's own: together, the best for these views
            print(f"| {path} | {views} | {errors} | {1 - errors / len(held):.2%} | {nll(probabilities(z, t), held.labels):.4f} | "
                  f"{(p_test.argmax(1) == test.labels).mean():.2%} |", flush=True)


if __name__ == "__main__":
    main()
