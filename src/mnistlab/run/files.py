"""The run folder's files and lock: where a new run goes, the lock that one process holds while it trains it, atomic
writes of its JSON, lines and checkpoints, and the checkpoint's safe loading."""

from __future__ import annotations

import contextlib
import itertools
import json
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mnistlab.errors import RunBusy, RunError
from mnistlab.fileio import atomic_write, atomic_write_json, ensure_dir, storage_error

RUNS_DIR = Path("runs")
RUN_HINT = "pass --out to a writable folder"
LOCK = ".lock"  # the run folder's lock file (take_lock)


def new_run_dir(out: str | Path | None, model: str, dataset: str) -> Path:
    """The folder for a new run: `out` if given (must be empty or absent), else runs/<date>-<model>-<dataset>
    (made here, with a suffix -2, -3... when another run took the name in the same second)."""
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(p.name != LOCK for p in path.iterdir())):
            raise RunError(f"{path} already exists and is not an empty folder; choose another --out or use --resume {path}")
        return ensure_dir(path, RUN_HINT, RunError)
    from mnistlab.models.reference import label

    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{label(model)}-{dataset}"
    ensure_dir(RUNS_DIR, RUN_HINT, RunError)
    for n in itertools.count(1):
        path = RUNS_DIR / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise storage_error(exc, RUNS_DIR, RUN_HINT, RunError) from None
    raise AssertionError("unreachable")


def take_lock(run_dir: Path, new: bool = False, resume: str | None = None):
    """The run folder's lock, held: a second process that tries to train (or resume) the same run fails at once,
    before reading or writing anything. The operating system frees the lock when its process dies, so a run killed
    with kill -9 can be resumed. `new`: the folder must still be empty once locked (another process may have
    started a run in it in the meantime). `resume`: how to resume such a run (default mnistlab train --resume)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(run_dir / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunBusy(f"{run_dir} is busy: another mnistlab process is training it right now; wait for it to end "
                      f"(or stop it), then {resume or f'mnistlab train --resume {run_dir}'}") from None
    except OSError as exc:
        raise storage_error(exc, run_dir, RUN_HINT, RunError) from None
    if new and any(p.name != LOCK for p in run_dir.iterdir()):
        lock.release()
        raise RunError(f"{run_dir} was just taken by another run; choose another --out")
    return lock


def wait_for_run(run_dir: Path) -> None:
    """Wait until no process holds the run folder's lock (`take_lock`): the run it was training has ended, or died."""
    from filelock import FileLock

    if run_dir.is_dir():
        with FileLock(str(run_dir / LOCK)):
            pass


@contextlib.contextmanager
def run_lock(run_dir: Path, new: bool = False, resume: str | None = None) -> Iterator[None]:
    """Hold a run folder's lock for the length of a `with` block (see `take_lock`)."""
    lock = take_lock(run_dir, new, resume)
    try:
        yield
    finally:
        lock.release()



def versions() -> dict:
    """Versions of what a run used, read from the installed packages' metadata (importing scikit-learn
    just to ask would cost a second and a half)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    v = {"mnistlab": __import__("mnistlab").__version__, "python": platform.python_version(), "numpy": np.__version__,
         "torch": torch.__version__}
    try:
        v["scikit-learn"] = version("scikit-learn")
    except PackageNotFoundError:
        pass
    return v


def write_json(path: Path, obj) -> None:
    atomic_write_json(path, obj, hint=RUN_HINT, error=RunError)


def append_jsonl(path: Path, rows: list[dict]) -> None:
    """Rewrite the whole metrics.jsonl atomically: a crash never leaves half a line."""
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    atomic_write(path, lambda fh: fh.write(data), hint=RUN_HINT, error=RunError)


def save_torch(path: Path, obj) -> None:
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh), hint=RUN_HINT, error=RunError)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint, loaded with weights_only=True: tensors and plain data only, never code."""
    import torch

    if not path.exists():
        raise RunError(f"{path} not found: the run has no completed epoch to resume from; start it again")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged or foreign file
        raise RunError(f"{path} is damaged or not a mnistlab checkpoint ({type(exc).__name__}); start the run again") from None
    if not isinstance(ckpt, dict) or not {"model", "history"} <= set(ckpt) or not {"epoch", "step", "task"} & set(ckpt):
        # "step": across environments and from few labels; "task": continual learning
        raise RunError(f"{path} is not a mnistlab checkpoint (missing model/epoch/history)")
    return ckpt



def write_result(run_dir: Path, result: dict, name: str, picture: str, png: bytes, out=None) -> str:
    """A measurement's JSON (`name`) and picture into the run folder (the report reads them there), and with `out`
    a copy of both there; returns the picture's path, the last written."""
    from mnistlab.fileio import atomic_write_bytes

    folders = [Path(run_dir)] + ([ensure_dir(Path(out), "pass --out to a writable folder", RunError)] if out is not None else [])
    for folder in folders:
        atomic_write_json(folder / name, result, hint="the folder must be writable", error=RunError)
        atomic_write_bytes(folder / picture, png, hint="the folder must be writable", error=RunError)
    return str(folders[-1] / picture)


def read_result(run_dir: Path, name: str) -> dict | None:
    """A measurement's JSON from the run folder, or None when it is missing or unreadable."""
    path = Path(run_dir) / name
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        return None
