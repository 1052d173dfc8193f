"""The CLI: every command end to end on tiny data, and bad input as one line with a non-zero exit."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from mnistlab.cli import invoke
from mnistlab.data import catalog
from tests.conftest import make_tiny


@pytest.fixture
def tiny(tmp_path, register):
    t = make_tiny(tmp_path / "files", catalog.MNIST, n_train=40)
    register(t.spec)
    return t


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_import_info_verify_list(tiny, capsys):
    assert invoke(["data", "import", "tiny-mnist", str(tiny.folder)]) == 0
    assert "verified by md5 of the published file" in capsys.readouterr().out
    assert invoke(["data", "info", "tiny-mnist", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["train"]["n"] == 40
    assert info["splits"]["train"]["class_counts"] == np.bincount(tiny.arrays[("train", "labels")], minlength=10).tolist()
    x = tiny.arrays[("train", "images")] / 255
    assert info["splits"]["train"]["mean"] == pytest.approx(x.mean()) and info["splits"]["train"]["std"] == pytest.approx(x.std())
    assert invoke(["data", "info", "tiny-mnist"]) == 0
    assert "verified by md5" in capsys.readouterr().out
    assert invoke(["data", "verify", "tiny-mnist"]) == 0
    assert "tiny-mnist: ok" in capsys.readouterr().out
    assert invoke(["data", "list"]) == 0
    assert "tiny-mnist" in capsys.readouterr().out


def test_verify_reports_damage(tiny, home, capsys):
    invoke(["data", "import", "tiny-mnist", str(tiny.folder)])
    npy = home / "datasets" / "tiny-mnist" / "test-labels.npy"
    npy.write_bytes(npy.read_bytes()[:-8] + b"\xff" * 8)
    capsys.readouterr()
    assert invoke(["data", "verify", "tiny-mnist"]) == 1
    assert "DAMAGED: test-labels.npy" in capsys.readouterr().out


def test_show_writes_a_real_picture(tiny, tmp_path, capsys):
    invoke(["data", "import", "tiny-mnist", str(tiny.folder)])
    out = tmp_path / "grid.png"
    assert invoke(["data", "show", "tiny-mnist", "--out", str(out), "--per-class", "3"]) == 0
    img = np.asarray(Image.open(out).convert("L"))
    assert img.shape[0] > 200 and img.std() > 10, "a non-blank picture"


def test_export_csv_and_png(tiny, tmp_path):
    invoke(["data", "import", "tiny-mnist", str(tiny.folder)])
    assert invoke(["data", "export", "tiny-mnist", "--format", "csv", "--out", str(tmp_path / "csv")]) == 0
    rows = (tmp_path / "csv" / "tiny-mnist_train.csv").read_text().splitlines()
    assert rows[0].startswith("label,pixel0,pixel1") and rows[0].endswith("pixel783") and len(rows) == 41
    first = np.array(rows[1].split(","), dtype=int)
    assert first[0] == tiny.arrays[("train", "labels")][0]
    np.testing.assert_array_equal(first[1:], tiny.arrays[("train", "images")][0].ravel())
    assert invoke(["data", "export", "tiny-mnist", "--format", "png", "--out", str(tmp_path / "png"), "--limit", "5"]) == 0
    pngs = sorted((tmp_path / "png" / "test").rglob("*.png"))
    assert len(pngs) == 5
    label = tiny.arrays[("test", "labels")][0]
    p0 = next(p for p in pngs if p.name == "000000.png")
    assert p0.parent.name == f"{label}_{label}"
    np.testing.assert_array_equal(np.asarray(Image.open(p0)), tiny.arrays[("test", "images")][0])


@pytest.mark.parametrize("argv, words", [
    (["data", "fetch", "mnsit"], "did you mean 'mnist'"),
    (["data", "info", "cifar-10"], "unknown dataset 'cifar-10'"),
    (["data", "fetch", "mnist", "--from", "ftp"], "unknown source 'ftp'"),
    (["data", "export", "mnist", "--format", "tiff", "--out", "x"], "unknown export format 'tiff'"),
])
def test_bad_names_are_one_line(argv, words, capsys):
    assert invoke(argv) == 1
    assert words in one_line_error(capsys)


def test_bad_import_is_one_line(tiny, tmp_path, capsys):
    (tiny.folder / "train-labels-idx1-ubyte.gz").write_bytes(b"")
    assert invoke(["data", "import", "tiny-mnist", str(tiny.folder)]) == 1
    assert "empty file" in one_line_error(capsys)
    assert invoke(["data", "import", "tiny-mnist", str(tmp_path / "nowhere")]) == 1
    assert "no such file or folder" in one_line_error(capsys)


def test_zip_traversal_is_one_line(tiny, tmp_path, capsys):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../../etc/cron.d/evil", b"x")
    assert invoke(["data", "import", "tiny-mnist", str(z)]) == 1
    assert "unsafe member path" in one_line_error(capsys)


def test_verify_uncached_is_one_line(tiny, capsys):
    assert invoke(["data", "verify", "tiny-mnist"]) == 1
    assert "not in the cache" in one_line_error(capsys)


def test_console_script_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mnistlab", "data", "info", "fashion-mnst"], capture_output=True,
                          text=True, env={"MNISTLAB_HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                                          **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: unknown dataset 'fashion-mnst'; did you mean 'fashion-mnist'")
    assert proc.stderr.count("\n") == 1


def test_usage_error_exit_code(capsys):
    assert invoke(["data", "show", "mnist"]) == 2  # --out is required
    assert "--out" in capsys.readouterr().err


@pytest.mark.realdata
def test_export_parquet_in_the_hugging_face_layout(real_home, tmp_path):
    import io
    import json

    import pyarrow.parquet as pq

    import mnistlab

    assert invoke(["data", "export", "mnist", "--format", "parquet", "--out", str(tmp_path / "pq"), "--limit", "2000",
                "--data-dir", str(real_home)]) == 0
    assert sorted(p.name for p in (tmp_path / "pq" / "mnist").iterdir()) == ["test-00000-of-00001.parquet",
                                                                            "train-00000-of-00001.parquet"]
    table = pq.read_table(tmp_path / "pq" / "mnist" / "test-00000-of-00001.parquet")
    assert table.schema.field("label").type == "int64" and table.num_rows == 2000
    assert [f.name for f in table.schema.field("image").type] == ["bytes", "path"]
    features = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    assert features["image"] == {"_type": "Image"} and features["label"]["names"] == list("0123456789")
    test = mnistlab.load_dataset("mnist", "test", data_dir=real_home)
    rows = table.to_pylist()
    for i in (0, 1, 1999):
        img = np.asarray(Image.open(io.BytesIO(rows[i]["image"]["bytes"])))
        np.testing.assert_array_equal(img, test.images[i])
        assert rows[i]["label"] == test.labels[i]


def test_bench_plural_options_take_several_values():
    from mnistlab.cli import spread

    assert spread(["bench", "--datasets", "mnist", "fashion-mnist", "--algorithms", "erm", "irm", "-q"]) == \
        ["bench", "--datasets", "mnist", "--datasets", "fashion-mnist", "--algorithms", "erm", "--algorithms", "irm", "-q"]
    assert spread(["train", "--model", "cnn", "extra"]) == ["train", "--model", "cnn", "extra"]  # other commands as given
    assert spread([]) == []
    assert spread(["bench", "--test-environments", "+90%", "-90%", "-q"]) == \
        ["bench", "--test-environments", "+90%", "--test-environments", "-90%", "-q"]  # -90% is a value
