"""`mnistlab bench --protocol domainbed`: DomainBed's hyperparameter draws and seeds (checked against the values its
own test sweep recorded), its list of runs, and a small protocol end to end on the real Colored MNIST with two
workers sharing one queue."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnistlab.bench.domainbed import Job, Protocol, dataset_of, draw, hparams, make_jobs, run_protocol, settings
from mnistlab.errors import InvalidArgument, UnknownName
from mnistlab.sweep.study import SweepError
from mnistlab.training.environments import seed_hash

FIXTURE = Path(__file__).parents[1] / "fixtures" / "domainbed_test_sweep.json"


def test_draws_are_domainbeds_registry():
    # DomainBed's VLCS ranges (not MNIST's), to meet the values its test sweep recorded for hparams seeds 0 and 1
    for h in json.loads(FIXTURE.read_text())["hparams"]:
        hp, trial = h["hparams_seed"], h["trial_seed"]
        assert draw(hp, trial, "lr", 5e-5, lambda r: 10 ** r.uniform(-5, -3.5)) == h["lr"]
        assert draw(hp, trial, "batch_size", 32, lambda r: int(2 ** r.uniform(3, 5.5))) == h["batch_size"]
        assert draw(hp, trial, "weight_decay", 0.0, lambda r: 10 ** r.uniform(-6, -2)) == h["weight_decay"]
        assert draw(hp, trial, "resnet_dropout", 0.0, lambda r: r.choice([0.0, 0.1, 0.5])) == h["resnet_dropout"]


def test_seeds_are_domainbeds():
    for s in json.loads(FIXTURE.read_text())["seeds"]:
        assert seed_hash("VLCS", "ERM", s["test_envs"], s["hparams_seed"], s["trial_seed"]) == s["seed"]
    job = Job("colored-mnist-domainbed", "irm", (2,), 3, 1)
    assert job.seed == seed_hash("ColoredMNIST", "IRM", [2], 3, 1)


def test_mnist_hyperparameters():
    assert hparams("irm", 0, 5) == {"lr": 1e-3, "batch_size": 64, "weight_decay": 0.0, "penalty_weight": 100.0,
                                    "penalty_anneal": 500}
    assert hparams("vrex", 0, 0)["penalty_weight"] == 10.0 and hparams("groupdro", 0, 0)["penalty_weight"] == 0.01
    drawn = hparams("irm", 4, 2)
    seed = seed_hash(seed_hash(4, 2), "irm_lambda")
    assert drawn["penalty_weight"] == 10 ** np.random.RandomState(seed).uniform(-1, 5)
    assert 1e-3 * 10 ** -1.5 <= drawn["lr"] <= 1e-3 * 10 ** 0.5 and 8 <= drawn["batch_size"] <= 512
    assert hparams("erm", 4, 2)["lr"] == drawn["lr"]  # each name on its own stream: the same for every algorithm


def test_the_runs_are_domainbeds_sweep():
    p = Protocol(("colored-mnist-domainbed",), ("erm", "irm"), hparams=2, trials=2)
    jobs = make_jobs(p)
    # per trial, algorithm: 3 single + 3 paired test environments, 2 hyperparameter seeds each
    assert len(jobs) == 2 * 2 * 6 * 2 and len({j.key for j in jobs}) == len(jobs)
    assert [j.test_envs for j in jobs[:12:2]] == [(0,), (0, 1), (0, 2), (1,), (1, 2), (2,)]
    single = make_jobs(Protocol(("rotated-mnist",), ("erm",), hparams=1, trials=1, leave_one_out=False))
    assert [j.test_envs for j in single] == [(i,) for i in range(6)]
    s = settings(Job("rotated-mnist", "erm", (1, 4), 0, 2), p)
    assert s["test_environment"] == "15" and s["train_environments"] == ["0", "30", "45", "75"]
    assert s["trial_seed"] == 2 and s["holdout_fraction"] == 0.2 and s["algorithm_args"] == {"convention": "domainbed"}


def test_bad_input_is_refused_before_any_run(tmp_path):
    with pytest.raises(InvalidArgument, match="colored-mnist-domainbed and rotated-mnist, not mnist"):
        run_protocol(["mnist"], out=tmp_path / "b")
    with pytest.raises(UnknownName, match="algorithm"):
        run_protocol(["rotated-mnist"], ["irn"], out=tmp_path / "b")
    with pytest.raises(InvalidArgument, match="hparams"):
        run_protocol(["rotated-mnist"], hparams=0, out=tmp_path / "b")
    assert not (tmp_path / "b").exists()


@pytest.mark.realdata
def test_a_small_protocol_end_to_end_with_two_workers(real_home, tmp_path):
    args = dict(hparams=2, trials=1, steps=2, checkpoint_every=1, model="irm-mlp", out=tmp_path / "bench",
                data_dir=real_home, extra={"model_args": {"hidden": 16}}, pinned_draw=True)  # 24 runs: one draw
    result = run_protocol(["colored-mnist-domainbed"], ["erm", "vrex"], jobs=2, **args)
    # every job once, by either worker (a job failed as stale on a loaded machine is run again: a "fail" beside)
    assert result["runs"] == 2 * 6 * 2 and result["states"]["complete"] == 24 and set(result["states"]) <= {"complete", "fail"}
    for selection in ("training_domain", "leave_one_out", "oracle"):
        rows = result["tables"][selection]["datasets"]["colored-mnist-domainbed"]
        for row in rows.values():
            assert all(0 <= c["mean"] <= 100 and c["n"] == 1 for c in row["environments"].values())
    # the oracle's cell is the last step's test accuracy of the run whose test environment's out part is best
    study_runs = sorted((tmp_path / "bench" / "runs" / "colored-mnist-domainbed" / "erm" / "test-2").iterdir())
    finals = [json.loads(line) for r in study_runs for line in (r / "metrics.jsonl").read_text().splitlines()[-1:]]
    best = max(finals, key=lambda row: row["environments"]["-90%"]["out"])
    cell = result["tables"]["oracle"]["datasets"]["colored-mnist-domainbed"]["erm"]["environments"]["-90%"]
    assert cell["mean"] == pytest.approx(100 * best["environments"]["-90%"]["in"])
    md = (tmp_path / "bench" / "domainbed.md").read_text()
    assert "| ERM |" in md and "(28.7)" in md and "leave-one-domain-out" in md
    again = run_protocol(["colored-mnist-domainbed"], ["erm", "vrex"], **args)  # joins the finished study: no new run
    assert again["states"] == result["states"] and again["tables"] == result["tables"]
    with pytest.raises(SweepError, match="made for another protocol"):
        run_protocol(["colored-mnist-domainbed"], ["erm"], **args)
    proc = subprocess.run([sys.executable, "-m", "mnistlab", "bench", "--protocol", "domainbed", "--dataset",
                           "colored-mnist-domainbed", "--algorithm", "erm", "--hparams", "1", "--seeds", "1", "--steps",
                           "1", "--single-test-envs", "--pinned-draw", "--model", "irm-mlp", "--out", str(tmp_path / "cli"),
                           "--data-dir", str(real_home), "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "| ERM |" in proc.stdout and (tmp_path / "cli" / "domainbed.json").exists()


def test_only_some_test_environments():
    p = Protocol(("colored-mnist-domainbed",), ("erm",), hparams=1, trials=1, test_environments=("-90%",))
    # -90% alone, and the two pairs that hold it out with another (its leave-one-out)
    assert [j.test_envs for j in make_jobs(p)] == [(0, 2), (1, 2), (2,)]
    single = Protocol(("colored-mnist-domainbed",), ("erm",), hparams=1, trials=1, leave_one_out=False,
                      test_environments=("-90%",))
    assert [j.test_envs for j in make_jobs(single)] == [(2,)]
    with pytest.raises(UnknownName, match="environment"):
        run_protocol(["colored-mnist-domainbed"], test_environments=["-95%"])


def test_each_run_has_its_own_draw_seeded_as_domainbeds_train_py():
    job = Job("rotated-mnist", "erm", (0,), 0, 0)
    # DomainBed's misc.seed_hash by hand: md5 of the arguments' tuple as Python prints it, modulo 2^31
    seed = int(hashlib.md5(b"('RotatedMNIST', 'ERM', [0], 0, 0)").hexdigest(), 16) % 2**31
    assert dataset_of(job, Protocol(("rotated-mnist",), ("erm",))) == f"rotated-mnist@{seed}"
    assert dataset_of(job, Protocol(("rotated-mnist",), ("erm",), pinned_draw=True)) == "rotated-mnist"
    # a study made before runs had draws of their own (no "draws" in its identity) is the pinned protocol's
    assert "draws" not in Protocol(("rotated-mnist",), ("erm",), pinned_draw=True).identity()
    assert Protocol(("rotated-mnist",), ("erm",)).identity()["draws"] == "per run"


@pytest.mark.realdata
def test_a_run_trains_on_its_own_draw_and_the_draw_leaves_the_cache(real_home, tmp_path):
    from mnistlab.data import get_spec
    from mnistlab.data.cache import DatasetCache
    from tests.data.test_derived import _domainbed_published

    args = dict(hparams=1, trials=1, steps=1, checkpoint_every=1, leave_one_out=False, model="irm-mlp",
                test_environments=["-90%"], out=tmp_path / "bench", data_dir=real_home,
                extra={"model_args": {"hidden": 8}})
    result = run_protocol(["colored-mnist-domainbed"], ["erm"], **args)
    assert result["runs"] == 1 and result["draws"] == "per run"
    job = Job("colored-mnist-domainbed", "erm", (2,), 0, 0)
    config = json.loads((tmp_path / "bench" / "runs" / job.key / "config.json").read_text())
    assert config["dataset"] == f"colored-mnist-domainbed@{job.seed}"
    # the images DomainBed's own code makes after torch.manual_seed(the run's seed), not the pinned draw's
    mnist = DatasetCache(real_home, "mnist")
    images = np.concatenate([mnist.load("train", "images"), mnist.load("test", "images")])
    labels = np.concatenate([mnist.load("train", "labels"), mnist.load("test", "labels")]).astype(np.int64)
    theirs = _domainbed_published(images, labels, job.seed, [0.1, 0.2, 0.9])
    recorded = config["dataset_sha256"]
    assert recorded["images"] == hashlib.sha256(np.concatenate([x for x, _, _ in theirs]).tobytes()).hexdigest()
    assert recorded["images"] != get_spec("colored-mnist-domainbed").derived.sha256["images"]
    assert not (real_home / "datasets" / config["dataset"]).exists()  # 106 MB a run: dropped when it finished
    assert "each run on its own draw" in (tmp_path / "bench" / "domainbed.md").read_text()
    with pytest.raises(SweepError, match="made for another protocol"):  # the same study on the pinned draw
        run_protocol(["colored-mnist-domainbed"], ["erm"], pinned_draw=True, **args)


@pytest.mark.realdata
def test_a_protocol_in_bf16_is_its_own_study_and_its_runs_train_in_bf16(real_home, tmp_path, monkeypatch):
    args = dict(hparams=1, trials=1, steps=1, checkpoint_every=1, leave_one_out=False, model="irm-mlp",
                test_environments=["-90%"], data_dir=real_home, extra={"model_args": {"hidden": 8}}, pinned_draw=True)
    monkeypatch.setattr("mnistlab.training.engine.bf16_supported", lambda device: False)
    with pytest.raises(InvalidArgument, match="precision bf16 requested"):  # before any run, on hardware without it
        run_protocol(["colored-mnist-domainbed"], ["erm"], precision="bf16", out=tmp_path / "none", **args)
    with pytest.raises(InvalidArgument, match="fp32 .DomainBed's. or bf16"):
        run_protocol(["colored-mnist-domainbed"], ["erm"], precision="fp16", out=tmp_path / "none", **args)
    assert not (tmp_path / "none").exists()
    monkeypatch.setattr("mnistlab.training.engine.bf16_supported", lambda device: True)
    result = run_protocol(["colored-mnist-domainbed"], ["erm"], precision="bf16", out=tmp_path / "bench", **args)
    assert result["runs"] == 1 and result["precision"] == "bf16"
    run = tmp_path / "bench" / "runs" / Job("colored-mnist-domainbed", "erm", (2,), 0, 0).key
    assert json.loads((run / "metrics.json").read_text())["precision"] == "bf16"
    assert "in bf16 (autocast)" in (tmp_path / "bench" / "domainbed.md").read_text()
    assert "precision" not in Protocol(("rotated-mnist",), ("erm",)).identity()  # fp32 studies made before: the same
    with pytest.raises(SweepError, match="made for another protocol"):  # the same study in fp32
        run_protocol(["colored-mnist-domainbed"], ["erm"], out=tmp_path / "bench", **args)
