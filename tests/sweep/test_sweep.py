"""Sweeps for real: Optuna studies on SQLite and on a local PostgreSQL server, shared by two
`mnistlab sweep` processes, a worker killed mid-trial, pruning, the final retraining, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from mnistlab.cli import invoke as cli
from mnistlab.errors import InvalidArgument, UnknownName
from mnistlab.sweep import default_space, parse_space
from mnistlab.sweep.study import SweepPlan, open_storage, open_study, work
from tests.killed import __file__ as KILLED
from tests.together import run_together

pytestmark = pytest.mark.realdata

TINY = """
[fixed]
epochs = {epochs}
train_subset = {subset}

[params.lr]
low = 1e-3
high = 1e-2
log = true

[params.batch_size]
choices = [64, 128]
"""


def space_file(tmp_path: Path, epochs: int = 2, subset: int = 2000) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(TINY.format(epochs=epochs, subset=subset))
    return path


def sweep_cmd(space: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mnistlab", "sweep", "--model", "mlp", "--space", str(space), "--val-split", "1000", *args]


def start(cmd, home, cwd):
    return subprocess.Popen(cmd, env={**os.environ, "MNISTLAB_HOME": str(home)}, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(proc, timeout=400):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def load(storage: str, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name=name, storage=storage.replace("postgresql://", "postgresql+psycopg://"))


def counted(study):
    """Trials that took one of the requested slots (surplus ones, created by a race for the last
    slot, are closed at once without training)."""
    return [t for t in study.get_trials() if not t.user_attrs.get("surplus") and t.state.name in ("COMPLETE", "PRUNED")]


def check_shared(study, trials: int, runs_root: list[Path]):
    done = counted(study)
    assert len(done) == trials, [(t.number, t.state.name, t.user_attrs) for t in study.get_trials()]
    assert not [t for t in study.get_trials() if t.state.name in ("RUNNING", "WAITING")]
    runs = [Path(t.user_attrs["run"]).name for t in done]
    assert len(set(runs)) == trials  # no trial run twice
    folders = [p for root in runs_root for p in (root / "trials").iterdir()]
    assert Counter(p.name for p in folders) == Counter(runs)  # every trial's run folder, once, none extra
    for p in folders:
        m = json.loads((p / "metrics.json").read_text()) if (p / "metrics.json").exists() else None
        rows = (p / "metrics.jsonl").read_text().splitlines()
        assert all("test_accuracy" not in json.loads(r) for r in rows)  # the test set is never looked at
        assert not (p / "test_probs.npy").exists() and (m is None or m["test_accuracy"] is None)


def test_two_processes_share_the_sqlite_default(real_home, tmp_path):
    space = space_file(tmp_path)
    # released at one instant: both create the new study.db's tables and the study at once
    results = run_together([sweep_cmd(space, "--trials", "8", "--out", "sw")[1:]] * 2, tmp_path,
                           env={"MNISTLAB_HOME": str(real_home)}, cwd=tmp_path, timeout=400)
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-3000:] for r in results]
    outs = [(r.stdout, r.stderr) for r in results]
    study = load(f"sqlite:///{tmp_path / 'sw' / 'study.db'}", "mlp-mnist")
    check_shared(study, 8, [tmp_path / "sw"])
    assert len({t.user_attrs["pid"] for t in counted(study)}) == 2  # both processes took trials
    # one of them retrained the best settings once, and both print its test accuracy
    assert len(list((tmp_path / "sw").glob("best-trial-*"))) == 1
    summary = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert summary["final"]["test_accuracy"] > 0.85 and summary["best"]["trial"] == study.best_trial.number
    assert all(out.strip().splitlines()[-1] == f"test accuracy: {summary['final']['test_accuracy']:.4f}" for out, _ in outs)


def test_two_processes_share_a_postgresql_study(real_home, tmp_path, postgres_url):
    space = space_file(tmp_path)
    # two "machines": their own folders, one storage; the second does not retrain at the end
    a = start(sweep_cmd(space, "--trials", "8", "--storage", postgres_url, "--study", "pg", "--out", "a"), real_home, tmp_path)
    b = start(sweep_cmd(space, "--trials", "8", "--storage", postgres_url, "--study", "pg", "--out", "b", "--no-final"),
              real_home, tmp_path)
    finish(a), finish(b)
    study = load(postgres_url, "pg")
    check_shared(study, 8, [tmp_path / "a", tmp_path / "b"])
    assert {Path(t.user_attrs["run"]).parts[-3] for t in counted(study)} == {"a", "b"}
    assert len(list((tmp_path / "a").glob("best-trial-*"))) == 1 and not list((tmp_path / "b").glob("best-trial-*"))
    # a third process asking for the same study finds it complete and does no new trial
    again = start(sweep_cmd(space, "--trials", "8", "--storage", postgres_url, "--study", "pg", "--out", "a"), real_home, tmp_path)
    finish(again)
    assert len(load(postgres_url, "pg").get_trials()) == len(study.get_trials())


OPEN_STUDY = """
import sys
from pathlib import Path
from mnistlab.sweep import default_space
from mnistlab.sweep.study import SweepPlan, open_study
plan = SweepPlan("mlp", "mnist", 4, default_space("mlp"), "race", sys.argv[1], Path(sys.argv[2]))
print(open_study(plan).study_name)
"""


def fresh_storage(kind: str, tmp_path: Path, postgres_url: str, name: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / name / 'study.db'}"
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + "/" + name


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_eight_processes_opening_a_new_study_at_once(kind, tmp_path, request):
    # Each process would create Optuna's tables and the study; without the schema lock the slower
    # ones fail ("UNIQUE constraint failed: alembic_version", "duplicate key ... pg_type").
    postgres_url = request.getfixturevalue("postgres_url") if kind == "postgresql" else ""
    for round_ in range(3):
        name = f"race_{kind}_{round_}"
        url = fresh_storage(kind, tmp_path, postgres_url, name)
        (tmp_path / name).mkdir(exist_ok=True)
        results = run_together([["-c", OPEN_STUDY, url, str(tmp_path / name)]] * 8, tmp_path)
        assert [r.returncode for r in results] == [0] * 8, [r.stderr[-1500:] for r in results if r.returncode]
        assert all(r.stdout.strip() == "race" for r in results)
        studies = open_storage(url).get_all_studies()
        assert [s.study_name for s in studies] == ["race"] and "mnistlab" in studies[0].user_attrs


def test_a_worker_killed_mid_trial(real_home, tmp_path):
    space = space_file(tmp_path, epochs=4, subset=20000)
    cmd = sweep_cmd(space, "--trials", "3", "--out", "sw", "--heartbeat", "1")
    # the worker SIGKILLs itself right after trial 0's first epoch is saved (tests/killed.py): a known point
    victim = start([sys.executable, KILLED, *cmd[cmd.index("sweep"):]], real_home, tmp_path)
    victim.communicate(timeout=300)
    assert victim.returncode == -signal.SIGKILL
    first = tmp_path / "sw" / "trials" / "trial-0000" / "checkpoint.pt"
    assert first.exists() and not (first.parent / "metrics.json").exists()
    # no wait here: the next worker, finding trial 0 running, waits for its heartbeat to go stale and retries it
    finish(start(cmd, real_home, tmp_path))
    study = load(f"sqlite:///{tmp_path / 'sw' / 'study.db'}", "mlp-mnist")
    states = {t.number: t.state.name for t in study.get_trials()}
    assert states[0] == "FAIL" and len(counted(study)) == 3
    retry = next(t for t in study.get_trials() if t.system_attrs.get("failed_trial") == 0)
    assert retry.params == study.trials[0].params and retry.state.name in ("COMPLETE", "PRUNED")
    # the retry resumed the dead worker's run folder from its last completed epoch
    assert retry.user_attrs["run"].endswith("trial-0000") and len((first.parent / "metrics.jsonl").read_text().splitlines()) >= 1


def test_bad_trials_are_pruned_after_an_epoch(real_home, tmp_path):
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    space = parse_space({"fixed": {"epochs": 4, "train_subset": 3000},
                         "params": {"lr": {"low": 1e-6, "high": 1e-2, "log": True}, "batch_size": {"choices": [64]}}})
    plan = SweepPlan("mlp", "mnist", 3, space, "prune", f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "sw",
                     val_split=1000, data_dir=str(real_home), final=False)
    study = open_study(plan)
    dists = {"lr": FloatDistribution(1e-6, 1e-2, log=True), "batch_size": CategoricalDistribution([64])}
    for lr in (3e-3, 4e-3):  # two good trials already in the study
        study.add_trial(optuna.create_trial(params={"lr": lr, "batch_size": 64}, distributions=dists, value=0.95,
                                            intermediate_values={e: 0.9 + 0.01 * e for e in range(1, 5)}))
    study.enqueue_trial({"lr": 1e-6, "batch_size": 64})  # far too small to learn in 4 epochs
    assert work(plan) == "done"
    bad = load(plan.storage, "prune").trials[2]
    assert bad.state.name == "PRUNED" and list(bad.intermediate_values) == [1]
    rows = (Path(bad.user_attrs["run"]) / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1  # stopped after its first epoch, not trained for four


@pytest.mark.parametrize("space, words", [
    ({"params": {"lrr": {"low": 1e-4, "high": 1e-2}}}, "unknown search-space parameter 'lrr'; did you mean 'lr'"),
    ({"params": {"lr": {"low": 1e-2, "high": 1e-4}}}, "'lr' has an empty range: low 0.01 must be below high 0.0001"),
    ({"params": {"batch_size": {"choices": []}}}, "'batch_size' has an empty list of choices"),
    ({"params": {"weight_decay": {"low": 0, "high": 1e-3, "log": True}}}, "log scale, so low must be > 0"),
    ({"params": {"dropout": {"low": 0, "high": 2}}}, "'dropout': 2 is outside"),
    ({"params": {"batch_size": {"choices": [64, 12.5]}}}, "12.5 is not a int"),
    ({"params": {"optimizer": {"choices": ["adam", "lion"]}}}, "unknown optimizer in the search space 'lion'"),
    ({"params": {"lr": {"low": 1e-4, "high": 1e-2}}, "fixed": {"lr": 1e-3}}, "'lr' is both fixed and searched"),
    ({"fixed": {"epochs": 2}}, "no \\[params.NAME\\] tables"),
])
def test_bad_search_spaces(space, words):
    import re

    with pytest.raises((InvalidArgument, UnknownName)) as info:
        parse_space(space)
    assert re.search(words, str(info.value)), str(info.value)


def test_default_spaces():
    resnet = default_space("resnet").to_dict()["params"]
    assert {"lr", "batch_size", "weight_decay", "label_smoothing", "dropout", "rotate", "epochs"} <= set(resnet)
    assert resnet["lr"] == {"low": pytest.approx(1e-3), "high": pytest.approx(1.6e-2), "log": True}
    assert resnet["epochs"] == {"low": 10, "high": 20}
    assert "epochs" not in default_space("speednet").to_dict()["params"]  # a one-epoch recipe
    with pytest.raises(InvalidArgument, match="'logreg' is a classical model"):
        default_space("logreg")
    settings = parse_space({"fixed": {"augment": "light"}, "params": {"rotate": {"low": 0, "high": 5}}}).settings({"rotate": 2.5})
    assert settings == {"augment": "light,rotate=2.5"}


@pytest.mark.parametrize("args, words", [
    (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open study storage postgresql://nobody@127.0.0.1:1/none: .*"
                                                            "check the URL and that the database server is running"),
    (["--storage", "postgresql://nobody:secret@127.0.0.1:1/none"], "postgresql://nobody:\\*\\*\\*@127.0.0.1:1/none"),
    (["--storage", "nosuchdb://x/y"], "cannot open study storage nosuchdb://x/y"),
    (["--trials", "0"], "trials must be a whole number >= 1"),
    (["--budget-minutes", "0"], "budget must be > 0"),
    (["--model", "logreg"], "'logreg' is a classical model"),
    (["--model", "resnett"], "unknown model 'resnett'; did you mean 'resnet'"),
])
def test_bad_sweep_input_is_one_line(args, words, capsys, tmp_path, monkeypatch, real_home):
    import re

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    space = space_file(tmp_path)
    argv = ["sweep", "--model", "mlp", "--space", str(space), *args] if "--model" not in args else ["sweep", *args]
    assert cli(argv + ["--quiet"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert re.search(words, err), err
    assert "secret" not in err


def test_a_study_name_reused_with_another_space(real_home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    space = space_file(tmp_path, epochs=1, subset=1000)
    base = ["sweep", "--model", "mlp", "--space", str(space), "--val-split", "500", "--out", str(tmp_path / "sw"), "--quiet"]
    assert cli(base + ["--trials", "1", "--no-final"]) == 0
    space.write_text(TINY.format(epochs=2, subset=1000))
    capsys.readouterr()
    assert cli(base + ["--trials", "2"]) != 0
    err = capsys.readouterr().err.strip()
    assert err == (f"error: study 'mlp-mnist' in sqlite:///{tmp_path / 'sw' / 'study.db'} was made for another sweep "
                   "(its space differ); use another --study name, or the same model, dataset and space")


def test_sweep_report_and_final_run(real_home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    space = space_file(tmp_path, epochs=2, subset=3000)
    assert cli(["sweep", "--model", "mlp", "--space", str(space), "--trials", "4", "--val-split", "2000", "--final-epochs", "3",
                "--out", str(tmp_path / "sw"), "--quiet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    s = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert out[-1] == f"test accuracy: {s['final']['test_accuracy']:.4f}"
    # four trials, none failed: complete, or stopped early by the pruner
    assert sum(s["states"].values()) == 4 and set(s["states"]) <= {"complete", "pruned"} and s["states"].get("complete")
    assert s["final"]["epochs"] == 3 and s["best"]["settings"]["epochs"] == 2
    final = json.loads((Path(s["final"]["run"]) / "config.json").read_text())
    assert final["val_split"] == 0 and final["train_subset"] is None and final["lr"] == s["best"]["params"]["lr"]
    assert (Path(s["final"]["run"]) / "report.html").exists()
    assert set(s["importance"]) == {"lr", "batch_size"} if isinstance(s["importance"], dict) else "not computed" in s["importance"]
    png = (tmp_path / "sw" / "history.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000  # a drawn figure, not an empty canvas
    md = (tmp_path / "sw" / "sweep.md").read_text()
    assert f"test accuracy {s['final']['test_accuracy']:.4f}" in md and "| trial | state | val accuracy |" in md
    assert len([line for line in md.splitlines() if line.startswith(tuple(f"| {n} |" for n in range(4)))]) == 4


def test_a_trial_run_is_evaluated_on_demand(real_home, tmp_path, monkeypatch, capsys):
    from mnistlab.errors import RunError
    from mnistlab.training import load_run

    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    space = space_file(tmp_path, epochs=1, subset=2000)
    assert cli(["sweep", "--model", "mlp", "--space", str(space), "--trials", "1", "--val-split", "1000", "--no-final",
                "--out", str(tmp_path / "sw"), "--quiet"]) == 0
    trial = load_run(tmp_path / "sw" / "trials" / "trial-0000")
    assert trial.metrics["test_accuracy"] is None and trial.metrics["val_accuracy"] > 0.7
    with pytest.raises(RunError, match="trained without looking at the test set"):
        trial.test_probs()
    capsys.readouterr()
    assert cli(["evaluate", str(trial.path)]) == 0  # predicts the test set now, on request
    assert json.loads((trial.path / "eval.json").read_text())["source"] == "predicted"
    assert cli(["report", str(trial.path)]) == 0 and (trial.path / "report.html").exists()


def test_a_sweep_across_environments(real_home, tmp_path, capsys, monkeypatch):
    """IRM's strength searched on Colored MNIST: trials judged on the training environments' held-out fifth (never
    the test environment), then the best retrained on whole environments and tested on -90%."""
    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    space = tmp_path / "space.toml"
    space.write_text('[fixed]\nalgorithm = "irm"\ntest_environment = "-90%"\nsteps = 20\ncheckpoint_every = 10\n'
                     'batch_size = 512\npenalty_anneal = 10\nmodel_args = {hidden = 16}\n\n'
                     '[params.penalty_weight]\nlow = 1.0\nhigh = 10000.0\nlog = true\n')
    assert cli(["sweep", "--model", "irm-mlp", "--dataset", "colored-mnist", "--space", str(space), "--trials", "3",
                "--out", str(tmp_path / "sw"), "--quiet"]) == 0
    s = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert sum(s["states"].values()) == 3 and s["states"].get("complete")
    trial = Path(s["best"]["run"])
    rows = [json.loads(line) for line in (trial / "metrics.jsonl").read_text().splitlines()]
    # the objective is the mean of the training environments' held-out accuracies, reported at each checkpoint
    assert [r["step"] for r in rows] == [10, 20]
    for r in rows:
        assert r["val_accuracy"] == pytest.approx((r["environments"]["+80%"]["out"] + r["environments"]["+90%"]["out"]) / 2)
    assert json.loads((trial / "config.json").read_text())["holdout_fraction"] == 0.2
    final = json.loads((Path(s["final"]["run"]) / "config.json").read_text())
    assert final["holdout_fraction"] == 0.0 and final["penalty_weight"] == s["best"]["params"]["penalty_weight"]
    assert 0 <= s["final"]["test_accuracy"] <= 1 and s["final"]["steps"] == 20
    space.write_text(space.read_text().replace("[fixed]\n", "[fixed]\nholdout_fraction = 0.0\n"))
    assert cli(["sweep", "--model", "irm-mlp", "--dataset", "colored-mnist", "--space", str(space), "--trials", "1",
                "--out", str(tmp_path / "sw0"), "--quiet"]) != 0
    assert "holdout_fraction must be > 0" in capsys.readouterr().err
