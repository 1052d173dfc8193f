"""The pictures of a continual run: the accuracy matrix as a heat map, and each task's accuracy as the tasks go by."""

from __future__ import annotations

import numpy as np

from mnistlab.evaluate.plots import _plt


def matrix_figure(result: dict):
    """R[i][j] (rows: after training task i; columns: task j), the number in each cell."""
    plt = _plt()
    r = np.asarray(result["accuracy_matrix"])
    fig, ax = plt.subplots(figsize=(1.1 * r.shape[1] + 2, 0.8 * r.shape[0] + 1.5))
    ax.imshow(r, vmin=0, vmax=1, cmap="viridis")
    for i in range(r.shape[0]):
        for j in range(r.shape[1]):
            ax.text(j, i, f"{r[i, j]:.2f}", ha="center", va="center", color="white" if r[i, j] < 0.6 else "black", fontsize=8)
    names = result["tasks"]
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_yticks(range(r.shape[0]), [f"after {n}" for n in names[: r.shape[0]]])
    ax.set_xlabel("accuracy on task")
    ax.set_title(f"{result['benchmark']}, {result['scenario']}-incremental, {result['strategy']}: "
                 f"average {result['average_accuracy']:.1%}", fontsize=9)
    return fig


def curves_figure(result: dict):
    """Each task's accuracy after every training task: a line per task, from the moment it is learnt."""
    plt = _plt()
    r = np.asarray(result["accuracy_matrix"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for j, name in enumerate(result["tasks"]):
        ax.plot(range(j + 1, r.shape[0] + 1), r[j:, j], marker="o", label=name)
    ax.plot(range(1, r.shape[0] + 1), [row[: i + 1].mean() for i, row in enumerate(r)], color="black", linestyle="--",
            label="mean of tasks so far")
    ax.set_xticks(range(1, r.shape[0] + 1))
    ax.set_xlabel("tasks trained")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"{result['strategy']} ({result['scenario']}-incremental)", fontsize=9)
    return fig
