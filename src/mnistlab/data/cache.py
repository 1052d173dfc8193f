"""The data home: where verified datasets live as memory-mappable .npy files.

Resolution order: an explicit folder, then $MNISTLAB_HOME, then ~/.cache/mnistlab. Every write
goes to a temp file in the same folder and is renamed into place, under a lock, so a reader
never sees half a file and two processes fetching at once do the work once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import filelock
import numpy as np

from mnistlab import fileio
from mnistlab.errors import CacheError
from mnistlab.fileio import storage_error

ENV_HOME = "MNISTLAB_HOME"
META_VERSION = 1


def data_home(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder that holds mnistlab's cache: `data_dir`, else $MNISTLAB_HOME, else ~/.cache/mnistlab."""
    chosen = data_dir or os.environ.get(ENV_HOME) or Path.home() / ".cache" / "mnistlab"
    return Path(chosen).expanduser().absolute()


_HINT = "set MNISTLAB_HOME or pass --data-dir to a writable folder"


def cache_os_error(exc: OSError, where: Path) -> CacheError:
    return storage_error(exc, where, _HINT, CacheError)


def ensure_dir(path: Path) -> Path:
    return fileio.ensure_dir(path, _HINT, CacheError)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write atomically into the cache (see mnistlab.fileio.atomic_write)."""
    return fileio.atomic_write(path, write, _HINT, CacheError)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return fileio.atomic_write_bytes(path, data, hint=_HINT, error=CacheError)


def atomic_write_json(path: Path, obj) -> Path:
    return fileio.atomic_write_json(path, obj, hint=_HINT, error=CacheError)


@contextlib.contextmanager
def locked(path: Path, timeout: float = 1800) -> Iterator[None]:
    """Hold an inter-process lock on `path` (a .lock file beside it) for the duration of the block."""
    ensure_dir(path.parent)
    try:
        with filelock.FileLock(str(path) + ".lock", timeout=timeout):
            yield
    except filelock.Timeout:
        raise CacheError(f"{path} is locked by another mnistlab process for over {timeout:.0f} s; "
                         f"if none is running, delete {path}.lock") from None
    except OSError as exc:
        raise cache_os_error(exc, path.parent) from None


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


class DatasetCache:
    """The cached, verified copy of one dataset: `{split}-{kind}.npy` files and a `meta.json` written last."""

    def __init__(self, home: Path, name: str):
        self.home = home
        self.name = name
        self.dir = home / "datasets" / name
        self.meta_path = self.dir / "meta.json"

    def path(self, split: str, kind: str) -> Path:
        return self.dir / f"{split}-{kind}.npy"

    def lock(self):
        return locked(self.dir)

    def meta(self) -> dict | None:
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and meta.get("version") == META_VERSION else None

    def store(self, arrays: dict[tuple[str, str], np.ndarray], provenance: dict) -> dict:
        """Write every array atomically, then the meta file that makes the entry complete.

        The old meta file goes first, so an interrupted store leaves an entry that is plainly
        incomplete (and is fetched again), never old metadata over a mix of old and new files."""
        try:
            self.meta_path.unlink(missing_ok=True)
        except OSError as exc:
            raise cache_os_error(exc, self.dir) from None
        files = {}
        for (split, kind), array in arrays.items():
            path = self.path(split, kind)
            atomic_write(path, lambda fh, a=array: np.save(fh, np.ascontiguousarray(a), allow_pickle=False))
            files[path.name] = {"sha256": file_sha256(path), "stat": _stat_key(path)}
        meta = {"version": META_VERSION, "dataset": self.name, "files": files,
                "stored_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **provenance}
        atomic_write_json(self.meta_path, meta)
        return meta

    def check(self, meta: dict, *, full: bool = False) -> list[str]:
        """Names of damaged or missing files. Cheap by default: a file whose size and mtime are
        unchanged since it was stored is trusted; any other is re-hashed. `full` re-hashes all."""
        bad, refreshed = [], False
        for name, info in meta.get("files", {}).items():
            path = self.dir / name
            try:
                same_stat = _stat_key(path) == info["stat"]
                if full or not same_stat:
                    if file_sha256(path) != info["sha256"]:
                        bad.append(name)
                    elif not same_stat:  # content intact (copied, touched): remember, so loads stay cheap
                        info["stat"] = _stat_key(path)
                        refreshed = True
            except (OSError, KeyError, TypeError):
                bad.append(name)
        if refreshed and not bad:
            with contextlib.suppress(CacheError):  # a read-only cache still loads, just re-hashes next time
                atomic_write_json(self.meta_path, meta)
        return bad

    def load(self, split: str, kind: str) -> np.ndarray:
        """Memory-map one cached array (read-only, no copy)."""
        try:
            return np.asarray(np.load(self.path(split, kind), mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise CacheError(f"cached file {self.path(split, kind)} is unreadable ({exc}); run: mnistlab data fetch {self.name} --force") from None

    def clear(self) -> None:
        for path in self.dir.glob("*.npy"):
            path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)
