"""DomainBed's model selection and tables, checked against DomainBed's own test sweep (ERM on VLCS, 40 runs with
single and paired test environments; tests/fixtures/domainbed_test_sweep.json) and the table its collect_results
printed for it (domainbed/misc/test_sweep_results.txt), and against hand computations on records made up here."""

import json
from pathlib import Path

import pytest

from mnistlab.bench.selection import cell_text, leave_one_out, mean_se, oracle, sweep_acc, tables, training_domain

FIXTURE = Path(__file__).parents[1] / "fixtures" / "domainbed_test_sweep.json"

# domainbed/misc/test_sweep_results.txt: the per-environment cells (C, L, S, V), the Avg column, the averages table
PRINTED = {
    "training_domain": (["98.0 ± 0.2", "64.2 ± 0.8", "74.1 ± 0.4", "77.1 ± 0.2"], "78.3", "78.3 ± 0.0"),
    "leave_one_out": (["96.9 ± 1.0", "64.4 ± 0.9", "70.5 ± 0.5", "76.7 ± 0.1"], "77.1", "77.1 ± 0.1"),
    "oracle": (["96.9 ± 1.0", "65.9 ± 0.5", "71.6 ± 1.3", "76.9 ± 0.3"], "77.8", "77.8 ± 0.3"),
}


@pytest.fixture(scope="module")
def sweep():
    doc = json.loads(FIXTURE.read_text())
    records = [{**r, "dataset": doc["dataset"], "algorithm": doc["algorithm"]} for r in doc["records"]]
    return doc, records


@pytest.mark.parametrize("selection", list(PRINTED))
def test_domainbeds_own_sweep_gives_its_printed_table(sweep, selection):
    doc, records = sweep
    t = tables(records, selection, {doc["dataset"]: doc["environments"]})
    row = t["datasets"]["VLCS"]["ERM"]
    cells, avg, averaged = PRINTED[selection]
    assert [cell_text(row["environments"][e]) for e in doc["environments"]] == cells
    assert f"{row['average']:.1f}" == avg
    assert cell_text(t["averages"]["ERM"]["VLCS"]) == averaged
    assert all(c["n"] == 2 for c in row["environments"].values())  # two trial seeds each


def record(test_envs, step, ins, outs, hp=0, trial=0):
    return {"dataset": "d", "algorithm": "a", "test_envs": test_envs, "hparams_seed": hp, "trial_seed": trial,
            "step": step, "in": ins, "out": outs}


def test_training_domain_picks_the_step_by_the_other_environments_held_out_parts():
    run = [record([0], 100, [0.50, None, None], [0.9, 0.60, 0.70]),   # val (0.6 + 0.7) / 2 = 0.65
           record([0], 200, [0.40, None, None], [0.1, 0.80, 0.70]),   # val 0.75: chosen, whatever env 0's out says
           record([0], 300, [0.99, None, None], [0.99, 0.70, 0.70])]  # val 0.70
    assert training_domain(run) == {"val_acc": pytest.approx(0.75), "test_acc": 0.40}
    assert training_domain([record([0, 1], 100, [0.5, 0.5, None], [0.5, 0.5, 0.5])]) is None  # paired runs: not its


def test_oracle_takes_the_last_step_judged_by_the_test_environment():
    run = [record([1], 300, [None, 0.31, None], [0.9, 0.32, 0.9]), record([1], 100, [None, 0.11, None], [0.9, 0.12, 0.9])]
    assert oracle(run) == {"val_acc": 0.32, "test_acc": 0.31}


def test_leave_one_out_averages_the_left_out_environments_at_each_step():
    # test environment 0 of three: the runs that also left out 1 and 2 judge each step
    recs = [record([0], 100, [0.50, None, None], [0, 0, 0]), record([0, 1], 100, [0.9, 0.60, None], [0, 0, 0]),
            record([0, 2], 100, [0.9, None, 0.80], [0, 0, 0]),                    # step 100: (0.6 + 0.8) / 2 = 0.7
            record([0], 200, [0.45, None, None], [0, 0, 0]), record([0, 1], 200, [0.9, 0.70, None], [0, 0, 0]),
            record([0, 2], 200, [0.9, None, 0.90], [0, 0, 0]),                    # step 200: 0.8, chosen
            record([0], 300, [0.99, None, None], [0, 0, 0]), record([0, 1], 300, [0.9, 0.99, None], [0, 0, 0])]
    assert leave_one_out(recs) == {"val_acc": pytest.approx(0.8), "test_acc": 0.45}  # step 300 lacks env 2: skipped
    assert leave_one_out(recs[:1]) is None


def test_sweep_acc_takes_the_hyperparameters_whose_run_validates_best():
    recs = [record([0], 100, [0.2, None], [0.0, 0.90], hp=0), record([0], 100, [0.3, None], [0.0, 0.95], hp=1),
            record([0], 100, [0.9, None], [0.0, 0.50], hp=2)]
    assert sweep_acc(recs, "training_domain") == 0.3
    assert sweep_acc([], "oracle") is None


def test_mean_and_standard_error_as_domainbed_prints_them():
    assert cell_text(mean_se([0.1, 0.2, 0.3])) == "20.0 ± 4.7"  # DomainBed's test_format_mean: '20.0 +/- 4.7'
    assert mean_se([]) is None and cell_text(None) == "X"


def test_a_missing_test_environment_leaves_its_cell_and_the_average_empty():
    recs = [record([0], 100, [0.5, None], [0.5, 0.5], trial=t) for t in (0, 1)]
    row = tables(recs, "oracle", {"d": ["e0", "e1"]})["datasets"]["d"]["a"]
    assert row["environments"]["e0"]["mean"] == pytest.approx(50.0) and row["environments"]["e1"] is None
    assert row["average"] is None
