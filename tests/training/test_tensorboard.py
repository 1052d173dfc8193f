"""`train --tensorboard DIR`: event files that TensorBoard's own reader reads back, with the run's numbers."""

import json

import pytest

from mnistlab.cli import invoke as cli

pytestmark = pytest.mark.realdata


def test_event_files_hold_the_runs_scalars_and_confusion_matrices(real_home, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    assert cli(["train", "--model", "mlp", "--epochs", "2", "--train-subset", "3000", "--val-split", "1000", "--device", "cpu",
                "--quiet", "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")]) == 0
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/accuracy", "val/loss", "val/accuracy", "test/loss", "test/accuracy", "lr",
            "images_per_second", "train_steps/loss", "train_steps/accuracy"} <= set(tags["scalars"])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for key in ("test/accuracy", "train/loss", "lr"):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(r["epoch"], pytest.approx(r[key.replace("/", "_")], rel=1e-6)) for r in rows]
    curve = [json.loads(line) for line in (tmp_path / "run" / "curve.jsonl").read_text().splitlines()]
    assert [e.step for e in events.Scalars("train_steps/loss")] == [p["step"] for p in curve]
    images = events.Images("test/confusion_matrix")
    assert [i.step for i in images] == [1, 2] and images[0].encoded_image_string[:4] == b"\x89PNG"


def test_without_the_package_it_is_one_line_and_no_run_folder(real_home, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    assert cli(["train", "--model", "mlp", "--quiet", "--out", str(tmp_path / "run"), "--tensorboard", str(tmp_path / "tb")]) != 0
    assert capsys.readouterr().err.strip() == "error: --tensorboard needs the tensorboard package: pip install 'mnistlab[tensorboard]'"
    assert not (tmp_path / "run").exists()
