"""Learning curves by data size: the subsets are balanced, nested and fixed by the seed; the bench writes its table
and plot on the real MNIST."""

import numpy as np
import pytest

from mnistlab.bench.curves import check_sizes, run_curves
from mnistlab.config import TrainConfig
from mnistlab.errors import InvalidArgument
from mnistlab.split import split_indices


def test_subsets_are_balanced_nested_and_seeded():
    labels = np.random.default_rng(0).integers(0, 10, 5000)
    subsets = {n: split_indices(labels, TrainConfig(model="cnn", train_subset=n, seed=3), 10).train
               for n in (100, 300, 1000)}
    for n, idx in subsets.items():
        assert len(idx) == n and set(np.bincount(labels[idx], minlength=10)) == {n // 10}
    assert set(subsets[100]) <= set(subsets[300]) <= set(subsets[1000])
    again = split_indices(labels, TrainConfig(model="cnn", train_subset=300, seed=3), 10).train
    other = split_indices(labels, TrainConfig(model="cnn", train_subset=300, seed=4), 10).train
    assert np.array_equal(again, subsets[300]) and not np.array_equal(other, subsets[300])


def test_bad_sizes():
    with pytest.raises(InvalidArgument, match=">= 10"):
        check_sizes([5], "mnist")
    with pytest.raises(InvalidArgument, match="more than the 60,000"):
        check_sizes([70000], "mnist")
    assert check_sizes([1000, 100, 1000], "mnist") == [100, 1000]


@pytest.mark.realdata
def test_a_small_curve(real_home, tmp_path):
    r = run_curves([100, 500, 60000], ["mnist"], ["logreg"], seeds=2, out=tmp_path / "c", data_dir=real_home)
    rows = {row["train_size"]: row for row in r["rows"]}
    assert [rows[n]["trained_on"] for n in (100, 500)] == [[100, 100], [500, 500]] and rows[60000]["trained_on"][0] > 50000
    assert rows[100]["accuracy_mean"] < rows[500]["accuracy_mean"] < rows[60000]["accuracy_mean"]
    assert rows[100]["interval"][0] <= rows[100]["accuracy_mean"] <= rows[100]["interval"][1]
    md = (tmp_path / "c" / "curves.md").read_text()
    assert "| mnist | logreg |" in md and "60,000" in md and "88.00% (linear classifier (1-layer NN)" in md
    assert (tmp_path / "c" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
