"""The continual benchmarks are built as stated: class pairs per task, permutations that are permutations and fixed
by the seed, rotations, and labels and competing outputs per scenario (task ids only where the scenario gives them)."""

import numpy as np
import pytest

from mnistlab.continual.benchmarks import make_benchmark, task_images
from mnistlab.errors import InvalidArgument, UnknownName

TRAIN = np.repeat(np.arange(10), 6)  # 60 fake labels, 6 per class
TEST = np.repeat(np.arange(10), 2)


def test_split_mnist_tasks_are_class_pairs():
    b = make_benchmark("split-mnist", "class", TRAIN, TEST)
    assert [t.classes for t in b.tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    for task in b.tasks:
        assert set(TRAIN[task.train_rows]) == set(task.classes) and len(task.train_rows) == 12
        assert set(TEST[task.test_rows]) == set(task.classes)
    seeded = make_benchmark("split-mnist", "class", TRAIN, TEST, seed=3, class_order="seeded")
    order = [c for t in seeded.tasks for c in t.classes]
    assert sorted(order) == list(range(10)) and order == list(np.random.RandomState(3).permutation(10))
    assert order != list(range(10))


@pytest.mark.parametrize("scenario, outputs, labels_task2, active_task2_after_3",
                         [("task", 10, [4, 5], [4, 5]), ("domain", 2, [0, 1], [0, 1]), ("class", 10, [4, 5], [0, 1, 2, 3, 4, 5])])
def test_scenarios_decide_labels_and_competing_outputs(scenario, outputs, labels_task2, active_task2_after_3):
    b = make_benchmark("split-mnist", scenario, TRAIN, TEST)
    assert b.outputs == outputs
    assert b.label_of(2, np.array([4, 5, 5])).tolist() == [labels_task2[0], labels_task2[1], labels_task2[1]]
    assert b.active(2, 3).tolist() == active_task2_after_3


def test_permutations_are_permutations_fixed_by_the_seed():
    b = make_benchmark("permuted-mnist", "domain", TRAIN, TEST, tasks=4, seed=1)
    perms = [t.permutation for t in b.tasks]
    assert all(sorted(p) == list(range(784)) for p in perms)
    assert all(not np.array_equal(p, np.arange(784)) for p in perms)  # the first task is permuted too
    again = make_benchmark("permuted-mnist", "domain", TRAIN, TEST, tasks=4, seed=1)
    assert all(np.array_equal(p, q.permutation) for p, q in zip(perms, again.tasks))
    other = make_benchmark("permuted-mnist", "domain", TRAIN, TEST, tasks=4, seed=2)
    assert not np.array_equal(perms[0], other.tasks[0].permutation)
    images = np.arange(2 * 784, dtype=np.int64).reshape(2, 28, 28) % 251
    moved = task_images(b.tasks[0], images.astype(np.uint8))
    assert np.array_equal(moved.reshape(2, -1), images.reshape(2, -1)[:, perms[0]].astype(np.uint8))
    assert b.outputs == 10 and make_benchmark("permuted-mnist", "class", TRAIN, TEST, tasks=4).outputs == 40


def test_rotated_tasks():
    b = make_benchmark("rotated-mnist", "domain", TRAIN, TEST, tasks=4)
    assert [t.angle for t in b.tasks] == [0, 45, 90, 135]
    img = np.zeros((1, 28, 28), np.uint8)
    img[0, 4:24, 13:15] = 255  # a vertical bar
    flat = task_images(b.tasks[2], img)[0]  # 90 degrees: now horizontal
    assert flat[13:15, 6:22].mean() > 200 and flat[4:10, 13:15].mean() < 50


def test_bad_benchmarks_are_refused():
    with pytest.raises(UnknownName, match="benchmark"):
        make_benchmark("split-cifar", "class", TRAIN, TEST)
    with pytest.raises(UnknownName, match="scenario"):
        make_benchmark("split-mnist", "instance", TRAIN, TEST)
    with pytest.raises(InvalidArgument, match="must divide 10"):
        make_benchmark("split-mnist", "class", TRAIN, TEST, tasks=3)
