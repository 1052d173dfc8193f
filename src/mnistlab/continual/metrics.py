"""The metrics of an accuracy matrix R (R[i][j]: accuracy on task j after training tasks 0..i), as Lopez-Paz & Ranzato
2017 ("Gradient Episodic Memory") define them (their intervals over seeds: evaluate/stats.over_seeds).

    average accuracy     the mean of the last row: every task's accuracy at the end
    backward transfer    mean over j < T-1 of R[T-1][j] - R[j][j]: how much learning later tasks changed the earlier
                         ones (negative: forgetting)
    forward transfer     mean over j > 0 of R[j-1][j] - b_j, b_j the untrained net's accuracy on task j: how much
                         the earlier tasks helped a task before it was trained on
"""

from __future__ import annotations

import numpy as np


def average_accuracy(rows: list[list[float]]) -> float:
    return float(np.mean(rows[-1]))


def backward_transfer(rows: list[list[float]]) -> float | None:
    r, n = np.asarray(rows), len(rows)
    return float(np.mean([r[n - 1, j] - r[j, j] for j in range(n - 1)])) if n > 1 else None


def forward_transfer(rows: list[list[float]], baseline: list[float]) -> float | None:
    r, n = np.asarray(rows), len(rows)
    return float(np.mean([r[j - 1, j] - baseline[j] for j in range(1, n)])) if n > 1 else None


def summary(rows: list[list[float]], baseline: list[float]) -> dict:
    return {"accuracy_matrix": [list(map(float, r)) for r in rows], "baseline": list(map(float, baseline)),
            "average_accuracy": average_accuracy(rows), "backward_transfer": backward_transfer(rows),
            "forward_transfer": forward_transfer(rows, baseline)}

