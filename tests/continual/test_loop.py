"""`mnistlab continual` on the real MNIST, small: the accuracy matrix and its metrics, the class-incremental collapse
of fine-tuning against replay, the exact resume after kill -9, the JSON, and bad input in one line before any run
folder."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mnistlab.cli import invoke as cli
from mnistlab.continual import run_continual
from mnistlab.continual.metrics import backward_transfer, forward_transfer

SMALL = dict(iterations=40, batch_size=64, model_args={"hidden": [64]}, threads=1)


def test_metrics_by_hand():
    rows = [[0.9, 0.1, 0.2], [0.5, 0.8, 0.3], [0.4, 0.6, 0.7]]
    assert backward_transfer(rows) == pytest.approx(((0.4 - 0.9) + (0.6 - 0.8)) / 2)
    assert forward_transfer(rows, [0.1, 0.05, 0.1]) == pytest.approx(((0.1 - 0.05) + (0.3 - 0.1)) / 2)


@pytest.mark.realdata
def test_split_mnist_class_incremental_naive_forgets_and_replay_remembers(real_home, tmp_path):
    import torch

    threads = torch.get_num_threads()
    naive = run_continual(tmp_path / "naive", data_dir=real_home, strategy="naive", **SMALL)
    assert torch.get_num_threads() == threads  # threads=1 for the run only: the process is left as it was
    replay = run_continual(tmp_path / "replay", data_dir=real_home, strategy="replay", buffer=200, **SMALL)
    r = np.asarray(naive["accuracy_matrix"])
    assert r.shape == (5, 5) and naive["tasks"] == ["0/1", "2/3", "4/5", "6/7", "8/9"]
    assert np.all(np.diag(r) > 0.9)  # each task learnt when trained on
    assert np.all(r[4, :4] < 0.05)  # and gone after the next: class-incremental fine-tuning answers the last task only
    assert naive["average_accuracy"] == pytest.approx(r[4].mean()) and naive["backward_transfer"] < -0.85
    assert replay["average_accuracy"] > naive["average_accuracy"] + 0.3
    lines = (tmp_path / "naive" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["task"] for line in lines] == [0, 1, 2, 3, 4]
    for png in ("accuracy-matrix.png", "accuracy-per-task.png"):
        assert (tmp_path / "naive" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli(["report", str(tmp_path / "replay")]) == 0
    page = (tmp_path / "replay" / "report.html").read_text()
    assert "The accuracy matrix" in page and "data:image/png;base64" in page and f"{replay['average_accuracy']:.4f}" in page
    assert (tmp_path / "replay" / "report_files" / "matrix.png").exists()
    again = run_continual(tmp_path / "naive", data_dir=real_home, strategy="naive", **SMALL)  # finished: read back
    assert again == naive


KILL_AFTER_TWO_TASKS = """
import os, signal, sys
from mnistlab.run import files
saved, done = files.append_jsonl, []
def append_then_die(path, rows):
    saved(path, rows)
    if len(rows) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
files.append_jsonl = append_then_die
from mnistlab.cli import main
sys.argv = ["mnistlab", *sys.argv[1:]]
main()
"""


@pytest.mark.realdata
@pytest.mark.parametrize("strategy, extra", [("si", []), ("replay", ["--buffer", "100"]), ("lwf", []),
                                             ("lwf", ["--scenario", "class"]),  # the last option given is the one taken
                                             ("ewc", ["--fisher-samples", "50", "--strength", "100"]),
                                             ("gdumb", ["--buffer", "100"]), ("agem", ["--buffer", "100"])])
def test_killed_run_resumes_to_the_same_end(real_home, tmp_path, strategy, extra):
    args = ["continual", "--benchmark", "split-mnist", "--scenario", "task", "--strategy", strategy, *extra,
            "--iterations", "30", "--batch-size", "64", "--model-arg", "hidden=[32]", "--threads", "1", "--json",
            "--data-dir", str(real_home)]
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_TWO_TASKS, *args, "--out", str(tmp_path / "k")],
                            capture_output=True, text=True)
    assert killed.returncode == -9 and len((tmp_path / "k" / "metrics.jsonl").read_text().splitlines()) == 2
    resumed = subprocess.run([sys.executable, "-m", "mnistlab", *args, "--out", str(tmp_path / "k")],
                             capture_output=True, text=True)
    whole = subprocess.run([sys.executable, "-m", "mnistlab", *args, "--out", str(tmp_path / "w")],
                           capture_output=True, text=True)
    assert resumed.returncode == 0 and whole.returncode == 0, resumed.stderr + whole.stderr
    a, b = json.loads(resumed.stdout), json.loads(whole.stdout)
    assert a["accuracy_matrix"] == b["accuracy_matrix"] and len(a["accuracy_matrix"]) == 5
    assert set(a) == {"benchmark", "scenario", "strategy", "tasks", "seed", "accuracy_matrix", "average_accuracy",
                      "backward_transfer", "forward_transfer", "seconds"}


@pytest.mark.realdata
@pytest.mark.parametrize("args, words", [
    (["--benchmark", "split-cifar"], "unknown continual benchmark"),
    (["--strategy", "ewc", "--buffer", "10"], "--buffer is for replay"),
    (["--strategy", "replay"], "give its size with --buffer"),
    (["--scenario", "instance"], "unknown scenario"),
    (["--iterations", "0"], "iterations must be"),
    (["--strategy", "lwf", "--distillation", "avg"], "distillation must be one of sum, mean"),
])
def test_bad_input_is_one_line_before_any_run_folder(args, words, real_home, tmp_path, capsys):
    assert cli(["continual", *args, "--out", str(tmp_path / "run"), "--data-dir", str(real_home)]) != 0
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.realdata
def test_compare_pairs_by_seed_where_the_tasks_match(real_home, tmp_path, capsys):
    small = dict(SMALL, iterations=20, class_order="seeded", data_dir=real_home)
    for seed in (0, 1):
        run_continual(tmp_path / f"naive-{seed}", strategy="naive", seed=seed, **small)
        run_continual(tmp_path / f"replay-{seed}", strategy="replay", buffer=100, seed=seed, **small)
    for seed in (2, 3):
        run_continual(tmp_path / f"naive-{seed}", strategy="naive", seed=seed, **small)
    assert cli(["compare", *(str(tmp_path / n) for n in ("naive-0", "naive-1", "replay-0", "replay-1")), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    (pair,) = res["pairs"]
    assert pair["test"] == "paired by seed" and pair["seeds"] == [0, 1]
    naive, replay = res["groups"]
    assert pair["difference"] == pytest.approx(naive["mean"] - replay["mean"]) and pair["difference"] < 0
    # seeds 0, 1 against 2, 3: other class orders, nothing to pair: Welch's test
    assert cli(["compare", *(str(tmp_path / n) for n in ("replay-0", "replay-1", "naive-2", "naive-3")), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pairs"][0]["test"] == "welch"


@pytest.mark.realdata
def test_rotated_tasks_by_epochs(real_home, tmp_path):
    r = run_continual(tmp_path / "rot", benchmark="rotated-mnist", scenario="domain", strategy="naive", tasks=3,
                      epochs=0.05, batch_size=128, model_args={"hidden": [64]}, threads=1, data_dir=real_home)
    assert r["tasks"] == ["0 degrees", "60 degrees", "120 degrees"] and len(r["accuracy_matrix"]) == 3
    rows = [json.loads(line) for line in (tmp_path / "rot" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and r["accuracy_matrix"][0][0] > 0.8  # 24 steps (0.05 x 60,000 / 128) learn the upright digits
    assert r["accuracy_matrix"][0][0] > r["accuracy_matrix"][0][2]  # and not yet the ones turned by 120 degrees


@pytest.mark.realdata
def test_a_run_folder_from_before_a_setting_existed_resumes(real_home, tmp_path):
    from mnistlab.continual.loop import ContinualConfig
    from mnistlab.errors import RunError

    small = dict(SMALL, iterations=10, strategy="lwf", scenario="task", data_dir=real_home)
    assert run_continual(tmp_path / "old", stop_after=2, **small) == {"stopped_after": 2}
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["distillation"]  # written before LwF's distillation could be averaged over the classes
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="other settings"):  # a setting that differs is still refused
        run_continual(tmp_path / "old", **dict(small, distillation="mean"))
    assert len(run_continual(tmp_path / "old", **small)["accuracy_matrix"]) == 5  # resumed: the default it ran with
    # the presets distil as the code of van de Ven & Tolias 2019's table did; a run may say otherwise
    assert ContinualConfig.resolve("vandeven-split-mnist", strategy="lwf").distillation == "mean"
    assert ContinualConfig.resolve("vandeven-split-mnist", strategy="lwf", distillation="sum").distillation == "sum"
