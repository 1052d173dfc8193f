"""The run folder as one object: a new run keeps its split and evaluation reads it; folders written before
(tests/fixtures/old-runs, made by the code of commit b9f2e44) still load, evaluate and resume to the same numbers."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import mnistlab
from mnistlab.errors import RunBusy, RunError
from mnistlab.evaluate import evaluate_run
from mnistlab.run import Run, RunFolder
from mnistlab.split import SPLIT_FILE
from mnistlab.training import train

pytestmark = pytest.mark.realdata
OLD = Path(__file__).parent / "fixtures" / "old-runs"


def _strip(history):
    return [{k: v for k, v in r.items() if "seconds" not in k and k != "images_per_second"} for r in history]


def test_an_old_finished_run_loads_predicts_and_evaluates(real_home, tmp_path):
    run = Run(shutil.copytree(OLD / "finished", tmp_path / "finished"))
    assert not (run.path / SPLIT_FILE).exists() and run.kind == "neural" and run.settings.tta == "shift"
    test = mnistlab.load_dataset("mnist", "test", data_dir=real_home)
    stored = run.test_probs()
    np.testing.assert_allclose(run.predict_proba(test.images[:500]), stored[:500], atol=1e-5)
    assert evaluate_run(run, data_dir=real_home)["accuracy"] == run.metrics["test_accuracy"]
    held = evaluate_run(run, split="held-out", data_dir=real_home)  # recomputed from its seed, as it was made
    assert held["n"] == run.metrics["calibration"]["images"] == 5000
    assert held["accuracy"] == pytest.approx(run.metrics["calibration"]["held_out"]["accuracy"], abs=1e-12)


def test_an_old_stopped_run_resumes_to_the_numbers_of_an_uninterrupted_one(real_home, tmp_path):
    folder = shutil.copytree(OLD / "stopped", tmp_path / "stopped")
    assert len(Run(folder).history) == 1
    done = train(resume=folder, data_dir=real_home)
    whole = json.loads((OLD / "stopped-whole.json").read_text())
    # counts and accuracies exactly; a loss is a float32 sum over batches whose last bits follow the CPU's kernels
    # (1.427419921875 where the folder was made, 1.4274197998046876 on an AMD EPYC of 2026-12-04)
    losses = [k for k in whole["history"][0] if k.endswith("loss")]
    assert [{k: v for k, v in r.items() if k not in losses} for r in _strip(done.history)] == \
        [{k: v for k, v in r.items() if k not in losses} for r in whole["history"]]
    for got, want in zip(done.history, whole["history"]):
        assert {k: got[k] for k in losses} == pytest.approx({k: want[k] for k in losses}, rel=1e-6)
    assert {k: done.metrics[k] for k in whole["metrics"]} == pytest.approx(whole["metrics"], abs=1e-6)


def test_a_new_run_keeps_its_split_and_evaluation_reads_it(real_home, tmp_path, monkeypatch):
    run = train("mlp", "mnist", out=tmp_path / "run", data_dir=real_home, train_subset=1000, epochs=1, val_split=700,
                device="cpu")
    with np.load(run.path / SPLIT_FILE) as kept:
        val, train_idx, calib = kept["val"], kept["train"], kept["calibration"]
    assert len(val) == 700 and len(train_idx) == 1000 and np.array_equal(val, calib)
    assert not set(val) & set(train_idx)

    def moved(*a, **k):
        raise AssertionError("the split of a run that keeps one is never recomputed")

    monkeypatch.setattr("mnistlab.split.split_indices", moved)
    held = evaluate_run(run, split="held-out", data_dir=real_home)
    assert held["n"] == 700 and held["accuracy"] == run.metrics["val_accuracy"]
    (run.path / SPLIT_FILE).write_bytes(b"not a split")
    with pytest.raises(RunError, match="split.npz is damaged"):
        evaluate_run(run, split="held-out", data_dir=real_home)


def test_the_folder_owns_its_lock_and_an_old_ensemble_is_an_ensemble(real_home, tmp_path):
    run_dir = shutil.copytree(OLD / "stopped", tmp_path / "stopped")
    with RunFolder.reopen(run_dir) as folder:
        assert folder.cfg.seed == 6 and folder.facts.classes == [str(i) for i in range(10)] and not folder.finished
        with pytest.raises(RunBusy, match="busy"):
            RunFolder.reopen(run_dir)
    RunFolder.reopen(run_dir).close()  # released
    members = [shutil.copytree(OLD / "finished", tmp_path / f"m{i}") for i in range(2)]
    old = tmp_path / "old-ensemble"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"model": "ensemble", "dataset": "mnist", "classes": [str(i) for i in range(10)],
                                                 "members": [str(m) for m in members]}))
    ens = Run(old)
    assert ens.kind == "ensemble" and [m.path for m in ens.model] == members
    test = mnistlab.load_dataset("mnist", "test", data_dir=real_home)
    np.testing.assert_allclose(ens.predict_proba(test.images[:50]), Run(members[0]).predict_proba(test.images[:50]), atol=1e-6)
