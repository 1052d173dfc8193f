import numpy as np
import pytest

import mnistlab
from mnistlab.cli import invoke as cli
from mnistlab.errors import InvalidArgument, RunError
from mnistlab.export import export_run

pytestmark = pytest.mark.realdata


def test_onnx_round_trip(mnist_run, real_home, tmp_path, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.filterwarnings("ignore", module=r"torch\.utils\._pytree")  # inside PyTorch's own exporter
        res = export_run(mnist_run, "onnx", tmp_path / "m.onnx")
    assert res["max_abs_difference"] <= 1e-4
    # and used without mnistlab, as the README shows, on another batch size
    x = np.asarray(mnistlab.load_dataset("mnist", "test", data_dir=real_home).images[1000:1007], np.float32)[:, None] / 255
    probs = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"images": x})[0]
    assert probs.shape == (7, 10) and np.abs(probs - mnist_run.predict_proba(x[:, 0])).max() <= 1e-4


def test_onnx_with_the_ood_score_and_its_companion(mnist_run, real_home, tmp_path, monkeypatch, capsys):
    """The graph's second output is the run's kept detector; the companion JSON says how it becomes digit_like, and a
    program with onnxruntime alone gets the same answer as mnistlab predict."""
    import json

    import onnxruntime as ort

    from mnistlab.ood import kept_detector

    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    assert cli(["export", str(mnist_run.path), "--format", "onnx", "--ood", "--out", str(tmp_path / "m.onnx")]) == 0
    assert "ood_score" in capsys.readouterr().out
    companion = json.loads((tmp_path / "m.onnx.json").read_text())
    detector = kept_detector(mnist_run)
    assert companion["outputs"] == ["probabilities", "ood_score"] and companion["classes"] == mnist_run.classes
    assert companion["ood"]["detector"] == detector.name and companion["ood"]["threshold"] == detector.threshold
    digits = mnistlab.load_dataset("mnist", "test", data_dir=real_home).images[:20]
    noise = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    images = np.concatenate([digits, noise])
    probs, scores = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"images": images[:, None].astype(np.float32) / 255})
    assert np.abs(probs - mnist_run.predict_proba(images)).max() <= 1e-4
    assert [s >= companion["ood"]["threshold"] for s in scores] == [j["digit_like"] for j in detector.judge(images)]
    # without --ood the graph is as before, and the companion says how to have the score
    export_run(mnist_run, "onnx", tmp_path / "plain.onnx", check=False)
    plain = json.loads((tmp_path / "plain.onnx.json").read_text())
    assert plain["outputs"] == ["probabilities"] and plain["ood"]["in_graph"] is False and "how" in plain["ood"]


def test_pt2_round_trip(mnist_run, real_home, tmp_path, monkeypatch, capsys):
    import torch

    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    assert cli(["export", str(mnist_run.path), "--format", "pt2", "--out", str(tmp_path / "m.pt2")]) == 0
    captured = capsys.readouterr()
    assert "max |difference|" in captured.out and captured.err == ""
    # used without mnistlab, as the README shows, on another batch size
    module = torch.export.load(str(tmp_path / "m.pt2")).module()
    x = np.asarray(mnistlab.load_dataset("mnist", "test", data_dir=real_home).images[:5], np.float32)[:, None] / 255
    probs = module(torch.from_numpy(x)).detach().numpy()
    assert probs.shape == (5, 10) and np.abs(probs - mnist_run.predict_proba(x[:, 0])).max() <= 1e-5


def test_torchscript_still_written_with_a_deprecation_note(mnist_run, real_home, tmp_path, monkeypatch, capsys):
    import warnings

    import torch

    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # mnistlab's own calls raise no warning: it says so in its own line
        assert cli(["export", str(mnist_run.path), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    captured = capsys.readouterr()
    assert "max |difference|" in captured.out
    assert captured.err.strip() == "note: TorchScript is deprecated in PyTorch; this file still loads with torch.jit.load, " \
                                   "but prefer --format pt2 (torch.export.load) or onnx for new work"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the user's own call to a deprecated API
        m = torch.jit.load(str(tmp_path / "m.pt"))
        assert m(torch.rand(3, 1, 28, 28)).sum(1).allclose(torch.ones(3))


def test_bad_exports(mnist_run, real_home, tmp_path):
    from mnistlab.training import train

    with pytest.raises(InvalidArgument, match="unknown export format"):
        export_run(mnist_run, "tflite")
    logreg = train("logreg", "mnist", out=tmp_path / "lr", data_dir=real_home, train_subset=1000)
    with pytest.raises(RunError, match="only neural nets export"):
        export_run(logreg, "onnx")
