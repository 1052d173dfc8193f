"""Start several processes at one shared instant, for the concurrency tests.

Each process is this file run as a script: it imports mnistlab (the slow part), says it is ready,
waits for the start signal, then runs its command. The test gives the signal once every process
is ready, so the commands start within about a millisecond of each other whatever the machine's speed.

    results = run_together([["-m", "mnistlab", "data", "fetch", "mnist"]] * 2, tmp_path)
    python together.py START_DIR NAME -m MODULE ARGS...    (or -c CODE ARGS...)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


def run_together(commands: list[list[str]], folder: Path, env: dict | None = None, cwd: Path | None = None,
                 timeout: float = 300) -> list[Finished]:
    """Run each command (`-m module args...` or `-c code args...`) in its own Python process, all
    released at once; returns their exit codes and output, in order."""
    start = folder / f"start-{time.monotonic_ns()}"
    start.mkdir(parents=True)
    procs = [subprocess.Popen([sys.executable, __file__, str(start), str(i), *cmd], env={**os.environ, **(env or {})},
                              cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, cmd in enumerate(commands)]
    try:
        deadline = time.monotonic() + timeout
        while len(list(start.glob("ready-*"))) < len(procs):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                break  # one died before the start line: let communicate() show why
            time.sleep(0.01)
        (start / "go").touch()
        outs = [p.communicate(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [Finished(p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


def _main() -> None:
    start, name, mode, target, *args = sys.argv[1:]
    import mnistlab.cli  # noqa: F401  the imports every command needs, before the start line

    (Path(start) / f"ready-{name}").touch()
    go = Path(start) / "go"
    while not go.exists():
        time.sleep(0.0005)
    if mode == "-m":
        import runpy

        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *args]
        exec(compile(target, "<together>", "exec"), {"__name__": "__main__"})


if __name__ == "__main__":
    _main()
