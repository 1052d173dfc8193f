"""The speedrun path runs in the suite on a small budget and must beat a floor, so it cannot rot."""

import json

import pytest

from mnistlab.bench import speedrun as sr
from mnistlab.cli import invoke as cli
from mnistlab.config import PRESETS, resolve_config
from mnistlab.errors import InvalidArgument

pytestmark = pytest.mark.realdata


@pytest.fixture
def small_budget(monkeypatch):
    """The real recipe on a fraction of an epoch: 6,000 training images, one epoch."""
    monkeypatch.setitem(PRESETS, "speedrun", {**PRESETS["speedrun"], "epochs": 1, "train_subset": 6000})


def test_recipe_is_the_train_preset():
    cfg = resolve_config({"preset": "speedrun"})
    assert cfg.model == "speednet" and cfg.preset == "speedrun"
    assert {k: getattr(cfg, k) for k in PRESETS["speedrun"] if k != "model"} == {k: v for k, v in PRESETS["speedrun"].items() if k != "model"}


def test_speedrun_small_budget_beats_a_floor_and_is_deterministic(real_home, small_budget):
    res = sr.speedrun("mnist", target=0.9, runs=2, data_dir=real_home)
    assert [r["seed"] for r in res["runs"]] == [0, 1]
    assert res["min_accuracy"] >= 0.9 and res["reached_target"]
    again = sr.speedrun("mnist", target=0.9, runs=1, data_dir=real_home)
    assert again["runs"][0]["test_accuracy"] == res["runs"][0]["test_accuracy"]
    assert {"runs", "mean_seconds", "mean_accuracy", "min_accuracy", "device", "threads", "torch"} <= set(res)


def test_cli_json_with_reference(real_home, small_budget, monkeypatch, capsys):
    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    real_ref = sr.reference_run
    monkeypatch.setattr(sr, "reference_run", lambda d, t, **kw: real_ref(d, 0.5, max_epochs=1, data_dir=kw.get("data_dir")))
    assert cli(["speedrun", "--runs", "1", "--target", "0.9", "--against", "reference", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["runs"][0]["test_accuracy"] >= 0.9 and res["reference"]["epochs"] == 1 and res["speedup"] > 0


def test_bad_speedrun_input():
    with pytest.raises(InvalidArgument, match="no speedrun recipe for kmnist"):
        sr.speedrun("kmnist")
    with pytest.raises(InvalidArgument, match="runs must be >= 1"):
        sr.speedrun("mnist", runs=0)
    with pytest.raises(InvalidArgument, match="--against takes 'reference'"):
        sr.speedrun("mnist", against="keras")


def test_recipe_follows_the_target():
    assert sr.recipe_for("mnist", 0.99) == "speedrun"
    assert sr.recipe_for("mnist", 0.993) == "speedrun-995"
    assert sr.recipe_for("fashion-mnist", 0.92) == "speedrun-fashion"
    for name in ("speedrun", "speedrun-995", "speedrun-fashion"):
        resolve_config({"preset": name})  # every recipe is a valid training config
