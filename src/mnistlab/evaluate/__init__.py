"""Evaluation: metrics (NumPy only), evaluation of runs, plots, reports and comparisons."""

from mnistlab.evaluate.evaluate import evaluate_run

__all__ = ["evaluate_run"]
