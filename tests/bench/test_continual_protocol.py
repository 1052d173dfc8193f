"""`mnistlab bench --protocol continual`, small, on the real MNIST: every cell of the table run once by one of two
workers sharing the queue, the published values beside, and a second call reading the finished study back."""

import json
import subprocess
import sys

import pytest

from mnistlab.bench.continual import make_jobs, run_protocol
from mnistlab.errors import InvalidArgument, UnknownName


def test_the_jobs():
    jobs = make_jobs(["naive", "replay"], seeds=2, buffer=300, iterations=None)
    assert len(jobs) == 2 * 3 * 2 and len({j["key"] for j in jobs}) == 12
    assert {(j["benchmark"], j["scenario"]) for j in jobs} == {("split-mnist", "task"), ("split-mnist", "class"),
                                                               ("permuted-mnist", "domain")}
    assert {j["buffer"] for j in jobs if j["strategy"] == "naive"} == {0} and {j["buffer"] for j in jobs if j["strategy"] == "replay"} == {300}


def test_bad_input(tmp_path):
    with pytest.raises(UnknownName, match="strategy"):
        run_protocol(["nave"], out=tmp_path / "b")
    with pytest.raises(InvalidArgument, match="seeds"):
        run_protocol(["naive"], seeds=0, out=tmp_path / "b")


@pytest.mark.realdata
def test_a_small_protocol_with_two_workers(real_home, tmp_path):
    args = dict(seeds=1, buffer=100, iterations=15, out=tmp_path / "bench", data_dir=real_home, threads=1,
                extra={"model_args": {"hidden": [32]}, "batch_size": 32})
    result = run_protocol(["naive", "replay"], jobs=2, **args)
    assert result["states"]["complete"] == 6 and set(result["states"]) <= {"complete", "fail"} and result["runs"] == 6
    # (a job failed as stale, its worker's heartbeats late, would add a "fail" beside)
    cells = {(r["benchmark"], r["scenario"], r["strategy"]): r for r in result["table"]}
    assert len(cells) == 6 and all(c["seeds"] == 1 and 0 <= c["average_accuracy"]["mean"] <= 1 for c in cells.values())
    run = json.loads((tmp_path / "bench" / "runs" / "split-mnist" / "class" / "replay" / "s0" / "metrics.json").read_text())
    assert cells[("split-mnist", "class", "replay")]["average_accuracy"]["mean"] == run["average_accuracy"]
    md = (tmp_path / "bench" / "continual.md").read_text()
    assert "| split-mnist | class | naive |" in md and "19.9 (van de Ven)" in md
    assert run_protocol(["naive", "replay"], **args)["table"] == result["table"]  # the finished study, read back
    proc = subprocess.run([sys.executable, "-m", "mnistlab", "bench", "--protocol", "continual", "--strategies", "naive",
                           "--seeds", "1", "--iterations", "2", "--out", str(tmp_path / "cli"), "--data-dir", str(real_home),
                           "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "| permuted-mnist | domain | naive |" in proc.stdout
