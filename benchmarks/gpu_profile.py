"""Where the seconds of one warm speedrun go, outside the training step: `train(preset=...)` run twice in one
process after the speedrun's warm-up, the second under cProfile. Prints the whole run's seconds, the
training's, and mnistlab's functions by cumulative time, then the most expensive functions by own time.

    python benchmarks/gpu_profile.py                        # speedrun-gpu on CUDA
    python benchmarks/gpu_profile.py --device cpu --preset speedrun
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

from mnistlab.bench.speedrun import _warm_up
from mnistlab.config import PRESETS
from mnistlab.data import get_spec
from mnistlab.training import train
from mnistlab.training.engine import hardware_name, resolve_engine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--preset", default="speedrun-gpu")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    engine = resolve_engine(args.device, "auto", "auto", optimizer="adam")
    _warm_up(args.preset, engine, get_spec(PRESETS[args.preset].get("dataset", "mnist")))
    with tempfile.TemporaryDirectory() as tmp:
        train(preset=args.preset, device=args.device, out=f"{tmp}/warm", seed=0)
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        run = train(preset=args.preset, device=args.device, out=f"{tmp}/timed", seed=1)
        prof.disable()
        total = time.perf_counter() - t0
        m = run.metrics
    print(f"{args.preset} on {hardware_name(engine.device)} ({m['precision']}, {m['step']}): {total:.3f} s in all, "
          f"{m['train_seconds']:.3f} s training, test accuracy {m['test_accuracy']:.4f} (under the profiler)")
    for order, pattern in (("cumulative", "mnistlab"), ("tottime", "")):
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats(order).print_stats(pattern, args.top)
        rows = [line for line in text.getvalue().splitlines() if line.strip() and line.strip()[0].isdigit()]
        print(f"\nby {order}{' (mnistlab only)' if pattern else ''}: ncalls tottime percall cumtime percall where")
        for line in rows[:args.top]:
            print(line.replace(str(Path.cwd()) + "/", ""))


if __name__ == "__main__":
    main()
