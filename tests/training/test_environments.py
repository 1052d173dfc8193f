"""Training across environments on the real Colored MNIST: a small run end to end, DomainBed's split, and the bad
settings refused in one line before any run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mnistlab.errors import InvalidArgument, RunError, UnknownName
from mnistlab.training import train
from mnistlab.training.environments import holdout, seed_hash


def test_seed_hash_and_holdout_are_domainbeds():
    import hashlib

    assert seed_hash(0, 1) == int(hashlib.md5(b"(0, 1)").hexdigest(), 16) % (2**31)
    keys = list(range(50))
    np.random.RandomState(seed_hash(3, 2)).shuffle(keys)
    pos_in, pos_out = holdout(50, 0.2, 3, 2)
    assert list(pos_out) == keys[:10] and list(pos_in) == keys[10:]


@pytest.mark.realdata
def test_a_small_run_across_environments(real_home, tmp_path):
    run = train("irm-mlp", "colored-mnist", out=tmp_path / "run", data_dir=real_home, algorithm="vrex", test_environment="-90%",
                steps=20, batch_size=256, holdout_fraction=0.2, checkpoint_every=10, penalty_anneal=5, penalty_weight=10.0,
                model_args={"hidden": 32})
    m = run.metrics
    assert m["trained_on"] == ["+80%", "+90%"] and m["tested_on"] == ["-90%"] and m["steps"] == 20
    assert m["environments"]["-90%"]["role"] == "test" and 0 <= m["test_accuracy"] <= 1
    assert m["environment_sizes"]["+80%"] == {"in": 20000, "out": 5000}
    assert set(m["selection"]) == {"training_domain", "oracle"}
    from mnistlab.evaluate import evaluate_run

    # evaluated again from the weights: the test environment's in part is inside its whole, evaluated here
    assert evaluate_run(run, write=False)["n"] == 10000 and evaluate_run(run, split="+80%", write=False)["n"] == 25000
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20] and rows[0]["penalty_weight"] == pytest.approx((5 * 1 + 5 * 10) / 10)
    import subprocess
    import sys

    for command in ("ood", "robustness"):  # not theirs yet: one line that says what to use
        proc = subprocess.run([sys.executable, "-m", "mnistlab", command, str(run.path)], capture_output=True, text=True)
        assert proc.returncode != 0 and "trained across environments" in proc.stderr + proc.stdout
        assert "Traceback" not in proc.stderr and len((proc.stderr + proc.stdout).strip().splitlines()) == 1
    split = np.load(run.path / "split.npz")
    assert len(split["train"]) == 40000 and len(split["val"]) == 10000 and not set(split["train"]) & set(split["val"])


@pytest.mark.realdata
def test_precision_across_environments_is_fp32_unless_bf16_is_asked(real_home, tmp_path, monkeypatch):
    small = {"data_dir": real_home, "algorithm": "irm", "test_environment": "-90%", "steps": 4, "batch_size": 256,
             "checkpoint_every": 2, "model_args": {"hidden": 16}}
    monkeypatch.setattr("mnistlab.training.engine.bf16_supported", lambda device: True)  # AMX or not, here
    auto = train("irm-mlp", "colored-mnist", out=tmp_path / "auto", **small)
    fast = train("irm-mlp", "colored-mnist", out=tmp_path / "bf16", precision="bf16", **small)
    assert auto.metrics["precision"] == "fp32" and fast.metrics["precision"] == "bf16"  # auto: the papers' format
    assert fast.metrics["steps"] == 4 and fast.metrics["environments"] != auto.metrics["environments"]
    monkeypatch.setattr("mnistlab.training.engine.bf16_supported", lambda device: False)
    with pytest.raises(InvalidArgument, match="precision bf16 requested"):
        train("irm-mlp", "colored-mnist", out=tmp_path / "refused", precision="bf16", **small)
    assert not (tmp_path / "refused").exists()


@pytest.mark.realdata
def test_runs_across_environments_are_compared_and_reported_on_their_test_environment(real_home, tmp_path):
    from mnistlab.data import load_dataset
    from mnistlab.evaluate.compare import compare_runs
    from mnistlab.report import build_report

    settings = dict(data_dir=real_home, test_environment="-90%", steps=20, batch_size=256, checkpoint_every=10,
                    holdout_fraction=0.2, model_args={"hidden": 32})
    erm = [train("irm-mlp", "colored-mnist", out=tmp_path / f"erm{s}", seed=s, **settings) for s in (0, 1)]
    irm = train("irm-mlp", "colored-mnist", out=tmp_path / "irm", algorithm="irm", penalty_weight=100.0, penalty_anneal=10,
                **settings)
    res = compare_runs([r.path for r in (*erm, irm)], plot=tmp_path / "cmp.png", data_dir=real_home)
    assert [(r["split"], r["n"], r["name"]) for r in res["rows"]] == [("-90%", 10000, "irm-mlp (erm)")] * 2 + [
        ("-90%", 10000, "irm-mlp (irm)")]
    test = load_dataset("colored-mnist", "-90%", data_dir=real_home)
    right = [r.predict_proba(test.images).argmax(1) == test.labels for r in (*erm, irm)]
    by_hand = [(int((right[i] & ~right[j]).sum()), int((~right[i] & right[j]).sum())) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert [(p["a_only_right"], p["b_only_right"]) for p in res["pairs"]] == by_hand
    assert [r["accuracy"] for r in res["rows"]] == [pytest.approx(float(r.mean())) for r in right]
    assert [(g["name"], g["seeds"]) for g in res["groups"]] == [("irm-mlp (erm)", 2)]
    assert (tmp_path / "cmp.png").read_bytes()[:4] == b"\x89PNG"

    md = build_report(irm, data_dir=real_home)["md"].read_text()
    assert "| tested on | -90% |" in md and "| trained on | +80%, +90% |" in md and "| algorithm | irm |" in md
    step = irm.metrics["selection"]["training_domain"]["step"]
    assert f"| selected by training-domain validation | step {step}:" in md
    assert "| +80% | train | 25,000 |" in md and "| -90% | test | 10,000 |" in md
    assert (irm.path / "report_files" / "curves.png").exists() and (irm.path / "report.html").exists()


@pytest.mark.realdata
def test_runs_across_environments_export_and_grey_ones_predict_and_explain(real_home, tmp_path):
    import io

    from PIL import Image

    from mnistlab.data import load_dataset
    from mnistlab.errors import RunError
    from mnistlab.export import export_run
    from mnistlab.preprocess import to_mnist
    from mnistlab.serve.predict import predict_images

    colored = train("irm-mlp", "colored-mnist", out=tmp_path / "colored", data_dir=real_home, test_environment="-90%",
                    steps=10, batch_size=256, checkpoint_every=10, model_args={"hidden": 16})
    exported = export_run(colored, "onnx", tmp_path / "colored.onnx", data_dir=real_home)
    assert exported["max_abs_difference"] < 1e-5  # on the test environment's images, two channels of 14x14
    companion = json.loads(Path(exported["companion"]).read_text())
    assert companion["input"]["shape"] == ["N", 2, 14, 14] and "unavailable" in companion["ood"]

    rotated = train("mlp", "rotated-mnist", out=tmp_path / "rotated", data_dir=real_home, test_environment="75", steps=20,
                    checkpoint_every=20, model_args={"hidden": [32]})
    buf = io.BytesIO()
    Image.fromarray(load_dataset("mnist", "test", data_dir=real_home).images[0]).save(buf, format="PNG")
    [answer] = predict_images(rotated, [buf.getvalue()])  # a Rotated MNIST run reads grey digits as an MNIST one
    expected = rotated.predict_proba(to_mnist(buf.getvalue()).image[None])[0]
    assert answer["prediction"] == rotated.classes[int(expected.argmax())]
    assert answer["probability"] == pytest.approx(float(expected.max())) and "ood_score" not in answer
    with pytest.raises(RunError, match="predict does not read such runs"):
        predict_images(colored, [buf.getvalue()])
    from mnistlab.explain import explain_images

    [explained] = explain_images(rotated, [buf.getvalue()], write=False)
    assert explained["prediction"] == answer["prediction"] and set(explained["attributions"])
    with pytest.raises(RunError, match="explain does not read such runs"):
        explain_images(colored, [buf.getvalue()], write=False)


@pytest.mark.realdata
def test_a_run_stopped_after_a_checkpoint_resumes_to_the_same_end(real_home, tmp_path):
    from mnistlab.errors import TrainingInterrupted

    settings = dict(data_dir=real_home, algorithm="irm", test_environment="-90%", steps=20, batch_size=128,
                    holdout_fraction=0.1, checkpoint_every=10, penalty_anneal=10, penalty_weight=100.0,
                    algorithm_args={"convention": "domainbed"}, model_args={"hidden": 16})
    whole = train("irm-mlp", "colored-mnist", out=tmp_path / "whole", **settings)

    def stop(step, row):
        if step == 10:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted, match="--resume"):
        train("irm-mlp", "colored-mnist", out=tmp_path / "cut", on_epoch_end=stop, **settings)
    config = tmp_path / "cut" / "config.json"
    started = config.read_text()
    recorded = json.loads(started)
    config.write_text(json.dumps({**recorded, "dataset_sha256": {**recorded["dataset_sha256"], "images": "0" * 64}}))
    with pytest.raises(RunError, match="started on colored-mnist images with sha256 0000000000000000"):
        train(resume=tmp_path / "cut", data_dir=real_home)  # other arrays than it started on: refused, not mixed in
    config.write_text(started)
    resumed = train(resume=tmp_path / "cut", data_dir=real_home)
    assert resumed.metrics["environments"] == whole.metrics["environments"]
    assert resumed.metrics["selection"] == whole.metrics["selection"]


@pytest.mark.realdata
@pytest.mark.parametrize("settings, error, words", [
    ({"dataset": "colored-mnist"}, InvalidArgument, "--test-environment"),
    ({"dataset": "colored-mnist", "test_environment": "-80%"}, UnknownName, "did you mean"),
    ({"dataset": "colored-mnist", "test_environment": "-90%", "train_environments": ["+80%", "-90%"]}, InvalidArgument,
     "test environment and a training one"),
    ({"dataset": "mnist", "algorithm": "irm"}, InvalidArgument, "has one"),
    ({"dataset": "colored-mnist", "test_environment": "-90%", "augment": "light"}, InvalidArgument, "--augment"),
])
def test_bad_settings_are_refused_before_any_run_folder(real_home, tmp_path, settings, error, words):
    with pytest.raises(error, match=words):
        train("irm-mlp" if settings["dataset"] != "mnist" else "mlp", out=tmp_path / "run", data_dir=real_home, steps=2, **settings)
    assert not (tmp_path / "run").exists()
