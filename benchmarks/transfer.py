"""Transfer learning, measured honestly: a few labelled images per class, from scratch versus
initialised from a run trained on another dataset (fine-tuned, or with the backbone frozen).

Run: .venv/bin/python benchmarks/transfer.py [--per-class 100] [--model cnn] [--epochs 30]
"""

from __future__ import annotations

import argparse
import tempfile


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    from mnistlab.training import train

    n = args.per_class * 10
    print(f"| target (labelled images) | start | backbone | test accuracy (mean of {args.seeds} seeds) |\n| --- | --- | --- | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        sources = {d: train(args.model, d, out=f"{tmp}/src-{d}") for d in ("mnist", "fashion-mnist")}
        for target, source in (("fashion-mnist", "mnist"), ("mnist", "fashion-mnist")):
            for label, kw in (("from scratch", {}), (f"from {source}", {"init_from": str(sources[source].path)}),
                              (f"from {source}", {"init_from": str(sources[source].path), "freeze": "backbone"})):
                accs = []
                for seed in range(args.seeds):
                    run = train(args.model, target, out=f"{tmp}/{target}-{len(accs)}-{seed}-{kw.get('freeze', 'none')}-{bool(kw)}",
                                train_subset=n, epochs=args.epochs, batch_size=64, seed=seed, **kw)
                    accs.append(run.metrics["test_accuracy"])
                frozen = "frozen" if kw.get("freeze") == "backbone" else "trained"
                print(f"| {target} ({args.per_class}/class = {n}) | {label} | {frozen} | {sum(accs) / len(accs):.2%} |", flush=True)
        print("<!-- sources: " + ", ".join(f"{d} {r.metrics['test_accuracy']:.4f}" for d, r in sources.items()) + " -->")


if __name__ == "__main__":
    main()
