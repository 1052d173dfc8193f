import csv
import json

import pytest

from mnistlab.bench import run_bench
from mnistlab.bench.leaderboard import plan
from mnistlab.cli import invoke as cli
from mnistlab.errors import InvalidArgument, UnknownName
from mnistlab.evaluate.compare import compare_runs


@pytest.mark.realdata
def test_tiny_grid_end_to_end(real_home, tmp_path, monkeypatch):
    from mnistlab.training import trainer

    real_train = trainer.train
    calls = []

    def sometimes_broken(model, dataset, **kw):  # one failing cell must not stop the sweep
        calls.append(model)
        if model == "logreg" and kw["seed"] == 1:
            raise RuntimeError("simulated crash")
        return real_train(model, dataset, **kw)

    monkeypatch.setattr("mnistlab.training.train", sometimes_broken)
    result = run_bench("quick", models=["mlp", "logreg"], seeds=2, out=tmp_path / "b", data_dir=real_home,
                       settings={"train_subset": 1000, "epochs": 1})
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["mlp"]["seeds"] == 2 and rows["mlp"]["accuracy_mean"] > 0.7 and rows["mlp"]["status"] == "ok"
    assert rows["mlp"]["accuracy_std"] >= 0 and len(rows["mlp"]["accuracy_all"]) == 2
    assert rows["logreg"]["seeds"] == 1 and rows["logreg"]["status"].startswith("failed: RuntimeError: simulated crash")
    assert rows["mlp"]["references"][0]["accuracy"] == 0.98
    saved = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert [r["model"] for r in saved["rows"]] == ["mlp", "logreg"]
    with open(tmp_path / "b" / "bench.csv") as fh:
        assert [r["model"] for r in csv.DictReader(fh)] == ["mlp", "logreg"]
    md = (tmp_path / "b" / "bench.md").read_text()
    assert "| mnist | mlp (epochs=1, train_subset=1000) |" in md and "±" in md and "about 98%" in md
    assert "some runs failed: RuntimeError" in md
    # each row against the best, by the test: logreg has one seed, so the two rows' first runs are compared by McNemar,
    # as `mnistlab compare` compares those two runs
    best, other = sorted(rows.values(), key=lambda r: r["accuracy_mean"], reverse=True)
    assert best["vs_best"] == {"best": True} and other["vs_best"]["test"] == "mcnemar"
    pair = compare_runs([best["runs"][0], other["runs"][0]], data_dir=real_home)["pairs"][0]
    assert other["vs_best"]["p_value"] == pytest.approx(pair["p_value"]) and other["vs_best"]["verdict"] == pair["verdict"]
    assert rows["mlp"]["accuracy_low"] < rows["mlp"]["accuracy_mean"] < rows["mlp"]["accuracy_high"]
    assert "| best |" in md and ("worse, real (mcnemar p" in md or "tie (mcnemar p" in md)


def test_unknown_names_fail_before_anything_runs(tmp_path, capsys):
    with pytest.raises(UnknownName, match="did you mean 'knn'"):
        plan("classic", None, ["knnn"])
    with pytest.raises(UnknownName, match="unknown dataset"):
        plan("classic", ["mnits"], None)
    with pytest.raises(InvalidArgument, match="unknown suite"):
        plan("huge", None, None)
    assert cli(["bench", "--model", "resnett", "--out", str(tmp_path / "x")]) == 1
    assert "did you mean 'resnet'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_suites_cover_the_zoo():
    models = {m for _, m, _ in plan("full", None, None)}
    assert {"logreg", "linear-svm", "rbf-svm", "rbf-svm-approx", "knn", "mlp", "cnn", "lenet5", "resnet"} <= models


@pytest.mark.realdata
def test_bench_robustness_adds_the_mnist_c_and_pgd_columns(real_home, tmp_path, monkeypatch):
    import functools

    import mnistlab.robustness as robustness

    monkeypatch.setattr(robustness, "measure_robustness",  # the bench's own settings, on fewer images for a test
                        functools.partial(robustness.measure_robustness, corruption_images=200, steps=10, step_size=0.04))
    result = run_bench("quick", models=["mlp"], seeds=1, out=tmp_path / "b", data_dir=real_home,
                       settings={"train_subset": 2000, "epochs": 1}, robustness=True, attack_images=50)
    row = result["rows"][0]
    assert 0.3 < row["mean_corruption_accuracy"] < row["accuracy_mean"]
    assert 0 <= row["pgd_0.3"] <= row["pgd_0.2"] <= row["pgd_0.1"] < row["accuracy_mean"]
    md = (tmp_path / "b" / "bench.md").read_text()
    assert "MNIST-C mean" in md and f"{row['mean_corruption_accuracy']:.2%}" in md
    with open(tmp_path / "b" / "bench.csv") as fh:
        assert "pgd_0.3" in next(csv.reader(fh))
    assert (tmp_path / "b" / "runs" / "mnist-mlp-s0" / "robustness.json").exists()


@pytest.mark.realdata
def test_bench_ood_adds_the_auroc_against_the_other_kind_of_images(real_home, tmp_path, monkeypatch):
    import functools

    import mnistlab.ood as ood

    monkeypatch.setattr(ood, "measure_ood", functools.partial(ood.measure_ood, images=500, resamples=10))
    result = run_bench("quick", models=["mlp"], seeds=1, out=tmp_path / "b", data_dir=real_home,
                       settings={"train_subset": 2000, "epochs": 1}, ood=True)
    row = result["rows"][0]
    kept = json.loads((tmp_path / "b" / "runs" / "mnist-mlp-s0" / "ood.json").read_text())
    assert row["ood_set"] == "fashion-mnist" and row["ood_auroc"] == kept["detectors"][kept["chosen"]]["fashion-mnist"]["auroc"]
    md = (tmp_path / "b" / "bench.md").read_text()
    assert "OOD AUROC (vs fashion-mnist)" in md and f"{row['ood_auroc']:,.4f}" in md and "MNIST-C" not in md
