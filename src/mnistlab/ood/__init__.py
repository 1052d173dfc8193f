"""Is it a digit at all? Out-of-distribution detection for a run: how well each detector (detectors.py) tells the
run's test images from images of other kinds (sets.py), and the one detector every answer carries.

    measure_ood(RUN) -> the numbers, also written to RUN/ood.json, and RUN/ood.png
    kept_detector(RUN) -> the run's chosen detector and threshold (chosen once, kept in the run folder)

The chosen detector is the best, by mean AUROC, at telling held-out training images (no member trained on them)
from the generated sets made from another seed (their scrambled digits from the held-out images): never the test
images or the sets that measure_ood reports. Its threshold lets 95% of the held-out images through.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import weakref
from pathlib import Path

import numpy as np

from mnistlab.errors import InvalidArgument, RunError
from mnistlab.ood.detectors import DETECTORS, FEATURE_DETECTORS, Fit
from mnistlab.ood.metrics import TPR, misclassification_auroc, passing_threshold, risk_coverage, separation, with_intervals
from mnistlab.ood.scorer import Scorer, training_sample
from mnistlab.ood.sets import GENERATED, choose, generated
from mnistlab.run import Run, read_result, write_result

RESULT, PICTURE = "ood.json", "ood.png"
KEPT, KEPT_FIT = "ood_detector.json", "ood_fit.safetensors"
KEPT_VERSION = 1
IMAGES = 10_000  # images of each set measured (the test set's 10,000; fewer where a set has fewer)
CHOICE_IMAGES = 2_000  # images of each generated set the detector is chosen against
CHOICE_SEED = 1  # the generated sets of the choice: another seed than the reported ones (seed 0 by default)


def field_name(run: Run) -> str:
    """What an answer calls "looks like what the run was trained on": digit_like for a digit model, in_distribution
    for any other (the one place it is named)."""
    return "digit_like" if all(c.isdigit() for c in run.classes) else "in_distribution"


class Detector:
    """A run's chosen detector: `scores(images)` (higher: more like the training images) and the `threshold` at or
    above which an image counts as in-distribution."""

    def __init__(self, scorer: Scorer, record: dict):
        self.scorer, self.record = scorer, record
        self.name, self.threshold = record["detector"], float(record["threshold"])
        self.field = field_name(scorer.run)

    def scores(self, images: np.ndarray) -> np.ndarray:
        return self.scorer.scores(images, [self.name])[self.name]

    def judge(self, images: np.ndarray) -> list[dict]:
        """{"ood_score": ..., field: bool} for each image (uint8 (N, 28, 28))."""
        return [{"ood_score": float(s), self.field: bool(s >= self.threshold)} for s in self.scores(images)]


def judged(run: Run, images: np.ndarray, data_dir=None) -> list[dict]:
    """What each answer adds: {"ood_score", digit_like (or in_distribution)} per image, by the run's kept detector;
    where it cannot be had (the training set is not cached to choose it on, the folder is read-only), an empty dict
    per image and one warning that says why."""
    from mnistlab.errors import MnistlabError

    try:
        detector = kept_detector(run, data_dir)
    except MnistlabError as exc:
        if run not in _WARNED:
            _WARNED.add(run)
            log.warning("answers carry no ood_score: %s", exc)
        return [{} for _ in range(len(images))]
    return detector.judge(images)


def doubt(field: str) -> str:
    """The words beside an answer that its detector flags."""
    return "does not look like a digit" if field == "digit_like" else "does not look like the training images"


_KEPT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Run -> its Detector, for a server's requests
_CHOOSING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Run -> the lock its first choice is made under
_LOCK = threading.Lock()  # guards the two tables only: a choice (seconds) holds its own run's lock, never this one
_WARNED: weakref.WeakSet = weakref.WeakSet()
log = logging.getLogger("mnistlab")


def kept_detector(run: Run | str | Path, data_dir=None) -> Detector:
    """The run's chosen detector, from its folder, or chosen now and kept there: under the run's own lock in this
    process (other runs' answers go on meanwhile) and a file lock, so two processes that ask at once choose it once."""
    from filelock import FileLock, Timeout

    run = run if isinstance(run, Run) else Run(run)
    run.refuse_across_environments("ood")
    with _LOCK:
        if run in _KEPT:
            return _KEPT[run]
        choosing = _CHOOSING.setdefault(run, threading.Lock())
    with choosing:
        with _LOCK:
            if run in _KEPT:  # chosen by the thread this one waited for
                return _KEPT[run]
        try:
            with FileLock(str(run.path / ".ood.lock"), timeout=600):
                detector = _read_kept(run) or _choose_and_keep(run, data_dir)
        except Timeout:
            raise RunError(f"another process has been choosing {run.path}'s OOD detector for 10 minutes; "
                           "try again when it ends") from None
        except OSError as exc:
            raise RunError(f"{run.path} is not writable ({exc.strerror}): its OOD detector is kept there") from None
        with _LOCK:
            _KEPT[run] = detector
        return detector


def _read_kept(run: Run) -> Detector | None:
    path = run.path / KEPT
    try:
        record = json.loads(path.read_text())
        if record.get("version") != KEPT_VERSION:
            return None
        scorer = Scorer(run)
        if record["detector"] in FEATURE_DETECTORS:
            from safetensors import SafetensorError
            from safetensors.numpy import load_file

            try:
                arrays = load_file(str(run.path / KEPT_FIT))
            except SafetensorError:
                return None
            scorer.fits = [Fit.from_arrays({k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{m}.")})
                           for m in range(len(scorer.leaves))]
        return Detector(scorer, record)
    except (OSError, ValueError, KeyError):
        return None  # absent, or from an older mnistlab, or damaged: chosen again


def _choose_and_keep(run: Run, data_dir) -> Detector:
    from safetensors.numpy import save

    from mnistlab.fileio import atomic_write_bytes, atomic_write_json

    scorer, record = choose_detector(run, data_dir)
    if record["detector"] in FEATURE_DETECTORS:
        arrays = {f"{m}.{k}": np.ascontiguousarray(v) for m, f in enumerate(scorer.fits) for k, v in f.arrays().items()
                  if record["detector"] == "knn" or k != "bank"}  # the bank is 10,000 features: kept for knn only
        atomic_write_bytes(run.path / KEPT_FIT, save(arrays), hint="the run folder must be writable", error=RunError)
    atomic_write_json(run.path / KEPT, record, hint="the run folder must be writable", error=RunError)
    return Detector(scorer, record)


def choose_detector(run: Run, data_dir=None, detectors=None) -> tuple[Scorer, dict]:
    """The scorer (fitted) and the record of the choice: the detector with the best mean AUROC of held-out training
    images against the generated sets (another seed), its threshold, and each candidate's AUROCs."""
    scorer = Scorer(run)
    available, _ = scorer.available()
    candidates = [d for d in (detectors or available) if d in available]
    images, labels, held = training_sample(run, data_dir)
    if any(d in FEATURE_DETECTORS for d in candidates):
        scorer.fit_on(images, labels)
    held_scores = scorer.scores(held, candidates)
    table = {}
    for name in GENERATED:
        others = scorer.scores(generated(name, CHOICE_IMAGES, CHOICE_SEED, held), candidates)
        for d in candidates:
            table.setdefault(d, {})[name] = separation(held_scores[d], others[d])["auroc"]
    best = max(candidates, key=lambda d: (np.mean(list(table[d].values())), -candidates.index(d)))
    threshold = passing_threshold(held_scores[best])
    return scorer, {"version": KEPT_VERSION, "detector": best, "threshold": threshold, "pass_rate_held_out": TPR,
                    "held_out_images": len(held), "chosen_against": list(GENERATED), "choice_seed": CHOICE_SEED,
                    "auroc_held_out": table, "field": field_name(run)}


def measure_ood(run: Run | str | Path, *, against=None, detectors=None, images: int = IMAGES, seed: int = 0,
                resamples: int = 200, out: str | Path | None = None, data_dir=None, write: bool = True) -> dict:
    """Each detector against each set (AUROC, AUPR-in, AUPR-out, FPR95, bootstrap intervals), misclassification
    detection on the test set, the risk-coverage curve of the chosen detector, and the chosen detector."""
    from mnistlab.data import load_dataset

    run = run if isinstance(run, Run) else Run(run)
    run.refuse_across_environments("ood")
    if not run.complete:
        raise RunError(f"{run.path} has not finished training; resume it first: mnistlab train --resume {run.path}")
    if images < 10:
        raise InvalidArgument(f"--images must be at least 10, got {images}")
    dataset = run.config["dataset"]
    sets = choose(dataset, against, data_dir)
    t0 = time.perf_counter()
    chosen = kept_detector(run, data_dir)
    scorer = chosen.scorer
    available, why = scorer.available()
    detectors = _check_detectors(detectors, available, why)
    if any(d in FEATURE_DETECTORS for d in detectors) and scorer.fits is None:
        scorer.fit_on(*training_sample(run, data_dir)[:2])
    test = load_dataset(dataset, "test", data_dir=data_dir)
    x_in, labels = test.images[:images], np.asarray(test.labels[:images])
    s_in = scorer.scores(x_in, detectors)
    right = run.predict_proba(x_in).argmax(1) == labels
    table, histograms = {d: {} for d in detectors}, {}
    for name in sets:
        x_out = (generated(name, len(x_in), seed, x_in) if name in GENERATED
                 else load_dataset(name, "test", data_dir=data_dir).images[:images])
        s_out = scorer.scores(x_out, detectors)
        for d in detectors:
            table[d][name] = with_intervals(s_in[d], s_out[d], resamples=resamples, seed=seed)
        histograms[name] = chosen.scores(x_out) if chosen.name not in s_out else s_out[chosen.name]
    in_chosen = chosen.scores(x_in) if chosen.name not in s_in else s_in[chosen.name]
    result = {"run": str(run.path), "model": run.config["model"], "in_distribution": f"{dataset} test ({len(x_in):,} images)",
              "sets": sets, "detectors": table, "unavailable": why,
              "misclassification": {d: misclassification_auroc(s_in[d], right) for d in detectors},
              "coverage": risk_coverage(in_chosen, right), "chosen": chosen.name, "threshold": chosen.threshold,
              "field": chosen.field, "false_alarm_test": float((in_chosen < chosen.threshold).mean()),
              "choice": chosen.record["auroc_held_out"], "test_accuracy": float(right.mean()), "seed": seed,
              "seconds": time.perf_counter() - t0}
    if write:
        _write(run, result, in_chosen, histograms, out)
    return result


def _check_detectors(detectors, available: list[str], why: str | None) -> list[str]:
    if not detectors:
        return available
    chosen = []
    for d in detectors:
        key = str(d).strip().lower().replace("-", "_")
        if key not in DETECTORS:
            raise InvalidArgument(f"unknown detector {d!r}; known: {', '.join(DETECTORS)}")
        if key not in available:
            raise InvalidArgument(f"detector {key} cannot run on this run: {why}")
        chosen.append(key)
    return list(dict.fromkeys(chosen))


def _write(run: Run, result: dict, in_scores, histograms: dict, out) -> None:
    """ood.json and ood.png into the run folder, and with `out` a copy of both there."""
    from mnistlab.evaluate.plots import ood_picture, to_png

    png = to_png(ood_picture(in_scores, histograms, result["threshold"], result["chosen"], result["coverage"],
                             result["field"]))
    result["picture"] = write_result(run.path, result, RESULT, PICTURE, png, out)


def read_ood(run: Run) -> dict | None:
    """RUN/ood.json as `mnistlab ood` wrote it, or None."""
    return read_result(run.path, RESULT)
