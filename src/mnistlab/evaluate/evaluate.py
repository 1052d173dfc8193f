"""Evaluating a run on a dataset split: stored test probabilities when they apply, else a fresh
prediction; any dataset whose classes match the run's (an MNIST model on QMNIST's lost digits); or the run's
own held-out training images, to compare recipes without the test set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistlab.data import Dataset, DatasetSpec, get_spec, load_dataset
from mnistlab.errors import RunError, UnknownName
from mnistlab.evaluate.metrics import summarize
from mnistlab.evaluate.stats import accuracy_interval
from mnistlab.fileio import atomic_write_json
from mnistlab.run import ENSEMBLE, Run

HELD_OUT = "held-out"  # the split of the training images a run never trained on


def eval_path(run: Run, dataset: str, split: str) -> Path:
    own = dataset == run.config["dataset"] and split == "test"
    return run.path / ("eval.json" if own else f"eval-{dataset}-{split}.json")


def evaluate_run(run: Run | str | Path, dataset: str | None = None, split: str = "test", *, data_dir=None,
                 write: bool = True) -> dict:
    """Accuracy, errors, per-class metrics, confusion matrix, top-k, ECE and the most confident mistakes."""
    return evaluate_with_probs(run if isinstance(run, Run) else Run(run), dataset, split, data_dir=data_dir, write=write)[0]


def evaluate_with_probs(run: Run, dataset: str | None = None, split: str = "test", *, data_dir=None, write: bool = True):
    """evaluate_run's result, the split it was computed on and the class probabilities (stored or predicted), for
    callers that draw from them too (the report), so the split is not predicted twice."""
    spec = get_spec(dataset or run.config["dataset"])
    if spec.environments and split == "test" and run.config.get("test_environment"):
        split = run.config["test_environment"]  # a run across environments is tested on its test environment
    if split not in (*spec.splits, HELD_OUT):
        raise UnknownName(f"split of {spec.name}", split, (*spec.splits, HELD_OUT))
    if list(spec.classes) != run.classes:
        raise RunError(f"{run.path} predicts {len(run.classes)} classes ({', '.join(run.classes[:4])}, ...) but "
                       f"{spec.name} has {spec.num_classes} ({', '.join(spec.classes[:4])}, ...); evaluate on a dataset with the same classes")
    train_index = None
    if split == HELD_OUT:
        train_index, ds = held_out_split(run, spec, data_dir)
    else:
        ds = load_dataset(spec, split, data_dir=data_dir)
    own_test = spec.name == run.config["dataset"] and split == "test" and (run.path / "test_probs.npy").exists()
    probs = run.test_probs() if own_test else run.predict_proba(ds.images)
    if probs.shape != (len(ds), spec.num_classes):
        raise RunError(f"{run.path / 'test_probs.npy'} has shape {probs.shape}, expected {(len(ds), spec.num_classes)}; "
                       "the run is from another version or did not finish")
    result = {"run": str(run.path), "model": run.config["model"], "dataset": spec.name, "split": split,
              "source": "test_probs.npy" if own_test else "predicted", **summarize(probs, np.asarray(ds.labels), list(spec.classes))}
    result["accuracy_interval"] = list(accuracy_interval(result["n"] - result["errors"], result["n"]))  # 95%, exact
    if train_index is not None:  # a mistake's index says where it is in the training set
        for mistake in result["confident_mistakes"]:
            mistake["index"] = int(train_index[mistake["index"]])
    if write:
        atomic_write_json(eval_path(run, spec.name, split), result, hint="the run folder must be writable", error=RunError)
    return result, ds, probs


def held_out_split(run: Run, spec: DatasetSpec, data_dir=None) -> tuple[np.ndarray, Dataset]:
    """The training images `run` never trained on (for an ensemble: those all its members held out) and their
    indices in the training set."""
    if spec.name != run.config["dataset"]:
        raise RunError(f"the held-out images of {run.path} are {run.config['dataset']} training images; "
                       f"evaluate it on {spec.name} with --split test")
    train = load_dataset(spec, "train", data_dir=data_dir)
    nets = run.model if run.kind == ENSEMBLE else [run]
    held = [net.split(train.labels).held_out for net in nets]
    if any(not np.array_equal(held[0], h) for h in held[1:]):
        raise RunError(f"the members of {run.path} held out different training images (other seeds or kinds of "
                       "model), so each trained on images another held out; evaluate the members one by one")
    if not len(held[0]):
        raise RunError(f"{run.path} trained on every training image (no --val-split, no calibration hold-out): "
                       "it has no held-out images; evaluate it with --split test")
    idx = held[0]
    return idx, Dataset(train.images[idx], train.labels[idx], train.classes, spec, HELD_OUT)
