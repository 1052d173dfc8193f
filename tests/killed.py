"""A mnistlab command that SIGKILLs its own process right after the first epoch of a run is saved: a kill at a known
point, whatever the machine's speed (no poll for checkpoint.pt, no race with the run's end).

    python tests/killed.py train --model mlp --out RUN ...      (also as torchrun's script: rank 0 dies there)
"""

import os
import signal
import sys

from mnistlab import run

saved = run.RunFolder.save_epoch


def save_then_die(self, *args, **kwargs):
    saved(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    run.RunFolder.save_epoch = save_then_die
    from mnistlab.cli import main

    sys.argv = ["mnistlab", *sys.argv[1:]]
    main()
