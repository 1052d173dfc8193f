"""Data-parallel training under torchrun on this CPU: two gloo processes match one process with the
same global batch, only rank 0 writes, a killed run resumes exactly, and bad launches are one line."""

import json
import os
import subprocess
import sys

import pytest

from mnistlab.cli import invoke as cli
from mnistlab.training import load_run, train
from tests.killed import __file__ as KILLED

pytestmark = pytest.mark.realdata


def torchrun(args, home, cwd, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "mnistlab", "train", "--distributed", "--quiet", *args]
    if "--resume" not in args:
        cmd += ["--device", "cpu"]  # gloo on the CPU, even on a machine with GPUs
    env = {**os.environ, "MNISTLAB_HOME": str(home)}
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def _strip(history):
    return [{k: v for k, v in r.items() if "seconds" not in k and k != "images_per_second"} for r in history]


def test_two_processes_match_one_with_the_same_global_batch(real_home, tmp_path):
    settings = ["--model", "mlp", "--epochs", "2", "--batch-size", "128"]
    done = torchrun([*settings, "--out", "ddp"], real_home, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == [f"test accuracy: {load_run(tmp_path / 'ddp').metrics['test_accuracy']:.4f}"]
    single = train("mlp", "mnist", out=tmp_path / "single", data_dir=real_home, epochs=2, batch_size=128, device="cpu")
    ddp = load_run(tmp_path / "ddp")
    assert ddp.metrics["world_size"] == 2 and ddp.metrics["backend"] == "gloo"
    assert ddp.config["world_size"] == 2 and ddp.config["batch_size"] == 128
    assert abs(ddp.metrics["test_accuracy"] - single.metrics["test_accuracy"]) < 0.006, (ddp.metrics, single.metrics)
    assert ddp.metrics["test_accuracy"] > 0.96
    # the epoch's training statistics cover all 60,000 images, gathered from both processes
    assert [r["epoch"] for r in ddp.history] == [1, 2] and ddp.history[1]["train_accuracy"] > 0.95
    # only rank 0 wrote: one run folder, nothing else in the working folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "single"]
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(
        [".lock", "checkpoint.pt", "config.json", "curve.jsonl", "metrics.json", "metrics.jsonl", "model.safetensors", "split.npz",
         "test_probs.npy"])


def test_killed_distributed_run_resumes_to_the_same_metrics(real_home, tmp_path):
    settings = ["--model", "cnn-bn", "--model-arg", "width=8", "--augment", "light", "--train-subset", "4000",
                "--epochs", "3", "--batch-size", "64"]
    whole = torchrun([*settings, "--out", "whole"], real_home, tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    # rank 0 SIGKILLs itself right after its first epoch is saved (tests/killed.py), and torchrun ends the rest
    cut = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", KILLED,
                          "train", "--distributed", "--quiet", "--device", "cpu", *settings, "--out", "cut"],
                         env={**os.environ, "MNISTLAB_HOME": str(real_home)}, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert cut.returncode != 0
    assert (tmp_path / "cut" / "checkpoint.pt").exists() and not (tmp_path / "cut" / "metrics.json").exists()
    assert len(load_run(tmp_path / "cut").history) == 1
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "mnistlab", "train", "--distributed", "--quiet", "--resume", "cut"],
                          env={**os.environ, "MNISTLAB_HOME": str(real_home)}, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _strip(load_run(tmp_path / "cut").history) == _strip(load_run(tmp_path / "whole").history)


def test_batch_that_does_not_divide_among_processes(real_home, tmp_path):
    done = torchrun(["--model", "mlp", "--epochs", "1", "--batch-size", "33", "--out", "r"], real_home, tmp_path)
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert ours == ["error: batch size 33 does not divide among 2 processes; use a multiple of 2 such as 32 or 34"]
    assert not (tmp_path / "r").exists()


def test_distributed_without_torchrun_is_one_line(capsys, monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    assert cli(["train", "--distributed", "--model", "mlp", "--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --distributed found no torchrun environment") and "torchrun --nproc_per_node" in err
    assert "\n" not in err


def test_classical_models_are_not_distributed(real_home, tmp_path):
    done = torchrun(["--model", "logreg", "--out", "r"], real_home, tmp_path)
    assert done.returncode != 0 and "error: --distributed trains neural nets; 'logreg' is a classical model" in done.stderr
    assert json.dumps(sorted(p.name for p in tmp_path.iterdir())) == "[]"


def test_more_processes_than_gpus_is_one_line(monkeypatch):
    import torch

    from mnistlab.errors import InvalidArgument
    from mnistlab.training import distributed

    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "1"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for device in ("auto", "cuda"):
        with pytest.raises(InvalidArgument) as caught:
            distributed.start(device)
        assert str(caught.value) == ("--distributed on CUDA takes one GPU per process: 2 processes on this machine, "
                                     "1 GPU; start at most 1 (torchrun --nproc_per_node=1) or train on the CPU with --device cpu")


def test_adversarial_training_under_torchrun_matches_one_process(real_home, tmp_path):
    """Each process attacks its own share of the batch through the wrapped net (two forward passes a step: the
    attack's gradients are taken with respect to the images, never synchronised), and the step is synchronised as
    usual: the result matches one process attacking the whole batch, as the plain test does without the attack."""
    settings = ["--model", "mlp", "--epochs", "2", "--batch-size", "128", "--train-subset", "12000",
                "--adversarial", "fgsm", "--adversarial-eps", "0.1"]
    done = torchrun([*settings, "--out", "ddp"], real_home, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    ddp = load_run(tmp_path / "ddp")
    single = train("mlp", "mnist", out=tmp_path / "single", data_dir=real_home, epochs=2, batch_size=128, train_subset=12000,
                   adversarial="fgsm", adversarial_eps=0.1, device="cpu")
    assert ddp.metrics["world_size"] == 2 and ddp.config["adversarial"] == "fgsm"
    assert abs(ddp.metrics["test_accuracy"] - single.metrics["test_accuracy"]) < 0.01, (ddp.metrics, single.metrics)
    assert abs(ddp.history[-1]["train_accuracy"] - single.history[-1]["train_accuracy"]) < 0.02
