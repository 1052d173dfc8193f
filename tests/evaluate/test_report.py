"""Evaluation, report and compare on a tiny real run."""

import io
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from mnistlab.cli import invoke as cli
from mnistlab.data import catalog
from mnistlab.errors import RunError
from mnistlab.evaluate import evaluate_run, plots
from mnistlab.report import build_report
from mnistlab.training import train
from tests.conftest import make_tiny

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def tiny_runs(real_home, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    a = train("mlp", "mnist", out=root / "mlp", data_dir=real_home, epochs=2, train_subset=2000)
    b = train("logreg", "mnist", out=root / "logreg", data_dir=real_home, train_subset=2000)
    return a, b


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.text = [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def _png_ok(data: bytes):
    img = Image.open(io.BytesIO(data))
    img.verify()
    arr = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    assert arr.shape[0] > 100 and arr.shape[1] > 100 and arr.std() > 5, "a non-blank picture"


def test_report_is_self_contained_and_matches_eval(tiny_runs, real_home):
    import base64

    run = tiny_runs[0]
    paths = build_report(run, data_dir=real_home)
    page = paths["html"].read_text()
    parser = _Collect()
    parser.feed(page)
    assert len(parser.imgs) == 7 and all(src.startswith("data:image/png;base64,") for src in parser.imgs)  # an mlp: no filters
    for src in parser.imgs:
        _png_ok(base64.b64decode(src.split(",", 1)[1]))
    ev = json.loads((run.path / "eval.json").read_text())
    text = " ".join(parser.text)
    assert f"{ev['accuracy']:.4f}" in text and f"{ev['errors']:,} of 10,000" in text
    assert ev["accuracy"] == pytest.approx(run.metrics["test_accuracy"])
    md = paths["md"].read_text()
    for name in ("curves", "confusion", "mistakes", "samples", "calibration", "confused", "map"):
        assert f"report_files/{name}.png" in md
        _png_ok((run.path / "report_files" / f"{name}.png").read_bytes())
    assert "http" not in page.split("<body>")[0], "no external resources: it opens offline"
    assert "A map of the test set" in text and "The most confused pairs" in text
    fig = plots.learning_curves(run.history, curve=run.curve)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "train: the epoch's mean over its batches" in legend and "test: end of epoch" in legend


def test_the_map_is_of_the_nets_own_features(tiny_runs, real_home):
    """The map's points are the t-SNE of what the head is given: the penultimate features, one row per image."""
    from mnistlab.data import load_dataset
    from mnistlab.explain import inside

    images = load_dataset("mnist", "test", data_dir=real_home).images[:50]
    features = inside.penultimate(tiny_runs[0].model, images)
    assert features.shape == (50, 128)  # the mlp's hidden layer
    head = tiny_runs[0].model.head
    import torch

    logits = head(torch.from_numpy(features)).detach().numpy()
    assert (logits.argmax(1) == tiny_runs[0].predict(images)).mean() > 0.95  # the head on them gives the net's answers


def test_evaluate_classical_and_cli(tiny_runs, real_home, capsys, monkeypatch):
    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    _, logreg = tiny_runs
    assert cli(["evaluate", str(logreg.path)]) == 0
    out = capsys.readouterr().out
    assert "accuracy 0." in out and "most confident mistakes" in out
    ev = evaluate_run(logreg, data_dir=real_home, write=False)
    assert ev["accuracy"] == pytest.approx(logreg.metrics["test_accuracy"])
    assert sum(ev["confusion_matrix"][i][i] for i in range(10)) == 10000 - ev["errors"]


def test_evaluate_on_another_dataset_with_the_same_classes(tiny_runs, real_home, tmp_path, register):
    tiny = make_tiny(tmp_path / "q", catalog.QMNIST, n_test=30)
    spec = register(tiny.spec)
    import mnistlab

    mnistlab.data.import_files(spec, tiny.folder, data_dir=real_home)
    try:
        ev = evaluate_run(tiny_runs[0], dataset=spec.name, data_dir=real_home)
        assert ev["n"] == 30 and ev["source"] == "predicted"
        assert (tiny_runs[0].path / f"eval-{spec.name}-test.json").exists()
    finally:
        mnistlab.data.cache.DatasetCache(real_home, spec.name).clear()


@pytest.fixture
def qmnist_of_real_digits(tmp_path, home):
    """QMNIST in its published format (gzipped IDX, labels an int32 table of 8 columns, class first) holding 60 real
    MNIST test digits: 10 in test10k, 50 in test50k; imported into this test's own cache, the catalog's spec restored."""
    import dataclasses
    import gzip
    import hashlib

    from mnistlab.data import get_spec, import_files, load_dataset
    from mnistlab.data.idx import write_idx
    from tests.conftest import REAL_HOME

    real = load_dataset("mnist", "test", data_dir=REAL_HOME)
    images, labels = real.images[:60], real.labels[:60]
    table = np.zeros((60, 8), np.int32)
    table[:, 0], table[:, 2] = labels, np.arange(60) + 2000
    original = get_spec("qmnist")
    files, folder = [], tmp_path / "qmnist-files"
    folder.mkdir()
    for fs in original.files:
        content = write_idx(images if fs.kind == "images" else table) if fs.split == "test" else write_idx(
            real.images[:5] if fs.kind == "images" else table[:5])
        blob = gzip.compress(content, mtime=0)
        (folder / fs.name).write_bytes(blob)
        files.append(dataclasses.replace(fs, md5=hashlib.md5(blob).hexdigest(), sha256=None))
    spec = dataclasses.replace(original, files=tuple(files), sizes={"train": 5, "test": 60}, mirrors=(), packages=(),
                               subsets={"test10k": ("test", 0, 10), "test50k": ("test", 10, 60)})
    catalog.register_dataset(spec, replace=True)
    try:
        import_files(spec, folder)
        yield labels[10:]
    finally:
        catalog.register_dataset(original, replace=True)


def test_an_mnist_run_on_qmnist_test50k_with_statistics(tiny_runs, qmnist_of_real_digits, capsys):
    from mnistlab.evaluate.stats import accuracy_interval

    mlp, logreg = tiny_runs
    assert cli(["evaluate", str(mlp.path), "--dataset", "qmnist", "--split", "test50k", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    predicted = mlp.predict(load_dataset_images("mnist")[10:60])
    correct = int((predicted == qmnist_of_real_digits).sum())
    assert ev["n"] == 50 and ev["accuracy"] == correct / 50 and ev["source"] == "predicted"
    assert ev["accuracy_interval"] == pytest.approx(list(accuracy_interval(correct, 50)))
    assert (mlp.path / "eval-qmnist-test50k.json").exists()
    assert cli(["compare", str(mlp.path), str(logreg.path), "--dataset", "qmnist", "--split", "test50k", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [(r["dataset"], r["split"], r["n"]) for r in res["rows"]] == [("qmnist", "test50k", 50)] * 2
    other = logreg.predict(load_dataset_images("mnist")[10:60]) == qmnist_of_real_digits
    mine = predicted == qmnist_of_real_digits
    assert (res["pairs"][0]["a_only_right"], res["pairs"][0]["b_only_right"]) == (int((mine & ~other).sum()), int((~mine & other).sum()))


def load_dataset_images(name):
    from mnistlab.data import load_dataset
    from tests.conftest import REAL_HOME

    return load_dataset(name, "test", data_dir=REAL_HOME).images


def test_classes_that_do_not_match(tiny_runs, real_home):
    with pytest.raises(RunError, match="predicts 10 classes .* but fashion-mnist"):
        evaluate_run(tiny_runs[0], dataset="fashion-mnist", data_dir=real_home)


def test_held_out_is_the_images_a_run_never_trained_on(tiny_runs, real_home, tmp_path, capsys, monkeypatch):
    """The held-out split of a run is the 5,000 training images its temperature was fitted on: the calibrated
    log-loss there is the one training recorded; an ensemble of runs that held out the same images (one seed)
    is judged there by its members' mean probabilities."""
    from mnistlab.data import get_spec, load_dataset
    from mnistlab.evaluate.evaluate import held_out_split
    from mnistlab.training.ensemble import make_ensemble

    mlp = tiny_runs[0]
    ev = evaluate_run(mlp, split="held-out", data_dir=real_home)
    assert ev["n"] == 5000 and ev["split"] == "held-out" and ev["source"] == "predicted"
    assert ev["loss"] == pytest.approx(mlp.metrics["calibration"]["held_out"]["nll_after"], rel=1e-3)
    assert ev["accuracy"] == mlp.metrics["calibration"]["held_out"]["accuracy"]  # recorded by training: no evaluate needed
    assert (mlp.path / "eval-mnist-held-out.json").exists()
    train_labels = load_dataset("mnist", "train", data_dir=real_home).labels
    assert ev["confident_mistakes"] and all(train_labels[w["index"]] == w["true"] for w in ev["confident_mistakes"])

    other = train("mlp", "mnist", out=tmp_path / "other", data_dir=real_home, epochs=1, train_subset=2000, lr=3e-3)
    pair = make_ensemble([mlp.path, other.path], out=tmp_path / "pair", data_dir=real_home)
    idx, held = held_out_split(mlp, get_spec("mnist"), real_home)
    mean = (mlp.predict_proba(held.images) + other.predict_proba(held.images)) / 2
    assert evaluate_run(pair, split="held-out", data_dir=real_home)["accuracy"] == pytest.approx(
        float((mean.argmax(1) == train_labels[idx]).mean()))

    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    assert cli(["evaluate", str(pair.path), "--split", "held-out"]) == 0
    assert "ensemble on mnist held-out (5,000 images, predicted)" in capsys.readouterr().out


def test_held_out_refuses_runs_without_common_held_out_images(tiny_runs, real_home, tmp_path, capsys):
    from mnistlab.training.ensemble import make_ensemble

    mlp, logreg = tiny_runs
    with pytest.raises(RunError, match="trained on every training image .* --split test"):
        evaluate_run(logreg, split="held-out", data_dir=real_home)
    seed1 = train("mlp", "mnist", out=tmp_path / "seed1", data_dir=real_home, epochs=1, train_subset=2000, seed=1)
    pair = make_ensemble([mlp.path, seed1.path], out=tmp_path / "pair", data_dir=real_home)
    with pytest.raises(RunError, match="held out different training images"):
        evaluate_run(pair, split="held-out", data_dir=real_home)
    assert cli(["evaluate", str(mlp.path), "--split", "heldout"]) == 1
    assert "did you mean 'held-out'" in capsys.readouterr().err


def test_compare(tiny_runs, tmp_path, capsys):
    plot = tmp_path / "cmp.png"
    assert cli(["compare", str(tiny_runs[0].path), str(tiny_runs[1].path), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "mlp" in out and "logreg" in out and "McNemar p" in out
    _png_ok(plot.read_bytes())
    assert cli(["compare", str(tiny_runs[0].path), str(tiny_runs[1].path), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    a, b = (np.load(r.path / "test_probs.npy").argmax(1) for r in tiny_runs)
    labels = mnistlab_test_labels()
    pair = res["pairs"][0]
    assert (pair["a_only_right"], pair["b_only_right"]) == (int(((a == labels) & (b != labels)).sum()),
                                                            int(((a != labels) & (b == labels)).sum()))
    assert [r["accuracy"] for r in res["rows"]] == [pytest.approx(r.metrics["test_accuracy"]) for r in tiny_runs]
    assert all(r["interval"][0] < r["accuracy"] < r["interval"][1] for r in res["rows"])
    assert res["groups"] == []  # an mlp and a logreg: two recipes, not seeds of one


def mnistlab_test_labels():
    from mnistlab.data import load_dataset
    from tests.conftest import REAL_HOME

    return load_dataset("mnist", "test", data_dir=REAL_HOME).labels


def test_broken_run_folders(tiny_runs, real_home, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_runs[0].path, broken)
    (broken / "metrics.json").unlink()  # crashed before the end
    assert cli(["report", str(broken)]) == 1
    assert "did not finish" in capsys.readouterr().err
    shutil.copytree(tiny_runs[0].path, tmp_path / "old")
    np.save(tmp_path / "old" / "test_probs.npy", np.zeros((10, 10), np.float32))  # another version's shape
    with pytest.raises(RunError, match="has shape"):
        evaluate_run(tmp_path / "old", data_dir=real_home)
    assert cli(["evaluate", str(tmp_path / "nothing")]) == 1
    assert "not found" in capsys.readouterr().err
