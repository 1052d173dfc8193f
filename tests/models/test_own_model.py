"""Models of your own: a net in a file outside the repository and one an installed package publishes go through
every command, each in a fresh process; the bad references are one line each, before any run folder is made."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image
from scipy.stats import binomtest

import mnistlab
from mnistlab.cli import invoke as cli
from mnistlab.errors import InvalidArgument, ModelSourceError, UnknownName
from mnistlab.models import create_model, get_model_info, list_models
from mnistlab.models.reference import is_reference, label
from mnistlab.run import accept_source, load_run
from tests.killed import __file__ as KILLED

pytestmark = pytest.mark.realdata

NETS = '''
"""A researcher's ideas, beside the zoo."""
import torch
from torch import nn


class TinyNet(nn.Module):
    """784-64-10 with ReLU: the smallest idea."""

    def __init__(self, num_classes=10, hidden=64):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.body(x)


def normalised(num_classes, mean, std, hidden=32):
    """A factory that asks for the data's mean and std by naming them."""
    net = TinyNet(num_classes, hidden)
    net.register_buffer("seen_mean", torch.tensor(float(mean)))
    net.register_buffer("seen_std", torch.tensor(float(std)))
    return net


def passes_on(num_classes, **settings):
    """A factory that hands its settings on: it is given no mean or std."""
    return TinyNet(num_classes, **settings)


def shaped(num_classes, input_shape, hidden=16):
    """A factory that asks for the images' shape (channels, height, width)."""
    c, h, w = input_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


class FiveWay(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(784, 5)

    def forward(self, x):
        return self.fc(x.flatten(1))


class Crashes(TinyNet):
    def forward(self, x):
        return self.body(x.flatten(1)[:, :100])


class Centroids:
    """An estimator of your own: the nearest class mean."""

    def __init__(self, shrink=0.0):
        self.shrink = shrink

    def fit(self, x, y):
        self.classes_ = np.unique(y)
        self.means_ = np.stack([x[y == c].mean(0) for c in self.classes_])
        return self

    def predict_proba(self, x):
        d = -((x[:, None, :] - self.means_[None]) ** 2).sum(-1) / 1e3
        e = np.exp(d - d.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


import numpy as np  # noqa: E402  (used by Centroids)
SIZE = 3
'''


@pytest.fixture
def nets(tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "tiny.py").write_text(NETS)
    return folder / "tiny.py"


@pytest.fixture
def package(tmp_path):
    """An installed package that publishes TinyNet as `tinynet` (and one entry point that cannot load)."""
    site = tmp_path / "site"
    (site / "idea_nets").mkdir(parents=True)
    (site / "idea_nets" / "__init__.py").write_text(NETS)
    info = site / "idea_nets-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: idea-nets\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[mnistlab.models]\ntinynet = idea_nets:TinyNet\nbroken = idea_nets:missing\n")
    return site


def fresh(cwd, *args, env=None, expect=0):
    """`mnistlab ARGS` in a new process: nothing of this one (its imports, its registry) is there."""
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if expect is not None:
        assert proc.returncode == expect, proc.stderr[-2000:]
    return proc


def _digit_png(real_home, path):
    (_, _), (x, y) = mnistlab.load_data("mnist", data_dir=real_home)
    Image.fromarray(x[0]).save(path)
    return str(y[0])


SERVE = """
import base64, json, sys
from fastapi.testclient import TestClient
from mnistlab.run import Run
from mnistlab.serve.app import create_app
client = TestClient(create_app(Run(sys.argv[1]), runs_dir=sys.argv[1]))
png = open(sys.argv[2], "rb").read()
print(json.dumps(client.post("/api/predict", files={"file": ("d.png", png, "image/png")}).json()))
"""

BENCH = """
import json, sys
from mnistlab.bench import run_bench
res = run_bench("quick", ["mnist"], [sys.argv[1], "mlp"], 2, sys.argv[2], settings={"epochs": 1, "train_subset": 2000})
print(json.dumps(res["rows"]))
"""


@pytest.mark.parametrize("published", [False, True], ids=["file", "entry-point"])
def test_every_command_rebuilds_it_in_a_fresh_process(published, nets, package, real_home, tmp_path):
    env = {**os.environ, "MNISTLAB_HOME": str(real_home)}
    if published:
        env["PYTHONPATH"] = os.pathsep.join([str(package), env.get("PYTHONPATH", "")])
    model = "tinynet" if published else os.path.relpath(nets, tmp_path) + ":TinyNet"
    quick = ["--epochs", "2", "--train-subset", "2000", "--device", "cpu", "-q"]
    true = _digit_png(real_home, tmp_path / "digit.png")
    m = ["-m", "mnistlab"]

    if published:  # listed beside the zoo with where it comes from; the entry point that cannot load is one warning
        listed = json.loads(fresh(tmp_path, *m, "models", "tiny*", "--json", env=env).stdout)
        assert [(r["name"], r["from"]) for r in listed] == [("tinynet", "idea-nets 0.3 (idea_nets:TinyNet)")]
    # killed after its first epoch, then resumed in another process
    fresh(tmp_path, KILLED, "train", "--model", model, "--out", "runs/a", *quick, env=env, expect=-9)
    fresh(tmp_path, *m, "train", "--resume", "runs/a", "-q", env=env)
    fresh(tmp_path, *m, "train", "--model", model, "--out", "runs/b", "--seed", "1", *quick, env=env)
    a = load_run(tmp_path / "runs/a")
    source = a.config["model_source"]
    assert source["kind"] == ("entry-point" if published else "file") and len(source["sha256"]) == 64
    assert [h["epoch"] for h in a.history] == [1, 2] and a.metrics["test_accuracy"] > 0.8
    assert a.metrics["params"] == 784 * 64 + 64 + 64 * 10 + 10 and a.metrics["macs"] == 784 * 64 + 64 * 10

    ev = json.loads(fresh(tmp_path, *m, "evaluate", "runs/a", "--json", env=env).stdout)
    assert ev["accuracy"] == pytest.approx(a.metrics["test_accuracy"])
    predicted = json.loads(fresh(tmp_path, *m, "predict", "runs/a", "digit.png", "--json", env=env).stdout)
    assert predicted[0]["prediction"] == true
    exported = fresh(tmp_path, *m, "export", "runs/a", "--format", "onnx", env=env).stdout
    assert "max |difference| from PyTorch" in exported and (tmp_path / "runs/a/model.onnx").stat().st_size > 100_000
    if not published:  # torch.export too, and the report (which predicts nothing: it reads the stored probabilities)
        fresh(tmp_path, *m, "export", "runs/a", "--format", "pt2", env=env)
        fresh(tmp_path, *m, "report", "runs/a", env=env)
        assert (tmp_path / "runs/a/model.pt2").exists() and "TinyNet" in (tmp_path / "runs/a/report.md").read_text()
    served = json.loads(fresh(tmp_path, "-c", SERVE, "runs/a", "digit.png", env=env).stdout)
    assert served["prediction"] == true and len(served["probabilities"]) == 10
    fresh(tmp_path, *m, "ensemble", "runs/a", "runs/b", "--out", "runs/ens", env=env)
    compared = json.loads(fresh(tmp_path, *m, "compare", "runs/a", "runs/b", "runs/ens", "--json", env=env).stdout)
    assert len(compared["pairs"]) == 3
    truth = mnistlab.load_dataset("mnist", "test", data_dir=real_home).labels
    for pair in compared["pairs"]:  # against the runs' stored answers and scipy's exact binomial test
        right = [load_run(tmp_path / pair[k]).test_probs().argmax(1) == truth for k in "ab"]
        only_a, only_b = int((right[0] & ~right[1]).sum()), int((~right[0] & right[1]).sum())
        assert (pair["a_only_right"], pair["b_only_right"]) == (only_a, only_b)
        expected = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
        assert pair["p_value"] == pytest.approx(expected, rel=1e-9)
    assert [g["seeds"] for g in compared["groups"]] == [2]  # a and b: seeds of one recipe
    rows = json.loads(fresh(tmp_path, "-c", BENCH, model, "bench", env=env).stdout)
    assert [label(r["model"]) for r in rows] == ["TinyNet" if not published else "tinynet", "mlp"]
    assert all(r["seeds"] == 2 and r["status"] == "ok" and r["vs_best"] for r in rows)


def test_bad_references_are_one_line_before_any_run_folder(nets, real_home, tmp_path, capsys):
    where = str(nets)
    cases = {f"{where}:FiveWay": "answers a batch of 2 images with (2, 5); mnist has 10 classes",
             f"{where}:Crashes": "fails on a batch of 2 images (1x28x28) on cpu: RuntimeError",
             f"{where}:SIZE": "is an int, not a model",
             f"{where}:TinyNett": "has no 'TinyNett'; did you mean 'TinyNet'?",
             str(tmp_path / "nowhere.py") + ":TinyNet": "no such file",
             "no_such_package.nets:TinyNet": "no module named 'no_such_package'",
             f"{where}:TinyNet --model-arg wings=2": "does not take the setting wings; it takes: hidden"}
    for ref, says in cases.items():
        model, *extra = ref.split(" ")
        args = ["train", "--model", model, "--out", str(tmp_path / "run"), "--epochs", "1", "--train-subset", "200",
                "--data-dir", str(real_home), "-q", *extra]
        assert cli(args) != 0, ref
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, (ref, err)
        assert not (tmp_path / "run").exists(), ref


def test_a_changed_or_moved_source_is_refused_then_accepted(nets, real_home, tmp_path, capsys):
    run = mnistlab.train(f"{nets}:TinyNet", "mnist", out=tmp_path / "run", data_dir=real_home, epochs=1, train_subset=1000)
    assert (run.path / "model_source.py").read_text() == NETS  # the code as trained, kept beside its weights
    x = mnistlab.load_data("mnist", data_dir=real_home)[1][0][:50]
    before = run.predict_proba(x)
    code = [sys.executable, "-m", "mnistlab", "predict", str(run.path), str(tmp_path / "d.png")]
    Image.fromarray(x[0]).save(tmp_path / "d.png")

    nets.write_text(NETS + "\n# an edit\n")
    err = fresh(tmp_path, *code[1:], expect=1).stderr
    assert f"the model's source {nets} changed since {run.path} was trained" in err and "mnistlab accept-source" in err
    assert len(err.strip().splitlines()) == 1
    assert cli(["accept-source", str(run.path)]) == 0
    fresh(tmp_path, *code[1:])
    moved = tmp_path / "moved.py"
    nets.rename(moved)
    err = fresh(tmp_path, *code[1:], expect=1).stderr
    assert "is gone (moved or deleted)" in err and f"mnistlab accept-source {run.path} NEW_PLACE.py" in err
    source = accept_source(run.path, moved)
    assert source["file"] == str(moved) and len(source["accepted"]) == 2
    np.testing.assert_array_equal(load_run(run.path).predict_proba(x), before)  # the same weights, the same answers

    moved.write_text(NETS.replace("hidden=64", "hidden=65"))  # code the weights no longer fit: nothing is written
    record = (run.path / "config.json").read_text()
    assert cli(["accept-source", str(run.path)]) == 1
    assert "does not fit" in capsys.readouterr().err and (run.path / "config.json").read_text() == record


def test_the_data_statistics_reach_only_what_names_them(nets, real_home, tmp_path):
    net = create_model(f"{nets}:normalised", num_classes=10, mean=0.25, std=0.5)
    assert float(net.seen_mean) == 0.25 and float(net.seen_std) == 0.5
    run = mnistlab.train(f"{nets}:passes_on", "mnist", out=tmp_path / "p", data_dir=real_home, epochs=1, train_subset=500,
                         model_args={"hidden": 16})  # would fail if handed mean= and std=
    assert run.metrics["params"] == 784 * 16 + 16 + 16 * 10 + 10
    trained = load_run(mnistlab.train(f"{nets}:normalised", "mnist", out=tmp_path / "n", data_dir=real_home, epochs=1,
                                      train_subset=500).path).model
    assert float(trained.seen_mean) == pytest.approx(load_run(tmp_path / "n").config["input_mean"])


def test_an_estimator_of_your_own(nets, real_home, tmp_path):
    run = mnistlab.train(f"{nets}:Centroids", "mnist", out=tmp_path / "c", data_dir=real_home, train_subset=2000)
    assert run.kind == "classical" and 0.7 < run.metrics["test_accuracy"] < 0.9  # nearest class mean: about 80%
    code = ("import sys, mnistlab; (_, _), (x, y) = mnistlab.load_data('mnist'); "
            "print((mnistlab.load_run(sys.argv[1]).predict(x[:500]) == y[:500]).mean())")
    again = fresh(tmp_path, "-c", code, str(run.path), env={**os.environ, "MNISTLAB_HOME": str(real_home)})
    assert float(again.stdout) > 0.7  # predicted in a fresh process from model.skops


def test_the_python_api_takes_the_object(nets, real_home, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(nets.parent))
    import tiny

    run = mnistlab.train(tiny.TinyNet, "mnist", out=tmp_path / "o", data_dir=real_home, epochs=1, train_subset=500)
    assert run.config["model"] == "tiny:TinyNet" and run.config["model_source"]["kind"] == "module"
    assert get_model_info("tiny:TinyNet").factory is tiny.TinyNet

    def inner(num_classes):
        return tiny.TinyNet(num_classes)

    with pytest.raises(ModelSourceError, match="defined inside a function"):
        mnistlab.train(inner, "mnist", data_dir=real_home, epochs=1, train_subset=500)


def test_entry_points_beside_the_zoo(package, monkeypatch, caplog):
    from mnistlab.models import registry

    monkeypatch.syspath_prepend(str(package))
    monkeypatch.setattr(registry, "_PLUGINS", None)
    assert "tinynet" in list_models() and "cnn" in list_models() and not is_reference("tinynet")
    assert "broken" not in list_models()
    assert [r.getMessage() for r in caplog.records if "does not load" in r.getMessage()] == [
        "model 'broken' of the package idea-nets 0.3 (idea_nets:missing) does not load: AttributeError: module "
        "'idea_nets' has no attribute 'missing'; the other models still do"]
    info = get_model_info("tinynet")
    assert info.family == "neural" and info.origin["distribution"] == "idea-nets 0.3"
    monkeypatch.setattr(registry, "_PLUGINS", None)
    with pytest.raises(UnknownName):
        monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(package)])
        get_model_info("tinynet")


def test_a_config_file_names_a_file_beside_it(nets, real_home, tmp_path):
    (nets.parent / "idea.toml").write_text(textwrap.dedent("""
        [train]
        model = "tiny.py:TinyNet"
        epochs = 1
        train_subset = 500
    """))
    run = mnistlab.train(config_file=nets.parent / "idea.toml", dataset="mnist", out=tmp_path / "t", data_dir=real_home)
    assert run.config["model"] == f"{nets}:TinyNet"


def test_your_model_trains_across_environments(nets, real_home, tmp_path):
    """A factory that names input_shape is given Colored MNIST's (two channels of 14x14); a class built for MNIST's
    shape trains on Rotated MNIST's grey digits."""
    colored = mnistlab.train(f"{nets}:shaped", "colored-mnist", out=tmp_path / "colored", data_dir=real_home,
                             test_environment="-90%", algorithm="irm", steps=10, batch_size=512, checkpoint_every=10)
    first = colored.model.state_dict()["1.weight"]
    assert tuple(first.shape) == (16, 2 * 14 * 14) and colored.metrics["trained_on"] == ["+80%", "+90%"]
    rotated = mnistlab.train(f"{nets}:TinyNet", "rotated-mnist", out=tmp_path / "rotated", data_dir=real_home,
                             test_environment="0", algorithm="vrex", steps=10, checkpoint_every=10)
    assert rotated.metrics["tested_on"] == ["0"] and rotated.metrics["environment_sizes"]["0"]["in"] == 11667


def test_a_recipe_trains_your_model(nets):
    from mnistlab.config import resolve_config

    cfg = resolve_config({"preset": "speedrun-995", "model": f"{nets}:TinyNet"})
    assert cfg.model == f"{nets}:TinyNet" and cfg.model_args == {} and cfg.augment == "light"  # widths stay with speednet
    with pytest.raises(InvalidArgument, match="does not take the setting widths"):
        create_model(f"{nets}:TinyNet", widths=[1, 2, 3])


def test_a_sweep_tunes_your_model(nets, real_home, tmp_path):
    from mnistlab.sweep import run_sweep

    res = run_sweep(f"{nets}:TinyNet", "mnist", 2, val_split=1000, final=False,
                    out=tmp_path / "sweep", data_dir=real_home, extra={"train_subset": 2000, "device": "cpu"})
    assert res["study"] == "TinyNet-mnist" and res["states"] == {"complete": 2} and res["best"]["val_accuracy"] > 0.5


def test_the_pad_names_your_model_without_this_machine_s_folders(nets, real_home, tmp_path):
    """A pad served to a room (--host 0.0.0.0) lists your run by its file's name, never the absolute path it lives at;
    the run folder keeps the whole record."""
    from fastapi.testclient import TestClient

    from mnistlab.serve.app import create_app

    runs = tmp_path / "runs"
    own = mnistlab.train(f"{nets}:TinyNet", "mnist", out=runs / "20990101-tiny", data_dir=real_home, epochs=1, train_subset=500)
    zoo = mnistlab.train("logreg", "mnist", out=runs / "20990102-logreg", data_dir=real_home, train_subset=500)
    listed = TestClient(create_app(zoo, runs_dir=runs)).get("/api/models")
    assert listed.status_code == 200
    assert [m["model"] for m in listed.json()] == ["logreg", "tiny.py:TinyNet"]
    assert str(nets.parent) not in listed.text and str(tmp_path) not in listed.text
    assert load_run(own.path).config["model"] == f"{nets}:TinyNet"  # the full reference stays in the run folder
