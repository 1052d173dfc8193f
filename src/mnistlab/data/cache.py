"""The data home: where verified datasets live as memory-mappable .npy files.

Resolution order: an explicit folder, then $MNISTLAB_HOME, then ~/.cache/mnistlab. Every write
goes to a temp file in the same folder and is renamed into place, under a lock, so a reader
never sees half a file and two processes fetching at once do the work once.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import filelock
import numpy as np

from mnistlab.errors import CacheError

ENV_HOME = "MNISTLAB_HOME"
META_VERSION = 1


def data_home(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder that holds mnistlab's cache: `data_dir`, else $MNISTLAB_HOME, else ~/.cache/mnistlab."""
    chosen = data_dir or os.environ.get(ENV_HOME) or Path.home() / ".cache" / "mnistlab"
    return Path(chosen).expanduser().absolute()


def cache_os_error(exc: OSError, where: Path) -> CacheError:
    """Turn an OSError met while writing the cache into one actionable line."""
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        what = f"no space left in {where}; free some space or point MNISTLAB_HOME (or --data-dir) at another disk"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        what = f"cache folder {where} is not writable ({exc.strerror}); set MNISTLAB_HOME or pass --data-dir to a writable folder"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        what = f"cache path {where} is not a folder; set MNISTLAB_HOME or pass --data-dir to a folder"
    else:
        what = f"cannot write the cache in {where}: {exc.strerror or exc}"
    return CacheError(what)


def ensure_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cache_os_error(exc, path) from None
    return path


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through `write(fileobj)` into a temp file beside `path`, then rename it in place.

    On any failure, Ctrl-C included, the temp file is removed and `path` is untouched.
    """
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise cache_os_error(exc, path.parent) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise cache_os_error(exc, path.parent) from None
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: Path, obj) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


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
