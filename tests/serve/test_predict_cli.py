import json

import numpy as np
import pytest
from benchmarks.photos import photo_of

import mnistlab
from mnistlab.cli import invoke as cli

pytestmark = pytest.mark.realdata


def test_predict_files_in_one_batch(mnist_run, real_home, tmp_path, capsys):
    test = mnistlab.load_dataset("mnist", "test", data_dir=real_home)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(4):
        p = tmp_path / f"digit{i}.jpg"
        p.write_bytes(photo_of(test.images[i], rng))
        paths.append(str(p))
    steps = tmp_path / "steps"
    assert cli(["predict", str(mnist_run.path), *paths, "--json", "--top", "2", "--save-preprocessed", str(steps)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["prediction"] for r in results] == [str(d) for d in test.labels[:4]]
    assert all(len(r["top"]) == 2 and r["top"][0]["probability"] >= r["top"][1]["probability"] for r in results)
    assert len(list(steps.glob("digit0.*.png"))) == 6


def test_predict_reports_bad_files_and_goes_on(mnist_run, real_home, tmp_path, capsys):
    good = tmp_path / "good.jpg"
    good.write_bytes(photo_of(mnistlab.load_dataset("mnist", "test", data_dir=real_home).images[0], np.random.default_rng(0)))
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert cli(["predict", str(mnist_run.path), str(good), str(bad), str(tmp_path / "missing.png")]) == 1
    captured = capsys.readouterr()
    assert "good.jpg: 7" in captured.out
    assert "bad.png: error:" in captured.err and "missing.png: error:" in captured.err and "Traceback" not in captured.err
