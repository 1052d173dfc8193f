"""Figures for reports: each function returns a matplotlib Figure (saving is the caller's business)."""

from __future__ import annotations

import io

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_png(fig, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def learning_curves(history: list[dict], title: str = "", curve: list[dict] | None = None):
    """Loss and accuracy per epoch: train, validation (if any) and test; with `curve` (the run's points every
    few steps), the training loss and accuracy inside the epochs too, so a one-epoch run has a real curve."""
    plt = _plt()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = [r["epoch"] for r in history]
    style = {"train": ("tab:blue", "o"), "val": ("tab:orange", "s"), "test": ("tab:green", "^")}
    if curve:
        xs = [p["epoch"] for p in curve]
        for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            ax.plot(xs, [p[f"train_{key}"] for p in curve], color="tab:blue", lw=1, alpha=0.6, label="train, every few steps")
    for part, (color, marker) in style.items():
        for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            ys = [r.get(f"{part}_{key}") for r in history]
            if any(v is not None for v in ys):
                ax.plot(epochs, [np.nan if v is None else v for v in ys], color=color, marker=marker, ms=4, label=_legend(part))
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    accs = [r.get(k) for r in history for k in ("train_accuracy", "val_accuracy", "test_accuracy") if r.get(k) is not None]
    if curve:  # the first steps are near chance: leave them out of the zoom, they are on the loss plot
        later = [p["train_accuracy"] for p in curve if p["epoch"] >= 0.25 * max(epochs or [1])]
        accs += later
    if accs:  # zoom on the part that matters: near 1.0 the differences are tenths of a percent
        low = min(accs)
        ax_acc.set_ylim(max(0.0, low - (1 - low) * 0.15), min(1.0, 1 + (1 - low) * 0.05))
    if curve:
        ax_loss.set_yscale("log")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        if len(epochs) <= 20:
            ax.set_xticks(epochs if not curve else sorted({0, *epochs}))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_heatmap(cm: np.ndarray, classes: list[str], title: str = "confusion matrix"):
    """Counts on a log colour scale so that single mistakes show beside thousands of correct answers."""
    from matplotlib.colors import LogNorm

    plt = _plt()
    n = len(classes)
    size = min(max(5.0, n * 0.45), 18)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    shown = np.ma.masked_where(cm == 0, cm)
    im = ax.imshow(shown, cmap="viridis", norm=LogNorm(vmin=1, vmax=max(int(cm.max()), 2)))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="images (log scale)")
    ax.set_xticks(range(n), classes, rotation=90 if n > 12 else 0)
    ax.set_yticks(range(n), classes)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if n <= 20:
        thresh = np.sqrt(max(cm.max(), 1))
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="black" if cm[i, j] > thresh else "white")
    fig.tight_layout()
    return fig


def _legend(part: str) -> str:
    """What a point of the learning curves is: training's is the mean over the epoch's batches (the weights moving
    under it, augmentation on), the others are the weights at the end of the epoch judged once."""
    return {"train": "train: the epoch's mean over its batches", "val": "validation: end of epoch",
            "test": "test: end of epoch"}[part]


def test_set_map(points: np.ndarray, labels: np.ndarray, wrong: np.ndarray, classes: list[str]):
    """The test images' penultimate features in 2-D (PCA then t-SNE), coloured by class, the mistakes marked."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for c, name in enumerate(classes):
        mine = labels == c
        ax.scatter(points[mine, 0], points[mine, 1], s=5, color=cmap(c % cmap.N), label=name, alpha=0.7, linewidths=0)
    ax.scatter(points[wrong, 0], points[wrong, 1], s=30, marker="x", color="black", linewidths=1.2, label=f"mistakes ({int(wrong.sum())})")
    ax.set(xticks=[], yticks=[], title=f"{len(points):,} test images by the net's penultimate features (PCA, then t-SNE)")
    if len(classes) <= 20:
        ax.legend(markerscale=2.5, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig


def filters_picture(kernels: np.ndarray, title: str):
    """A first convolution's kernels (out, kh, kw), each on its own colour scale (red positive, blue negative)."""
    plt = _plt()
    n = min(len(kernels), 64)
    cols = min(n, 16)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.7, rows * 0.75 + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            bound = float(np.abs(kernels[k]).max()) or 1.0
            ax.imshow(kernels[k], cmap="bwr", vmin=-bound, vmax=bound, interpolation="nearest")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def image_gallery(images: np.ndarray, captions: list[str], colors: list[str] | None = None, cols: int = 8, title: str = ""):
    """A grid of images (grey, or Colored MNIST's two channels in colour) with a caption under each."""
    from mnistlab.data.explore import shown

    plt = _plt()
    n = len(images)
    rows = max(1, (n + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.25, rows * 1.55), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(shown(images[k]), cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(captions[k], fontsize=8, color=(colors[k] if colors else "black"))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def reliability_diagram(bins: list[dict], ece: float):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    centers = [(b["low"] + b["high"]) / 2 for b in bins]
    widths = [b["high"] - b["low"] for b in bins]
    ax.bar(centers, [b["accuracy"] for b in bins], width=widths, edgecolor="black", alpha=0.8, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", title=f"reliability (ECE {ece:.4f})", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def compare_curves(named_histories: dict[str, list[dict]], key: str = "test_accuracy"):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    values = []
    x = "epoch" if all("epoch" in r for hist in named_histories.values() for r in hist) else "step"
    for name, hist in named_histories.items():
        shown_rows = [r for r in hist if r.get(key) is not None and x in r]
        xs, ys = [r[x] for r in shown_rows], [r[key] for r in shown_rows]
        values += ys
        ax.plot(xs, ys, marker="o", ms=4, label=name)
    if values:
        low = min(values)
        ax.set_ylim(max(0.0, low - (1 - low) * 0.15), min(1.0, 1 + (1 - low) * 0.05))
    ax.set(xlabel=x, ylabel=key.replace("_", " "), title=f"{key.replace('_', ' ')} per {x}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def environment_curves(history: list[dict], roles: dict[str, str], selected: dict | None = None, title: str = ""):
    """A run across environments as it trained: each environment's accuracy at each evaluation (a training
    environment's held-out part, else its whole where it was evaluated; the test environment's whole, dashed), the
    training batches' accuracy, and the loss beside the penalty and its weight. `selected` marks the steps DomainBed's
    selections within the run picked."""
    plt = _plt()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = [r["step"] for r in history]
    if any("train_accuracy" in r for r in history):
        ax_acc.plot(steps, [r.get("train_accuracy", np.nan) for r in history], color="gray", lw=1, label="training batches")
    for name, role in roles.items():
        held_out = role == "train" and any("out" in r["environments"].get(name, {}) for r in history)
        part = "out" if held_out else "in"
        points = [(r["step"], r["environments"][name][part]) for r in history if part in r["environments"].get(name, {})]
        if points:
            xs, ys = zip(*points)
            what = f"{name} ({role}{', its held-out part' if held_out else ''})"
            ax_acc.plot(xs, ys, ls="--" if role == "test" else "-", marker="o", ms=3, label=what)
    for kind, step in (selected or {}).items():
        ax_acc.axvline(step, color="black", lw=0.8, ls=":" if kind == "oracle" else "-.")
        ax_acc.annotate(kind.replace("_", " "), (step, 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=7)
    ax_acc.set(xlabel="step", ylabel="accuracy", title="accuracy per environment", ylim=(0, 1))
    loss_key = "nll" if any("nll" in r for r in history) else "loss"
    ax_loss.plot(steps, [r.get(loss_key, np.nan) for r in history], color="tab:blue", label="risk (cross-entropy)")
    logged = [loss_key]
    if any(r.get("penalty") for r in history):
        logged.append("penalty")
        ax_loss.plot(steps, [r.get("penalty", np.nan) for r in history], color="tab:red", label="penalty")
        weight = ax_loss.twinx()
        weight.plot(steps, [r.get("penalty_weight", np.nan) for r in history], color="tab:purple", lw=1, ls=":")
        weight.set_ylabel("penalty weight (dotted)")
    if all(r[k] > 0 for r in history for k in logged if r.get(k) is not None):
        ax_loss.set_yscale("log")
    ax_loss.set(xlabel="step", title="risk and penalty (mean over the steps since the last row)")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def pseudo_labels(history: list[dict]):
    """A semi-supervised run's pseudo-labels over training: the share of unlabelled images confident enough to be
    used, and the share of those that were right (measured on their true labels, which training never reads)."""
    plt = _plt()
    steps = [r["step"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, [r.get("pseudo_labels_used") for r in history], marker="o", label="used (confident enough)")
    ax.plot(steps, [r.get("pseudo_labels_right") for r in history], marker="o", label="right, of those used")
    ax.set(xlabel="step", ylabel="share", ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def accuracy_vs_time(rows: list[dict]):
    """One panel per dataset: test accuracy against training seconds (log scale), a labelled point per model,
    with the best published reference as a dashed line."""
    plt = _plt()
    datasets = list(dict.fromkeys(r["dataset"] for r in rows if r.get("accuracy_mean") is not None))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.6), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        pts = [r for r in rows if r["dataset"] == ds and r.get("accuracy_mean") is not None]
        for r in pts:
            t = max(r.get("train_seconds") or 0.01, 0.01)
            ax.errorbar(t, r["accuracy_mean"], yerr=r.get("accuracy_std") or 0, fmt="o", ms=6, capsize=3)
            ax.annotate(r["model"], (t, r["accuracy_mean"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
        refs = [x for r in pts for x in r.get("references", [])]
        if refs:
            best = max(refs, key=lambda x: x["accuracy"])
            ax.axhline(best["accuracy"], ls="--", color="gray", lw=1)
            ax.text(0.01, best["accuracy"], f" best published reference here: {best['description'][:40]} ({best['accuracy']:.2%})",
                    transform=ax.get_yaxis_transform(), va="bottom", fontsize=8, color="gray")
        accs = [r["accuracy_mean"] for r in pts]
        low = min(accs)
        ax.set_ylim(max(0, low - (1 - low) * 0.1), min(1.0, 1 + (1 - low) * 0.05))
        ax.set_xscale("log")
        ax.set(xlabel="training seconds (log scale)", ylabel="test accuracy", title=ds)
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return fig


def corruption_grid(shown: dict, classes: list[str], accuracy: dict):
    """One row per corruption (its name and accuracy), a few digits each with the model's answer above it; wrong
    answers in red and framed. `shown`: name -> (uint8 images (k, 28, 28), predicted classes, true classes). One
    image and a few texts, not an axes per digit: it draws in a fraction of a second."""
    from matplotlib.patches import Rectangle

    plt = _plt()
    cols = max((len(images) for images, _, _ in shown.values()), default=1)
    w, h = 32, 40  # a cell: the digit and a line for its answer above it
    canvas = np.full((len(shown) * h, cols * w), np.nan)
    for r, (images, _, _) in enumerate(shown.values()):
        for c, image in enumerate(images):
            canvas[r * h + 10:r * h + 38, c * w + 2:c * w + 30] = image
    fig, ax = plt.subplots(figsize=(1.0 * cols + 2.4, 1.2 * len(shown)))
    cmap = plt.get_cmap("gray").with_extremes(bad="#d9d9d9")  # the gaps: light grey, so white ink (stripe) keeps its edge
    ax.imshow(canvas, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
    for r, (name, (images, predicted, truth)) in enumerate(shown.items()):
        ax.text(-6, r * h + 24, f"{name.replace('_', ' ')}\n{accuracy[name]:.1%}", ha="right", va="center", fontsize=9)
        for c, (p, t) in enumerate(zip(predicted, truth)):
            wrong = int(p) != int(t)
            ax.text(c * w + 16, r * h + 8, classes[int(p)], ha="center", va="bottom", fontsize=8,
                    color="crimson" if wrong else "black")
            if wrong:
                ax.add_patch(Rectangle((c * w + 1, r * h + 9), 29, 29, fill=False, edgecolor="crimson", linewidth=1.5))
    ax.axis("off")
    ax.set_title("MNIST-C: the model's answer above each digit, wrong ones in red; its accuracy on the whole "
                 "corrupted test set beside each row", fontsize=9)
    fig.tight_layout()
    return fig


def robustness_curve(adversarial: dict):
    """Accuracy against eps under FGSM and PGD (with their 95% intervals), from robustness.json's `adversarial`."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for kind, style in (("fgsm", "s--"), ("pgd", "o-")):
        eps = [0.0] + [float(e) for e in adversarial[kind]]
        acc = [adversarial["clean"]] + list(adversarial[kind].values())
        low = [adversarial["clean_interval"][0]] + [adversarial["intervals"][kind][e][0] for e in adversarial[kind]]
        high = [adversarial["clean_interval"][1]] + [adversarial["intervals"][kind][e][1] for e in adversarial[kind]]
        ax.plot(eps, acc, style, label=kind.upper() if kind == "fgsm" else
                f"PGD-{adversarial['pgd_steps']} ({adversarial['pgd_restarts']} start{'s' if adversarial['pgd_restarts'] > 1 else ''})")
        ax.fill_between(eps, low, high, alpha=0.2)
    ax.set(xlabel="eps (l_inf, pixels in [0, 1])", ylabel="accuracy", ylim=(0, 1.02),
           title=f"under attack: first {adversarial['images']:,} test images")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def ood_picture(in_scores: np.ndarray, others: dict[str, np.ndarray], threshold: float, detector: str,
                coverage: list[dict], field: str):
    """Left: the chosen detector's scores, the test images' against each other set's, with the threshold; right:
    accuracy against coverage (the model answering only the images it is surest of)."""
    plt = _plt()
    fig, (ax, ax_cov) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.6, 1]})
    everything = np.concatenate([in_scores, *others.values()])
    low, high = np.percentile(everything, [0.5, 99.5])
    bins = np.linspace(low, high if high > low else low + 1, 60)
    ax.hist(np.clip(in_scores, low, high), bins=bins, density=True, alpha=0.55, color="black", label="test images")
    for name, scores in others.items():
        ax.hist(np.clip(scores, low, high), bins=bins, density=True, histtype="step", linewidth=1.4, label=name)
    ax.axvline(threshold, color="red", linestyle="--", label=f"threshold ({field} at or above)")
    ax.set(xlabel=f"{detector} score (higher: more like the training images)", ylabel="density",
           title="scores: the test set against images of other kinds")
    ax.legend(fontsize=7, loc="upper left")
    ax_cov.plot([c["coverage"] for c in coverage], [c["accuracy"] for c in coverage], marker="o", markersize=3)
    ax_cov.set(xlabel="coverage (share of test images answered)", ylabel="accuracy", xlim=(0, 1.02),
               title=f"risk-coverage by {detector}")
    ax_cov.grid(alpha=0.3)
    fig.tight_layout()
    return fig
