"""KMNIST's real files, as published (../shared/data/kmnist: the test split and the training labels, beside the
checkout as in CI, never copied into the repository): the catalog's checksums, the IDX reader, the counts, the
class balance and the class names. Skips, saying why, where the folder is absent."""

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from mnistlab.cli import invoke as cli
from mnistlab.data import catalog
from mnistlab.data.idx import read_idx

pytestmark = pytest.mark.realdata
REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "kmnist"
# Kuzushiji-MNIST's class map (kmnist_classmap.csv): お き す つ な は ま や れ を
HIRAGANA = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
# the test images' IDX content (what the cache records as content_sha256), computed once from the published file
TEST_IMAGES_CONTENT_SHA256 = "76fbd229ce87db80dd281af5e6670de4ad0e42fb30a7bd643972994c47c1f42e"


def _need(name: str) -> Path:
    path = REAL / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the real KMNIST files lie in ../shared/data/kmnist beside the checkout")
    return path


def _published(name: str) -> str:
    """The sha256 the folder's SHA256SUMS gives for a file (md5s are checked against the catalog)."""
    for line in _need("SHA256SUMS").read_text().splitlines():
        digest, _, file = line.partition("  ")
        if file.strip() == name:
            return digest
    raise AssertionError(f"SHA256SUMS names no {name}")


@pytest.mark.parametrize("split, kind, count", [("test", "images", 10000), ("test", "labels", 10000), ("train", "labels", 60000)])
def test_the_real_files_match_the_catalog_and_read(split, kind, count):
    fs = catalog.KMNIST.file(split, kind)
    data = _need(fs.name).read_bytes()
    assert hashlib.md5(data).hexdigest() == fs.md5  # the checksum the catalog verifies imports against
    assert hashlib.sha256(data).hexdigest() == _published(fs.name)
    array = read_idx(gzip.decompress(data), fs.name)
    assert catalog.KMNIST.sizes[split] == count == len(array)
    if kind == "images":
        assert hashlib.sha256(gzip.decompress(data)).hexdigest() == TEST_IMAGES_CONTENT_SHA256
        assert array.dtype == np.uint8 and array.shape == (count, 28, 28) and 0 < array.mean() < 255
    else:  # balanced: 1,000 of each character in the test set, 6,000 in the training set
        assert array.min() == 0 and array.max() == 9
        assert np.bincount(array, minlength=10).tolist() == [count // 10] * 10


def test_class_names_and_a_partial_import_refused(tmp_path, capsys, monkeypatch):
    _need("t10k-images-idx3-ubyte.gz")
    assert catalog.KMNIST.classes == HIRAGANA
    monkeypatch.setenv("MNISTLAB_HOME", str(tmp_path / "home"))
    assert cli(["data", "import", "kmnist", str(REAL)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lacks train-images-idx3-ubyte.gz" in err and "import again" in err
    assert not (tmp_path / "home" / "datasets" / "kmnist" / "meta.json").exists()
