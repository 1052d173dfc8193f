"""`mnistlab bench --train-sizes 100 300 1000 ...`: learning curves by data size. Every model is trained on
balanced, seeded, nested subsets of the training set (`train_subset`: the first n/classes images of each class in the
seed's order, so the 100 of a seed lie inside its 300, inside its 1,000...), tested on the whole test set, `seeds`
times per size; a size as large as the training set means all of it. Each run keeps its subset in its split.npz.
Writes curves.json, curves.md (accuracy and 95% interval per size, the published results on the whole training set
beside) and curves.png (log-x, a line per model, a cross for each published result).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from mnistlab.bench.leaderboard import _bench_cell
from mnistlab.data import get_spec
from mnistlab.errors import InvalidArgument
from mnistlab.evaluate import stats
from mnistlab.fileio import atomic_write_bytes, atomic_write_json, ensure_dir
from mnistlab.models import get_model_info
from mnistlab.models.reference import label
from mnistlab.run import versions


def check_sizes(sizes: list[int], dataset: str) -> list[int]:
    spec = get_spec(dataset)
    train_n = spec.sizes.get("train", 0)
    for n in sizes:
        if not isinstance(n, int) or n < spec.num_classes:
            raise InvalidArgument(f"train size {n!r} must be a whole number >= {spec.num_classes} (one image per class "
                                  f"of {spec.name})")
        if n > train_n:
            raise InvalidArgument(f"train size {n:,} is more than the {train_n:,} training images of {spec.name}")
    return sorted(set(sizes))


def run_curves(sizes: list[int], datasets: list[str] | None = None, models: list[str] | None = None, seeds: int = 1,
               out: str | Path | None = None, data_dir=None, settings: dict | None = None, progress: bool = False) -> dict:
    """Train every (dataset, model, size) `seeds` times; curves.json, curves.md, curves.png in `out`."""
    if seeds < 1:
        raise InvalidArgument(f"seeds must be >= 1, got {seeds}")
    datasets = [get_spec(d).name for d in (datasets or ["mnist"])]
    models = [get_model_info(m).name for m in (models or ["logreg", "mlp", "cnn"])]
    per_dataset = {d: check_sizes(sizes, d) for d in datasets}
    out = ensure_dir(Path(out or Path("bench") / time.strftime("curves-%Y%m%d-%H%M%S")))
    rows = []
    for dataset in datasets:
        train_n = get_spec(dataset).sizes["train"]
        for model in models:
            for n in per_dataset[dataset]:
                kw = {**(settings or {}), "train_subset": None if n >= train_n else n}
                row = _bench_cell("curves", dataset, model, kw, seeds, out / f"n{n}", data_dir, None, None, None)
                trained = [len(np.load(Path(p) / "split.npz")["train"]) for p in row["runs"]]
                interval = stats.over_seeds(row["accuracy_all"])["interval"]
                rows.append({**row, "train_size": n, "trained_on": trained, "interval": interval})
    result = {"sizes": sorted({n for s in per_dataset.values() for n in s}), "seeds": seeds,
              "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows, "versions": versions()}
    atomic_write_json(out / "curves.json", result)
    atomic_write_bytes(out / "curves.md", markdown(result).encode())
    if any(r["accuracy_mean"] is not None for r in rows):
        from mnistlab.evaluate.plots import to_png

        atomic_write_bytes(out / "curves.png", to_png(figure(rows)))
    result["out"] = str(out)
    return result


def markdown(result: dict) -> str:
    sizes = result["sizes"]
    lines = [f"# Learning curves: test accuracy by training images ({result['seeds']} seed(s) each; 95% interval over "
             "seeds in brackets); the published results beside were measured on the whole training set", "",
             "| dataset | model | " + " | ".join(f"{n:,}" for n in sizes) + " | published (all training images) |",
             "|---|---|" + "---:|" * len(sizes) + "---|"]
    cells: dict[tuple, dict] = {(r["dataset"], r["model"], r["train_size"]): r for r in result["rows"]}
    for dataset, model in dict.fromkeys((r["dataset"], r["model"]) for r in result["rows"]):
        texts = []
        for n in sizes:
            r = cells.get((dataset, model, n))
            if r is None or r["accuracy_mean"] is None:
                texts.append("" if r is None else "failed")
                continue
            text = f"{r['accuracy_mean']:.2%}"
            if r["interval"]:
                text += f" ({r['interval'][0]:.2%}-{r['interval'][1]:.2%})"
            texts.append(text)
        refs = next((r["references"] for r in result["rows"] if (r["dataset"], r["model"]) == (dataset, model)), [])
        published = "; ".join(f"{x['accuracy']:.2%} ({x['description']}; {x['source']})" for x in refs) or "-"
        lines.append(f"| {dataset} | {label(model)} | " + " | ".join(texts) + f" | {published} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict]):
    """One panel per dataset: accuracy against training images (log scale), a line per model, the seeds' spread."""
    from mnistlab.evaluate.plots import _plt

    plt = _plt()
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for model in dict.fromkeys(r["model"] for r in rows if r["dataset"] == ds):
            pts = [r for r in rows if (r["dataset"], r["model"]) == (ds, model) and r["accuracy_mean"] is not None]
            line = ax.errorbar([r["train_size"] for r in pts], [r["accuracy_mean"] for r in pts],
                               yerr=[r["accuracy_std"] or 0 for r in pts], marker="o", capsize=3, label=label(model))
            refs = next((r["references"] for r in rows if (r["dataset"], r["model"]) == (ds, model)), [])
            n_all = get_spec(ds).sizes["train"]
            for x in refs:  # a published result on the whole training set (at its size): a cross of the model's colour
                ax.plot([n_all], [x["accuracy"]], "x", color=line[0].get_color(), markersize=8)
        ax.set_xscale("log")
        ax.set(xlabel="training images (log scale)", ylabel="test accuracy", title=ds)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
