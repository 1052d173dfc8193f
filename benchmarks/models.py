"""Model-zoo benchmark: train each model on the full MNIST (or another dataset) with its defaults
and print one Markdown row per model: test accuracy, train seconds, test-set predict throughput.

Run: .venv/bin/python benchmarks/models.py --models logreg knn cnn [--dataset mnist] [--seed 0] [--set epochs=5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], help="KEY=VAL training settings applied to every model")
    ap.add_argument("--jsonl", help="append one JSON line per model here")
    args = ap.parse_args()
    import tomllib

    from mnistlab.training import train

    extra = {k: tomllib.loads(f"v = {v}")["v"] for k, _, v in (s.partition("=") for s in args.set)}
    print("| model | dataset | settings | test accuracy | train s | predict img/s |\n| --- | --- | --- | ---: | ---: | ---: |")
    for model in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run = train(model, args.dataset, out=f"{tmp}/run", seed=args.seed, **extra)
            wall = time.perf_counter() - t0
            m = run.metrics
            settings = ", ".join(f"{k}={v}" for k, v in extra.items()) or "defaults"
            print(f"| {model} | {args.dataset} | {settings} | {m['test_accuracy']:.4f} | {m['train_seconds']:.1f} | "
                  f"{m['test_images_per_second']:,.0f} |", flush=True)
            if args.jsonl:
                with open(args.jsonl, "a") as fh:
                    fh.write(json.dumps({"model": model, "dataset": args.dataset, "settings": extra, "wall_seconds": wall,
                                         "history": run.history, **m}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
