"""Training from few labels: the labelled subset (balanced, seeded, apart from validation), each method's unlabelled
loss against a hand computation, the unlabelled images' labels never read (scrambled, the same weights), an exact
resume after kill -9, and bad settings refused in one line before any run folder."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnistlab.config import TrainConfig
from mnistlab.training.semi import Alignment, labelled_split, ramp, unlabelled_loss, unlabelled_rows

TINY = dict(steps=4, checkpoint_every=2, batch_size=16, unlabelled_ratio=2, model_args={"hidden": [32]}, threads=1,
            device="cpu")


def test_labelled_subset_is_balanced_seeded_and_apart_from_validation():
    labels = np.random.default_rng(1).integers(0, 10, 3000)
    split = labelled_split(labels, TrainConfig(model="mlp", labels=100, val_split=500, seed=2), 10)
    assert len(split.train) == 100 and set(np.bincount(labels[split.train], minlength=10)) == {10}
    assert not set(split.train) & set(split.val) and len(split.val) == 500
    unl = unlabelled_rows(3000, split)
    assert len(unl) == 2400 and not set(unl) & (set(split.train) | set(split.val))
    again = labelled_split(labels, TrainConfig(model="mlp", labels=100, val_split=500, seed=2), 10)
    other = labelled_split(labels, TrainConfig(model="mlp", labels=100, val_split=500, seed=3), 10)
    assert np.array_equal(again.train, split.train) and not np.array_equal(other.train, split.train)


def test_unlabelled_losses_by_hand():
    weak = torch.tensor([[4.0, 0.0], [0.1, 0.0]])  # confident (p = 0.982) and not (p = 0.525)
    strong = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    loss, mask, pseudo = unlabelled_loss("fixmatch", weak, strong, None, 0.95)
    assert mask.tolist() == [True, False] and pseudo.tolist() == [0, 0]
    # the confident image's pseudo-label 0 on its strong view, over the whole batch of two
    assert float(loss) == pytest.approx((math.log(math.exp(1) + math.exp(2)) - 1) / 2, rel=1e-6)
    loss, mask, _ = unlabelled_loss("pseudo-label", weak, strong, None, 0.5)
    assert mask.tolist() == [True, True]
    assert float(loss) == pytest.approx(float(F.cross_entropy(weak, torch.tensor([0, 0]))), rel=1e-6)
    teacher = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    loss, mask, pseudo = unlabelled_loss("mean-teacher", weak, strong, teacher, 0.95)
    p = F.softmax(weak, 1)
    assert pseudo is None and float(loss) == pytest.approx(float(((p - teacher) ** 2).sum(1).mean()), rel=1e-6)
    assert ramp(0, 100) == pytest.approx(math.exp(-5)) and ramp(50, 100) == pytest.approx(math.exp(-1.25))
    assert ramp(100, 100) == 1.0 and ramp(3, 0) == 1.0


def test_distribution_alignment_by_hand():
    align = Alignment(torch.tensor([0.5, 0.5]), batches=2)
    first = torch.tensor([[0.9, 0.1], [0.7, 0.3]])  # mean (0.8, 0.2)
    assert align.scale(first).tolist() == pytest.approx([0.5 / 0.8, 0.5 / 0.2])
    align.scale(torch.tensor([[0.4, 0.6]]))  # running mean over both batches: (0.6, 0.4)
    third = align.scale(torch.tensor([[0.2, 0.8]]))  # the first batch has left the window: (0.3, 0.7)
    assert third.tolist() == pytest.approx([0.5 / 0.3, 0.5 / 0.7])
    # the scaled answer decides: p = (0.9, 0.1) scaled by (0.5, 4.5) is (0.45, 0.45) / 0.9 -> 0.5 each, not confident
    weak = torch.log(torch.tensor([[0.9, 0.1]]))
    loss, mask, _ = unlabelled_loss("fixmatch", weak, weak, None, 0.6, torch.tensor([0.5, 4.5]))
    assert mask.tolist() == [False] and float(loss) == 0
    loss, mask, pseudo = unlabelled_loss("fixmatch", weak, weak, None, 0.6, torch.tensor([1.0, 0.25]))
    assert mask.tolist() == [True] and pseudo.tolist() == [0]  # (0.9, 0.025) / 0.925: 0.973 for class 0


@pytest.mark.realdata
@pytest.mark.parametrize("semi", ["fixmatch", "mean-teacher", "pseudo-label", None])
def test_each_method_trains_and_never_reads_an_unlabelled_label(semi, real_home, tmp_path, monkeypatch):
    import mnistlab.training.trainer as trainer
    from mnistlab.training import train

    kw = dict(TINY, labels=20, semi=semi, threshold=0.5, data_dir=real_home)
    plain = train("mlp", "mnist", out=tmp_path / "plain", **kw)
    real = trainer.train_semi

    def scrambled(folder, ds, test_ds, *args, **kwargs):
        split = folder.split(np.asarray(ds.labels), True)
        unl = unlabelled_rows(len(ds.labels), split)
        labels = np.array(ds.labels)
        labels[unl] = np.random.default_rng(0).permutation(labels[unl] + 1) % 10  # every one changed, then shuffled
        ds = dataclasses.replace(ds, labels=labels)
        return real(folder, ds, test_ds, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_semi", scrambled)
    other = train("mlp", "mnist", out=tmp_path / "scrambled", **kw)
    a = (tmp_path / "plain" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "scrambled" / "model.safetensors").read_bytes()
    m = plain.metrics
    assert m["labels"] == 20 and m["semi"] == (semi or "supervised") and m["steps"] == 4 and m["unlabelled"] > 50000
    assert other.metrics["test_accuracy"] == m["test_accuracy"]
    rows = [json.loads(line) for line in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    if semi in ("fixmatch", "pseudo-label"):
        assert 0 <= rows[-1]["pseudo_labels_used"] <= 1
        from mnistlab.report import build_report

        page = build_report(plain, data_dir=real_home)["html"].read_text()
        assert "Pseudo-labels: the share of unlabelled images used" in page


@pytest.mark.realdata
@pytest.mark.parametrize("method", [["--semi", "mean-teacher"], ["--semi", "fixmatch", "--align", "--threshold", "0.3"]])
def test_killed_semi_run_resumes_to_the_same_weights(method, real_home, tmp_path):
    """Teacher, optimiser, weight average and the alignment's running mean all come back; the average is saved."""
    args = ["train", "--model", "mlp", "--model-arg", "hidden=[32]", "--labels", "20", *method,
            "--steps", "4", "--checkpoint-every", "2", "--batch-size", "16", "--unlabelled-ratio", "2", "--threads", "1",
            "--ema", "0.5", "--device", "cpu", "--data-dir", str(real_home), "--quiet"]
    killer = Path(__file__).parents[1] / "killed.py"
    killed = subprocess.run([sys.executable, str(killer), *args, "--out", str(tmp_path / "k")], capture_output=True, text=True)
    assert killed.returncode == -9 and not (tmp_path / "k" / "metrics.json").exists()
    resumed = subprocess.run([sys.executable, "-m", "mnistlab", "train", "--resume", str(tmp_path / "k"), "--quiet"],
                             capture_output=True, text=True)
    whole = subprocess.run([sys.executable, "-m", "mnistlab", *args, "--out", str(tmp_path / "w")], capture_output=True, text=True)
    assert resumed.returncode == 0 and whole.returncode == 0, resumed.stderr + whole.stderr
    assert (tmp_path / "k" / "model.safetensors").read_bytes() == (tmp_path / "w" / "model.safetensors").read_bytes()
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "w" / "model.safetensors")
    ckpt = torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=True)
    average, trained = ckpt["average"]["module"], ckpt["model"]
    weights = [k for k in saved if k in trained and "weight" in k]
    assert weights and all(torch.equal(saved[k], average[k]) for k in weights)
    assert not all(torch.equal(saved[k], trained[k]) for k in weights)  # the average, not the trained weights


@pytest.mark.realdata
@pytest.mark.parametrize("args, words", [
    (["--model", "mlp", "--semi", "fixmatch"], "--labels N"),
    (["--model", "mlp", "--labels", "105"], "multiple of 10"),
    (["--model", "mlp", "--labels", "60000"], "leave no unlabelled image"),
    (["--model", "logreg", "--labels", "100", "--semi", "fixmatch"], "logreg"),
    (["--model", "mlp", "--labels", "100", "--semi", "mixmatch"], "semi-supervised method"),
    (["--model", "mlp", "--labels", "100", "--semi", "mean-teacher", "--align"], "--align adjusts pseudo-labels"),
])
def test_bad_few_label_settings(args, words, real_home, tmp_path, capsys):
    from mnistlab.cli import invoke

    assert invoke(["train", *args, "--out", str(tmp_path / "run"), "--data-dir", str(real_home)]) != 0
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()
