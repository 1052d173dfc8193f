"""The continual-learning benchmarks, built from a cached dataset (van de Ven & Tolias 2019, "Three scenarios for
continual learning"; their code GMvandeVen/continual-learning, data/load.py):

    split-mnist      5 tasks of 2 classes: 0/1, 2/3, 4/5, 6/7, 8/9 (`class_order="seeded"`: the ten classes shuffled
                     by the seed first, as their code does when it is not asked for the fixed order)
    permuted-mnist   N tasks (10), each the whole dataset with its own fixed pixel permutation; every task is permuted,
                     the first one too, as their code builds it (the unpermuted first task is only for their figures)
    rotated-mnist    N tasks (5), each the whole dataset rotated by 180 * t / N degrees (bilinear, as Rotated MNIST is)

and the three scenarios, which decide what a label is and which outputs compete:

    task     the task id is given: the net has an output for every class of every task and each image is judged
             among its own task's outputs only (a head per task)
    domain   the task id is not given and not needed: one head of the task's classes (2 for Split MNIST, 10 for the
             others), labels within the task
    class    the task id is not given and must be inferred: one head over every class seen so far

A task's images are the base dataset's rows (`train_rows`, `test_rows`) and a transform (a permutation or an angle);
labels are the net's output index, already mapped for the scenario (`label_of`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnistlab.errors import InvalidArgument, UnknownName

BENCHMARKS = ("split-mnist", "permuted-mnist", "rotated-mnist")
SCENARIOS = ("task", "domain", "class")
DEFAULT_TASKS = {"split-mnist": 5, "permuted-mnist": 10, "rotated-mnist": 5}


@dataclass(frozen=True)
class Task:
    name: str
    classes: tuple[int, ...]  # the base dataset's classes in this task, in head order
    train_rows: np.ndarray
    test_rows: np.ndarray
    permutation: np.ndarray | None = None  # of the 784 pixels
    angle: float = 0.0


@dataclass(frozen=True)
class Benchmark:
    name: str
    dataset: str
    scenario: str
    tasks: tuple[Task, ...]
    seed: int

    @property
    def per_task(self) -> int:
        return len(self.tasks[0].classes)

    @property
    def outputs(self) -> int:
        """The net's outputs: the task's classes in the domain scenario, every task's otherwise."""
        return self.per_task if self.scenario == "domain" else self.per_task * len(self.tasks)

    def output_ids(self, t: int) -> np.ndarray:
        """The outputs task t's labels use."""
        return np.arange(self.per_task) + (0 if self.scenario == "domain" else t * self.per_task)

    def active(self, t: int, seen: int) -> np.ndarray:
        """The outputs that compete for an image of task t when `seen` tasks have been trained on (the scenario's
        rule): its own task's (task), all (domain), every seen task's (class)."""
        if self.scenario == "task":
            return self.output_ids(t)
        if self.scenario == "domain":
            return np.arange(self.outputs)
        return np.arange(max(seen, t + 1) * self.per_task)

    def label_of(self, t: int, base_labels: np.ndarray) -> np.ndarray:
        """Task t's labels as output indices: the class's place in the task, offset by the task's outputs."""
        place = np.full(int(base_labels.max()) + 1 if len(base_labels) else 0, -1, dtype=np.int64)
        place[list(self.tasks[t].classes)] = np.arange(self.per_task)
        return self.output_ids(t)[place[base_labels]]

    def describe(self) -> list[dict]:
        return [{"name": task.name, "classes": list(task.classes), "outputs": self.output_ids(t).tolist(),
                 "train": len(task.train_rows), "test": len(task.test_rows),
                 **({"angle": task.angle} if task.angle else {}),
                 **({"permuted": True} if task.permutation is not None else {})} for t, task in enumerate(self.tasks)]


def make_benchmark(name: str, scenario: str, train_labels: np.ndarray, test_labels: np.ndarray, *, dataset: str = "mnist",
                   tasks: int | None = None, seed: int = 0, class_order: str = "fixed") -> Benchmark:
    """The tasks of benchmark `name` over a dataset whose labels are given (checked here, one line each)."""
    if name not in BENCHMARKS:
        raise UnknownName("continual benchmark", name, BENCHMARKS)
    if scenario not in SCENARIOS:
        raise UnknownName("scenario", scenario, SCENARIOS)
    if class_order not in ("fixed", "seeded"):
        raise InvalidArgument(f"class order must be fixed or seeded, got {class_order!r}")
    n = DEFAULT_TASKS[name] if tasks is None else tasks
    classes = np.unique(np.concatenate([train_labels, test_labels]))
    if name == "split-mnist":
        if tasks is not None and len(classes) % n:
            raise InvalidArgument(f"split-mnist divides the {len(classes)} classes of {dataset} into tasks of equal "
                                  f"size: --tasks must divide {len(classes)}, got {n}")
        order = np.random.RandomState(seed).permutation(classes) if class_order == "seeded" else classes
        groups = order.reshape(n, -1)
        made = [Task("/".join(map(str, g)), tuple(int(c) for c in g), np.flatnonzero(np.isin(train_labels, g)),
                     np.flatnonzero(np.isin(test_labels, g))) for g in groups]
    else:
        if not isinstance(n, int) or n < 1:
            raise InvalidArgument(f"--tasks must be a whole number >= 1, got {n!r}")
        every = (np.arange(len(train_labels)), np.arange(len(test_labels)))
        if name == "permuted-mnist":
            rng = np.random.RandomState(seed)
            made = [Task(f"permutation {t + 1}", tuple(int(c) for c in classes), *every, permutation=rng.permutation(784))
                    for t in range(n)]
        else:
            made = [Task(f"{180 * t / n:g} degrees", tuple(int(c) for c in classes), *every, angle=180 * t / n)
                    for t in range(n)]
    return Benchmark(name, dataset, scenario, tuple(made), seed)


def task_images(task: Task, images: np.ndarray) -> np.ndarray:
    """A task's images (uint8, N x 28 x 28) with its transform applied."""
    if task.permutation is not None:
        return images.reshape(len(images), -1)[:, task.permutation].reshape(images.shape)
    if task.angle:
        from mnistlab.data.derived import rotate

        return rotate(images, task.angle)
    return images
