"""Benchmarks inside the tool: the leaderboard sweep (`mnistlab bench`) and its published references."""

from mnistlab.bench.leaderboard import SUITES, run_bench

__all__ = ["SUITES", "run_bench"]
