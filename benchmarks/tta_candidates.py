"""Candidate test-time views for digits, judged on the held-out images before any becomes a `--tta` name.

Each finished run's own net is evaluated once per view in a pool (the identity, the four one-pixel shifts,
rotations of 4 and 8 degrees either way, zooms of 0.9x and 1.1x: mnistlab/tta.py's `shifted` and `turned`), on
the training images it never trained on and on the test set; each candidate set is then the mean of its views'
logits, as `--tta` computes it. A set is scored by its held-out errors and its held-out log-loss after a
temperature fitted on the same images; the test errors stand beside them for the record only.

Run: .venv/bin/python benchmarks/tta_candidates.py RUN [RUN ...]
Prints each run's rows, then the sums over the runs (a Markdown table for BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SHIFT_ROTATE = ["id", "down", "up", "right", "left", "-8", "+8"]  # the views of --tta shift-rotate
SETS = {"none": ["id"], "shift": SHIFT_ROTATE[:5], "shift-rotate": SHIFT_ROTATE,
        "shift-rotate + zooms": SHIFT_ROTATE + ["zoom 0.9", "zoom 1.1"],
        "shift-rotate + 4 degrees": SHIFT_ROTATE + ["-4", "+4"],
        "shift-rotate + 4 degrees + zooms": SHIFT_ROTATE + ["-4", "+4", "zoom 0.9", "zoom 1.1"]}


def pool():
    from mnistlab.tta import shifted, turned

    views = {"id": lambda x: x, "down": lambda x: shifted(x, 1, 0), "up": lambda x: shifted(x, -1, 0),
             "right": lambda x: shifted(x, 0, 1), "left": lambda x: shifted(x, 0, -1)}
    views |= {f"{d:+d}": (lambda x, d=d: turned(x, d)) for d in (-8, 8, -4, 4)}
    views |= {f"zoom {z}": (lambda x, z=z: turned(x, 0.0, 1 / z)) for z in (0.9, 1.1)}
    return views


def logits(net, images, views, batch_size: int = 2000) -> dict[str, np.ndarray]:
    import torch

    x, out = np.asarray(images, np.float32) / 255, {name: [] for name in views}  # the datasets' uint8 images
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[i:i + batch_size]).unsqueeze(1)
            for name, view in views.items():
                out[name].append(net(view(xb).contiguous(memory_format=torch.channels_last)).float().numpy())
    return {name: np.concatenate(parts) for name, parts in out.items()}


def score(view_logits: dict[str, np.ndarray], names: list[str], labels: np.ndarray) -> tuple[int, np.ndarray]:
    z = np.mean([view_logits[n] for n in names], axis=0)
    e = np.exp(z - z.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    return int((p.argmax(1) != labels).sum()), p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    args = ap.parse_args()
    import torch

    from mnistlab.calibration import fit_temperature, nll, probabilities
    from mnistlab.data import get_spec, load_dataset
    from mnistlab.evaluate.evaluate import held_out_split
    from mnistlab.run import Run
    from mnistlab.training.engine import hardware_name

    print(f"CPU: {hardware_name(torch.device('cpu'))}; {time.strftime('%Y-%m-%d')}")
    views, totals = pool(), {name: np.zeros(3) for name in SETS}  # held-out errors, mean log-loss, test errors
    for path in args.runs:
        start, run = time.time(), Run(path)
        spec = get_spec(run.config["dataset"])
        _, held = held_out_split(run, spec)
        test = load_dataset(spec, "test")
        on_held, on_test = logits(run.model, held.images, views), logits(run.model, test.images, views)
        for name, names in SETS.items():
            errors, p = score(on_held, names, held.labels)
            z = np.log(np.clip(p, 1e-30, None))  # log-probabilities: logits up to a constant per row
            loss = nll(probabilities(z, fit_temperature(z, held.labels)), held.labels)
            test_errors = score(on_test, names, test.labels)[0]
            totals[name] += (errors, loss / len(args.runs), test_errors)
            print(f"{path} | {name} | {errors} | {loss:.4f} | {test_errors}", flush=True)
        print(f"{path}: {time.time() - start:.0f} s", flush=True)
    print(f"\n| views | held-out errors ({len(args.runs)} runs) | mean held-out log-loss | test errors (the record) |")
    print("| --- | ---: | ---: | ---: |")
    for name, (errors, loss, test_errors) in totals.items():
        print(f"| {name} | {errors:.0f} | {loss:.5f} | {test_errors:.0f} |")


if __name__ == "__main__":
    main()
