"""Continual learning on the MNIST family: Split, Permuted and Rotated MNIST in the three scenarios of van de Ven &
Tolias 2019, nine strategies (continual/strategies.py), the accuracy matrix and its metrics."""

from mnistlab.continual.loop import PRESETS, run_continual

__all__ = ["PRESETS", "run_continual"]
