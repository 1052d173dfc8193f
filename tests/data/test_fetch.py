"""Fetching, importing and caching, on tiny files written in each dataset's exact published format."""

import dataclasses
import errno
import gzip
import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data import catalog, fetch, import_files, load_dataset, verify
from mnistlab.data.cache import DatasetCache, data_home
from mnistlab.data.idx import write_idx
from mnistlab.errors import CacheError, ChecksumError, DatasetNotFound, IdxFormatError, SourceError, UnsafeArchiveError
from tests.conftest import make_tiny, md5
from tests.together import run_together


def leftovers(home: Path) -> list[str]:
    """Anything half-written: temp files, staging folders."""
    return [str(p) for p in home.rglob("*") if p.name.endswith(".part") or (p.parent.name == "tmp" and p.is_dir())]


def test_import_gz_folder_then_load(tmp_path):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    meta = import_files(tiny.spec, tiny.folder)
    assert set(meta["verified_by"].values()) == {"md5 of the published file"}
    for split in ("train", "test"):
        ds = load_dataset(tiny.spec, split, download=False)
        assert ds.images.dtype == np.uint8 and ds.images.shape == (len(ds), 28, 28)
        assert ds.labels.dtype == np.int64
        np.testing.assert_array_equal(ds.images, tiny.arrays[(split, "images")])
        np.testing.assert_array_equal(ds.labels, tiny.arrays[(split, "labels")])
    assert not ds.images.flags.writeable, "cache maps are read-only: nobody can corrupt the cache through them"


def test_load_data_keras_style(tmp_path, register):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    register(tiny.spec)
    import_files(tiny.spec.name, tiny.folder)
    import mnistlab

    (x_train, y_train), (x_test, y_test) = mnistlab.load_data(tiny.spec.name)
    assert x_train.shape == (30, 28, 28) and y_test.shape == (20,)
    np.testing.assert_array_equal(y_train, tiny.arrays[("train", "labels")])


def test_raw_and_renamed_copies_are_accepted_by_content_checksum(tmp_path):
    tiny = make_tiny(tmp_path / "raw", catalog.MNIST, compress=False, record="both")
    for p in tiny.folder.iterdir():  # Kaggle's names: train-images.idx3-ubyte
        p.rename(p.with_name(p.name.replace("-idx", ".idx")))
    meta = import_files(tiny.spec, tiny.folder)
    assert set(meta["verified_by"].values()) == {"sha256 of the IDX content"}


def test_recompressed_copy_is_accepted_by_content_checksum(tmp_path):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST, record="both")
    other = tmp_path / "recompressed"
    other.mkdir()
    for p in tiny.folder.iterdir():
        (other / p.name).write_bytes(gzip.compress(gzip.decompress(p.read_bytes()), compresslevel=1, mtime=123))
    meta = import_files(tiny.spec, other)
    assert set(meta["verified_by"].values()) == {"sha256 of the IDX content"}


def test_raw_copy_without_content_checksum_needs_trust(tmp_path):
    tiny = make_tiny(tmp_path / "raw", catalog.KMNIST, compress=False, record="md5")
    with pytest.raises(ChecksumError, match="--trust"):
        import_files(tiny.spec, tiny.folder)
    assert DatasetCache(data_home(), tiny.spec.name).meta() is None
    meta = import_files(tiny.spec, tiny.folder, trust=True)
    assert "trusted" in next(iter(meta["verified_by"].values()))


def test_checksum_mismatch_is_refused_and_nothing_cached(tmp_path, home):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST, record="both")
    bad = tiny.arrays[("train", "images")].copy()
    bad[0, 0, 0] ^= 1
    (tiny.folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(write_idx(bad)))
    with pytest.raises(ChecksumError, match="train-images-idx3-ubyte.gz.*does not match") as info:
        import_files(tiny.spec, tiny.folder)
    assert "\n" not in str(info.value)
    assert DatasetCache(home, tiny.spec.name).meta() is None and not list((home / "datasets").rglob("*.npy"))


@pytest.mark.parametrize("damage, error, words", [
    (lambda b: b[: len(b) // 2], IdxFormatError, "truncated or damaged compressed data"),
    (lambda b: b"", IdxFormatError, "empty file"),
    (lambda b: b"<!DOCTYPE html><html>Sign in to continue</html>", IdxFormatError, "HTML page"),
    (lambda b: gzip.compress(b"\x00\x00\x09\x03" + gzip.decompress(b)[4:]), ChecksumError, "does not match"),
    (lambda b: gzip.compress(b"\x13\x37\x08\x03" + gzip.decompress(b)[4:]), IdxFormatError, "magic number"),
])
def test_damaged_files(tmp_path, damage, error, words):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST, record="both")
    p = tiny.folder / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(damage(p.read_bytes()))
    with pytest.raises(error, match=words):
        import_files(tiny.spec, tiny.folder)


def test_count_mismatch_and_wrong_dimensions_are_refused(tmp_path):
    tiny = make_tiny(tmp_path / "a", catalog.MNIST, record="none")
    (tiny.folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(write_idx(np.zeros(29, np.uint8))))
    spec = dataclasses.replace(tiny.spec, sizes={"train": 30, "test": 20})
    with pytest.raises(IdxFormatError, match="29 labels for 30 images"):
        import_files(spec, tiny.folder, trust=True)
    tiny = make_tiny(tmp_path / "b", catalog.MNIST, record="none")
    (tiny.folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(write_idx(np.zeros((30, 27, 28), np.uint8))))
    with pytest.raises(IdxFormatError, match="uint8 30x27x28, expected uint8 30x28x28"):
        import_files(tiny.spec, tiny.folder, trust=True)


def test_labels_outside_the_classes_are_refused(tmp_path):
    tiny = make_tiny(tmp_path / "a", catalog.MNIST, record="none")
    (tiny.folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(write_idx(np.full(20, 10, np.uint8))))
    with pytest.raises(IdxFormatError, match="labels range 10..10, outside the 10 classes"):
        import_files(tiny.spec, tiny.folder, trust=True)


def test_missing_file_is_named(tmp_path):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    (tiny.folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(SourceError, match="lacks t10k-labels-idx1-ubyte.gz"):
        import_files(tiny.spec, tiny.folder)


def _emnist_zip(tmp_path, split="letters", extra_members=()):
    base = catalog.get_spec(f"emnist-{split}")
    tiny = make_tiny(tmp_path / "gzip", base, record="none")
    zpath = tmp_path / "gzip.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for name, data in tiny.blobs.items():
            zf.writestr(f"gzip/{name}", data)
        for name in extra_members:
            zf.writestr(name, b"x")
    archive = dataclasses.replace(base.archive, md5=md5(zpath.read_bytes()), sha256=None)
    return dataclasses.replace(tiny.spec, archive=archive), tiny, zpath


def test_emnist_zip_images_upright_and_letters_from_zero(tmp_path):
    spec, tiny, zpath = _emnist_zip(tmp_path)
    meta = import_files(spec, zpath)
    assert set(meta["verified_by"].values()) == {f"md5 of {spec.archive.name}"}
    ds = load_dataset(spec, "train")
    np.testing.assert_array_equal(ds.images, tiny.arrays[("train", "images")])  # transposed back
    assert (ds.images[:, :, 0] == 200).all(), "the first column mark is where it was drawn"
    np.testing.assert_array_equal(ds.labels, tiny.arrays[("train", "labels")])
    assert ds.labels.min() == 0 and ds.labels.max() == 25 and len(ds.classes) == 26


def test_emnist_zip_with_wrong_checksum_is_not_trusted(tmp_path):
    spec, _, zpath = _emnist_zip(tmp_path)
    spec = dataclasses.replace(spec, archive=dataclasses.replace(spec.archive, md5="0" * 32))
    with pytest.raises(ChecksumError, match="no published checksum"):
        import_files(spec, zpath)


def test_zip_with_path_traversal_is_refused(tmp_path, home):
    spec, _, zpath = _emnist_zip(tmp_path, extra_members=["../../evil.txt"])
    with pytest.raises(UnsafeArchiveError, match=r"unsafe member path '../../evil.txt'"):
        import_files(spec, zpath)
    assert not (tmp_path / "evil.txt").exists() and not (home.parent / "evil.txt").exists()
    assert DatasetCache(home, spec.name).meta() is None


def test_emnist_archive_from_mirror_is_kept_for_the_other_splits(tmp_path, mirror, home):
    spec, tiny, zpath = _emnist_zip(tmp_path)
    mirror.routes["/gzip.zip"] = (200, "application/zip", zpath.read_bytes())
    spec = dataclasses.replace(spec, archive=dataclasses.replace(spec.archive, urls=(mirror.url + "gzip.zip",)))
    fetch(spec)
    fetch(dataclasses.replace(spec, name="tiny-emnist-letters-again"))
    assert mirror.hits["/gzip.zip"] == 1 and (home / "downloads" / spec.archive.name).exists()


def test_qmnist_eight_column_labels_and_subsets(tmp_path):
    tiny = make_tiny(tmp_path / "q", catalog.QMNIST, n_test=30)
    spec = dataclasses.replace(tiny.spec, subsets={"test10k": ("test", 0, 10), "test50k": ("test", 10, 30)})
    import_files(spec, tiny.folder)
    test = load_dataset(spec, "test")
    np.testing.assert_array_equal(test.labels, tiny.arrays[("test", "labels")])  # column 0, not writer ids
    first, rest = load_dataset(spec, "test10k"), load_dataset(spec, "test50k")
    assert len(first) == 10 and len(rest) == 20
    np.testing.assert_array_equal(np.concatenate([first.images, rest.images]), test.images)


def test_kmnist_npz_files(tmp_path):
    tiny = make_tiny(tmp_path / "idx", catalog.KMNIST, record="both")
    npz = tmp_path / "npz"
    npz.mkdir()
    for (split, kind), fname in catalog.KMNIST_NPZ.items():
        arr = tiny.arrays[(split, kind)]
        np.savez_compressed(npz / fname, arr_0=arr if kind == "images" else arr.astype(np.uint8))
    meta = import_files(tiny.spec, npz)
    assert set(meta["verified_by"].values()) == {"sha256 of the IDX content"}
    np.testing.assert_array_equal(load_dataset(tiny.spec, "test").labels, tiny.arrays[("test", "labels")])


def test_keras_mnist_npz(tmp_path):
    tiny = make_tiny(tmp_path / "idx", catalog.MNIST, record="both")
    a = tiny.arrays
    np.savez(tmp_path / "mnist.npz", x_train=a[("train", "images")], y_train=a[("train", "labels")].astype(np.uint8),
             x_test=a[("test", "images")], y_test=a[("test", "labels")].astype(np.uint8))
    import_files(tiny.spec, tmp_path / "mnist.npz")
    assert len(load_dataset(tiny.spec, "train")) == 30


def test_tar_archive_import(tmp_path):
    import tarfile

    tiny = make_tiny(tmp_path / "files", catalog.FASHION_MNIST)
    with tarfile.open(tmp_path / "fashion.tar.gz", "w:gz") as tf:
        tf.add(tiny.folder, arcname="fashion")
    import_files(tiny.spec, tmp_path / "fashion.tar.gz")
    assert load_dataset(tiny.spec, "test").classes[0] == "T-shirt/top"


def test_damaged_cache_is_detected_and_refetched(tmp_path, mirror, home):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    mirror.serve(tiny)
    spec = dataclasses.replace(tiny.spec, mirrors=(mirror.url,))
    fetch(spec)
    assert verify(spec) == []
    npy = DatasetCache(home, spec.name).path("train", "images")
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0xFF
    npy.write_bytes(bytes(data))
    assert verify(spec) == ["train-images.npy"]
    ds = load_dataset(spec, "train")  # re-fetched, not returned damaged
    np.testing.assert_array_equal(ds.images, tiny.arrays[("train", "images")])
    assert mirror.hits["/train-images-idx3-ubyte.gz"] == 2 and verify(spec) == []


def test_cached_load_does_not_touch_sources(tmp_path, mirror):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    mirror.serve(tiny)
    spec = dataclasses.replace(tiny.spec, mirrors=(mirror.url,))
    load_dataset(spec)
    hits = sum(mirror.hits.values())
    for _ in range(3):
        load_dataset(spec, "test")
    assert sum(mirror.hits.values()) == hits == 4


def test_no_source_lists_everything_tried(tmp_path):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    spec = dataclasses.replace(tiny.spec, mirrors=("http://127.0.0.1:9/",),
                               packages=(catalog.PackageSpec("npm", "no-such-package-mnistlab@0.0.0", "data"),))
    with pytest.raises(DatasetNotFound) as info:
        load_dataset(spec)
    msg = str(info.value)
    assert "cache: empty" in msg and "mirrors: no mirror served" in msg and "127.0.0.1:9" in msg
    assert "packages: " in msg and f"mnistlab data import {spec.name} PATH" in msg and "\n" not in msg


def test_load_without_download(tmp_path):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    with pytest.raises(DatasetNotFound, match="mnistlab data fetch"):
        load_dataset(tiny.spec, download=False)


def test_cache_under_a_file_is_a_clear_error(tmp_path):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(CacheError, match="blocker.*(not a folder|not writable)"):
        import_files(tiny.spec, tiny.folder, data_dir=blocker / "cache")


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "no space left"), (errno.EROFS, "not writable")])
def test_full_or_read_only_disk_leaves_nothing_half_written(tmp_path, home, monkeypatch, code, words):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    real_save, calls = np.save, []

    def failing_save(fh, arr, **kw):
        calls.append(1)
        if len(calls) == 3:
            fh.write(b"partial")
            raise OSError(code, "simulated")
        return real_save(fh, arr, **kw)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(CacheError, match=words):
        import_files(tiny.spec, tiny.folder)
    assert DatasetCache(home, tiny.spec.name).meta() is None
    assert leftovers(home) == []
    monkeypatch.setattr(np, "save", real_save)
    import_files(tiny.spec, tiny.folder)  # and the next attempt succeeds
    assert verify(tiny.spec) == []


def test_ctrl_c_during_fetch_leaves_nothing_half_written(tmp_path, home, monkeypatch):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    import_files(tiny.spec, tiny.folder)
    before = {p: p.read_bytes() for p in (home / "datasets").rglob("*.npy")}
    real_save, calls = np.save, []

    def interrupted_save(fh, arr, **kw):
        calls.append(1)
        if len(calls) == 2:
            fh.write(b"half")
            raise KeyboardInterrupt
        return real_save(fh, arr, **kw)

    monkeypatch.setattr(np, "save", interrupted_save)
    other = make_tiny(tmp_path / "other", catalog.MNIST, seed=5)
    with pytest.raises(KeyboardInterrupt):
        import_files(tiny.spec, other.folder, trust=True)
    assert leftovers(home) == []
    new = {("train", "images"): other.arrays[("train", "images")]}
    for p, data in before.items():  # each file is whole: the new one or the old one, never half
        split, kind = p.stem.split("-")
        if p.read_bytes() != data:
            np.testing.assert_array_equal(np.load(p), new[(split, kind)])
    assert DatasetCache(home, tiny.spec.name).meta() is None, "a mixed entry must not look complete"
    monkeypatch.setattr(np, "save", real_save)
    with pytest.raises(DatasetNotFound):
        load_dataset(tiny.spec)  # incomplete: it is fetched again (no source here), never served mixed


def test_interrupted_download_leaves_no_part_file(tmp_path, mirror, home, monkeypatch):
    from mnistlab.data import sources

    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    mirror.serve(tiny)
    spec = dataclasses.replace(tiny.spec, mirrors=(mirror.url,))
    real_open, writes = open, []

    def boom_open(path, mode="r", *a, **kw):
        fh = real_open(path, mode, *a, **kw)
        if "w" in mode and str(path).endswith(".part"):
            orig = fh.write

            def write(b):
                writes.append(len(b))
                orig(b[:10])
                raise KeyboardInterrupt

            fh.write = write
        return fh

    monkeypatch.setattr(sources, "open", boom_open, raising=False)
    with pytest.raises(KeyboardInterrupt):
        fetch(spec)
    assert writes and leftovers(home) == []
    assert DatasetCache(home, spec.name).meta() is None


FETCH = """
import filelock, os, pickle, sys
from pathlib import Path
from mnistlab.data import fetch
asked = filelock.FileLock.acquire
def acquire(self, *a, **k):  # say that this process has asked for the cache's lock
    Path(sys.argv[3], f"asked-{os.getpid()}").touch()
    return asked(self, *a, **k)
filelock.FileLock.acquire = acquire
spec = pickle.loads(open(sys.argv[1], "rb").read())
print(fetch(spec, data_dir=sys.argv[2])["stored_at"])
"""


def test_processes_fetching_one_dataset_at_once(tmp_path, mirror):
    import pickle

    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    mirror.serve(tiny)
    spec = dataclasses.replace(tiny.spec, mirrors=(mirror.url,))
    (tmp_path / "spec.pickle").write_bytes(pickle.dumps(spec))
    for round_ in range(3):
        home, asked = tmp_path / f"home{round_}", tmp_path / f"asked{round_}"
        asked.mkdir()
        # the first download is held until all four processes have asked for the lock: they are in flight at once
        mirror.hits.clear()
        mirror.hold, mirror.held_until_ready = (lambda folder=asked: len(list(folder.iterdir())) >= 4), []
        results = run_together([["-c", FETCH, str(tmp_path / "spec.pickle"), str(home), str(asked)]] * 4, tmp_path)
        assert mirror.held_until_ready and all(mirror.held_until_ready)
        assert [r.returncode for r in results] == [0] * 4, [r.stderr[-1500:] for r in results if r.returncode]
        stamps = {r.stdout.strip() for r in results}
        assert len(stamps) == 1, "the later processes found the first one's result instead of fetching again"
        assert all(n == 1 for n in mirror.hits.values()) and len(mirror.hits) == 4
        assert verify(spec, data_dir=home) == [] and leftovers(home) == []


def test_content_hashes_are_recorded_in_meta(tmp_path, home):
    tiny = make_tiny(tmp_path / "files", catalog.MNIST)
    meta = import_files(tiny.spec, tiny.folder)
    expected = hashlib.sha256(gzip.decompress(tiny.blobs["train-images-idx3-ubyte.gz"])).hexdigest()
    assert meta["content_sha256"]["train-images-idx3-ubyte.gz"] == expected
