"""Safe file writing shared by the cache and run folders: temp file beside the target, fsync,
rename; OSErrors become one-line StorageErrors that name the folder and what to do. Also the one
reader of the TOML files users write (configs, search spaces)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from mnistlab.errors import StorageError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp makes 0600 files; what mnistlab writes (reports, plots, runs) gets a normal file's mode
FILE_MODE = 0o666 & ~_umask()


def storage_error(exc: OSError, where: Path, hint: str = "choose another folder", error=StorageError) -> StorageError:
    """Turn an OSError met while writing under `where` into one actionable line."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        what = f"no space left in {where}; free some space or {hint}"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        what = f"{where} is not writable ({exc.strerror}); {hint}"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        what = f"{where} is not a folder; {hint}"
    else:
        what = f"cannot write in {where}: {exc.strerror or exc}; {hint}"
    return error(what)


def ensure_dir(path: Path, hint: str = "choose another folder", error=StorageError) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, path, hint, error) from None
    return path


def atomic_write(path: Path, write: Callable[[IO[bytes]], None], hint: str = "choose another folder",
                 error=StorageError) -> Path:
    """Write a file through `write(fileobj)` into a temp file beside `path`, then rename it in place.

    On any failure, Ctrl-C included, the temp file is removed and `path` is untouched.
    """
    ensure_dir(path.parent, hint, error)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise storage_error(exc, path.parent, hint, error) from None
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise storage_error(exc, path.parent, hint, error) from None
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes, **kw) -> Path:
    return atomic_write(path, lambda fh: fh.write(data), **kw)


def atomic_write_json(path: Path, obj, **kw) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode(), **kw)


def read_toml(path: str | Path, what: str = "config") -> dict:
    """A TOML file a user wrote, or a one-line MnistlabError naming it."""
    import tomllib

    from mnistlab.errors import MnistlabError

    try:
        return tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise MnistlabError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MnistlabError(f"{what} {path} is not valid TOML: {exc}") from None
