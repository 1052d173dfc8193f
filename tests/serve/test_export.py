import numpy as np
import pytest

import mnistlab
from mnistlab.cli import run as cli
from mnistlab.errors import InvalidArgument, RunError
from mnistlab.serve.export import export_run

pytestmark = pytest.mark.realdata


def test_onnx_round_trip(mnist_run, real_home, tmp_path, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    res = export_run(mnist_run, "onnx", tmp_path / "m.onnx")
    assert res["max_abs_difference"] <= 1e-4
    # and used without mnistlab, as the README shows, on another batch size
    x = np.asarray(mnistlab.load_dataset("mnist", "test", data_dir=real_home).images[1000:1007], np.float32)[:, None] / 255
    probs = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"images": x})[0]
    assert probs.shape == (7, 10) and np.abs(probs - mnist_run.predict_proba(x[:, 0])).max() <= 1e-4


def test_torchscript_round_trip(mnist_run, real_home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    assert cli(["export", str(mnist_run.path), "--format", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    assert "max |difference|" in capsys.readouterr().out
    import torch

    m = torch.jit.load(str(tmp_path / "m.pt"))
    assert m(torch.rand(3, 1, 28, 28)).sum(1).allclose(torch.ones(3))


def test_bad_exports(mnist_run, real_home, tmp_path):
    from mnistlab.training import train

    with pytest.raises(InvalidArgument, match="unknown export format"):
        export_run(mnist_run, "tflite")
    logreg = train("logreg", "mnist", out=tmp_path / "lr", data_dir=real_home, train_subset=1000)
    with pytest.raises(RunError, match="only neural nets export"):
        export_run(logreg, "onnx")
