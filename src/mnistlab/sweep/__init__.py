"""Hyperparameter sweeps: an Optuna study over a search space, shared by any number of processes."""

from mnistlab.sweep.space import SearchSpace, default_space, load_space, parse_space
from mnistlab.sweep.study import SweepError, run_sweep

__all__ = ["SearchSpace", "SweepError", "default_space", "load_space", "parse_space", "run_sweep"]
