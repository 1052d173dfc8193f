"""A run folder: `RunFolder`, the one place that makes, locks and writes one, and `Run`, which reads it back.
Training writes run folders through RunFolder; evaluation, serving, ensembles and sweeps read them through Run;
this module uses none of those.

    runs/<date>-<model>-<dataset>/
      config.json        the TrainConfig and the dataset's facts (classes, input mean/std, content checksums);
                         an ensemble's names its kind and members instead
      split.npz          the training images' indices: train, val, calibration (the held-out ones are read, never
                         recomputed; folders from before it existed get theirs recomputed from the seed)
      metrics.jsonl      one line per completed epoch
      curve.jsonl        the training loss and accuracy every few steps (nets; about 64 points a run)
      metrics.json       the final record: test accuracy and loss, temperature and calibration, timings, sizes,
                         versions, data checksums
      model.safetensors  the net's weights (model.skops for scikit-learn models)
      checkpoint.pt      model + optimizer + epoch + history: what --resume needs
      test_probs.npy     float32 (N_test, classes), calibrated: used by evaluation, reports and ensembles
      model_source.py    a model of your own (FILE.py:NAME, package.module:NAME, an entry point): a copy of its file
                         as trained; config.json's model_source says where it came from and the file's sha256, and
                         loading the run imports that file again (refused, in one line, if it moved or changed)
      .lock              held by the process training the run, so a second one cannot train it at once
"""

from __future__ import annotations

import contextlib
import itertools
import json
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from mnistlab.config import TrainConfig
from mnistlab.errors import MnistlabError, RunBusy, RunError
from mnistlab.fileio import atomic_write, atomic_write_json, ensure_dir, storage_error
from mnistlab.split import SPLIT_FILE, Split, kept_split

RUNS_DIR = Path("runs")
RUN_HINT = "pass --out to a writable folder"
# types a scikit-learn run may contain; anything else in a .skops file is refused
SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")
ENSEMBLE = "ensemble"  # the kind of run whose model is its member runs (config.json "kind")


def new_run_dir(out: str | Path | None, model: str, dataset: str) -> Path:
    """The folder for a new run: `out` if given (must be empty or absent), else runs/<date>-<model>-<dataset>
    (made here, with a suffix -2, -3... when another run took the name in the same second)."""
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(p.name != ".lock" for p in path.iterdir())):
            raise RunError(f"{path} already exists and is not an empty folder; choose another --out or use --resume {path}")
        return ensure_dir(path, RUN_HINT, RunError)
    from mnistlab.models.reference import label

    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{label(model)}-{dataset}"
    ensure_dir(RUNS_DIR, RUN_HINT, RunError)
    for n in itertools.count(1):
        path = RUNS_DIR / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
        except OSError as exc:
            raise storage_error(exc, RUNS_DIR, RUN_HINT, RunError) from None
    raise AssertionError("unreachable")


def _take_lock(run_dir: Path, new: bool = False):
    """The run folder's lock, held: a second process that tries to train (or resume) the same run fails at once,
    before reading or writing anything. The operating system frees the lock when its process dies, so a run killed
    with kill -9 can be resumed. `new`: the folder must still be empty once locked (another process may have
    started a run in it in the meantime)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(run_dir / ".lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunBusy(f"{run_dir} is busy: another mnistlab process is training it right now; wait for it to end "
                      f"(or stop it), then mnistlab train --resume {run_dir}") from None
    except OSError as exc:
        raise storage_error(exc, run_dir, RUN_HINT, RunError) from None
    if new and any(p.name != ".lock" for p in run_dir.iterdir()):
        lock.release()
        raise RunError(f"{run_dir} was just taken by another run; choose another --out")
    return lock


@contextlib.contextmanager
def run_lock(run_dir: Path, new: bool = False) -> Iterator[None]:
    """Hold a run folder's lock for the length of a `with` block (see `_take_lock`)."""
    lock = _take_lock(run_dir, new)
    try:
        yield
    finally:
        lock.release()


@dataclass(frozen=True)
class DatasetFacts:
    """What a run knows of the data it trained on, beside its settings."""

    classes: list[str]
    input_mean: float  # the training images' pixel mean and std in [0, 1]: the net normalises by them
    input_std: float
    dataset_sha256: dict | None  # the cached files' content checksums, so a result names its exact data

    @classmethod
    def from_dict(cls, values: dict) -> "DatasetFacts":
        return cls(list(values["classes"]), float(values.get("input_mean", 0.1307)), float(values.get("input_std", 0.3081)),
                   values.get("dataset_sha256"))


def config_record(cfg: TrainConfig, facts: DatasetFacts, world_size: int | None = None, source: dict | None = None) -> dict:
    """config.json of a trained run: its settings, the dataset's facts, the augmentation as resolved (for readers), and
    for a model not of the zoo, where it came from (models/reference.py's Origin)."""
    from mnistlab.vocabulary import parse_augment

    record = {**cfg.to_dict(), "classes": list(facts.classes), "input_mean": facts.input_mean, "input_std": facts.input_std,
              "augment_resolved": parse_augment(cfg.augment).__dict__, "dataset_sha256": facts.dataset_sha256}
    if source is not None:
        record["model_source"] = source
    return {**record, "world_size": world_size} if world_size else record


def model_source(model: str) -> dict | None:
    """Where a model not of the zoo comes from, to record in a new run (None for the zoo's)."""
    from mnistlab.models import get_model_info

    return get_model_info(model).origin


class RunFolder:
    """A run folder being written: made (or reopened to resume) and locked in one place, by this process, until
    `close`; it holds the run's TrainConfig and dataset facts, keeps its split, and writes each epoch and the final
    files atomically. A process of a distributed run other than rank 0 holds a view (`lock=None`) and writes nothing."""

    def __init__(self, path: Path, cfg: TrainConfig, facts: DatasetFacts, *, lock=None, world_size: int | None = None,
                 finished: bool = False, source: dict | None = None):
        self.path, self.cfg, self.facts, self._lock, self.world_size = Path(path), cfg, facts, lock, world_size
        self.finished = finished  # it held its final files when opened: nothing left to train
        self.source = source  # where a model not of the zoo came from, as recorded when the run began

    @classmethod
    def create(cls, out, cfg: TrainConfig, facts: DatasetFacts, split: Split, world_size: int | None = None) -> "RunFolder":
        """A new run's folder: made, locked, its config and split written."""
        source = model_source(cfg.model)
        path = new_run_dir(out, cfg.model, cfg.dataset)
        folder = cls(path, cfg, facts, lock=_take_lock(path, new=True), world_size=world_size, source=source)
        try:
            if source is not None and source.get("file"):  # the code as trained, beside the weights it made
                code = Path(source["file"]).read_bytes()
                atomic_write(path / "model_source.py", lambda fh: fh.write(code), hint=RUN_HINT, error=RunError)
            folder._write_json("config.json", folder.record())
            atomic_write(path / SPLIT_FILE, lambda fh: np.savez_compressed(fh, **split.arrays()), hint=RUN_HINT, error=RunError)
        except BaseException:
            folder.close()
            raise
        return folder

    @classmethod
    def reopen(cls, path: str | Path) -> "RunFolder":
        """An existing run's folder, locked before its checkpoint or metrics are looked at (to resume it)."""
        run = Run(path)
        run.check_source()
        lock = _take_lock(Path(path))
        return cls(Path(path), run.settings, run.facts, lock=lock, world_size=run.config.get("world_size"),
                   finished=run.complete, source=run.source)

    @classmethod
    def view(cls, path: str, record: dict, finished: bool) -> "RunFolder":
        """Rank 0's folder as another process of a distributed run sees it: its settings, never its files."""
        return cls(Path(path), TrainConfig.from_dict(record), DatasetFacts.from_dict(record),
                   world_size=record.get("world_size"), finished=finished, source=record.get("model_source"))

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self) -> dict:
        return config_record(self.cfg, self.facts, self.world_size, self.source)

    def split(self, train_labels: np.ndarray, neural: bool) -> Split:
        """The split it keeps (see split.kept_split)."""
        return kept_split(self.path, train_labels, self.cfg, len(self.facts.classes), neural)

    def last_checkpoint(self) -> dict | None:
        path = self.path / "checkpoint.pt"
        return load_checkpoint(path) if path.exists() else None

    def save_epoch(self, history: list[dict], curve: list[dict], checkpoint: dict | None = None) -> None:
        """An epoch's checkpoint (what a resume starts from), then its rows and points: the rows never claim an
        epoch that the checkpoint lacks (a full disk between the two leaves the rows one epoch behind, and a resume
        writes them again from the checkpoint)."""
        if checkpoint is not None:
            save_torch(self.path / "checkpoint.pt", checkpoint)
        append_jsonl(self.path / "metrics.jsonl", history)
        if curve:
            append_jsonl(self.path / "curve.jsonl", curve)

    def save_weights(self, state: dict) -> None:
        from safetensors.torch import save

        atomic_write(self.path / "model.safetensors", lambda fh: fh.write(save(state)), hint=RUN_HINT, error=RunError)

    def save_estimator(self, est) -> None:
        import skops.io as sio

        atomic_write(self.path / "model.skops", lambda fh: fh.write(sio.dumps(est)), hint=RUN_HINT, error=RunError)

    def save_test_probs(self, probs: np.ndarray) -> None:
        atomic_write(self.path / "test_probs.npy", lambda fh: np.save(fh, probs.astype(np.float32), allow_pickle=False),
                     hint=RUN_HINT, error=RunError)

    def save_metrics(self, metrics: dict) -> "Run":
        """The final record, written last: a folder with metrics.json is a finished run."""
        self._write_json("metrics.json", metrics)
        return Run(self.path)

    def _write_json(self, name: str, obj) -> None:
        write_json(self.path / name, obj)


def versions() -> dict:
    """Versions of what a run used, read from the installed packages' metadata (importing scikit-learn
    just to ask would cost a second and a half)."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    v = {"mnistlab": __import__("mnistlab").__version__, "python": platform.python_version(), "numpy": np.__version__,
         "torch": torch.__version__}
    try:
        v["scikit-learn"] = version("scikit-learn")
    except PackageNotFoundError:
        pass
    return v


def write_json(path: Path, obj) -> None:
    atomic_write_json(path, obj, hint=RUN_HINT, error=RunError)


def append_jsonl(path: Path, rows: list[dict]) -> None:
    """Rewrite the whole metrics.jsonl atomically: a crash never leaves half a line."""
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
    atomic_write(path, lambda fh: fh.write(data), hint=RUN_HINT, error=RunError)


def save_torch(path: Path, obj) -> None:
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh), hint=RUN_HINT, error=RunError)


def load_checkpoint(path: Path) -> dict:
    """A checkpoint, loaded with weights_only=True: tensors and plain data only, never code."""
    import torch

    if not path.exists():
        raise RunError(f"{path} not found: the run has no completed epoch to resume from; start it again")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged or foreign file
        raise RunError(f"{path} is damaged or not a mnistlab checkpoint ({type(exc).__name__}); start the run again") from None
    if not isinstance(ckpt, dict) or not {"model", "epoch", "history"} <= set(ckpt):
        raise RunError(f"{path} is not a mnistlab checkpoint (missing model/epoch/history)")
    return ckpt


def build_net(config: dict):
    """The untrained net a run config describes (same factory settings as when it was trained)."""
    from mnistlab.models import create_model

    kwargs = dict(config.get("model_args") or {})
    if config.get("dropout") is not None:
        kwargs["dropout"] = config["dropout"]
    kwargs.setdefault("mean", config.get("input_mean", 0.1307))
    kwargs.setdefault("std", config.get("input_std", 0.3081))
    return create_model(config["model"], num_classes=len(config["classes"]), **kwargs)


def classical_proba(est, x: np.ndarray) -> np.ndarray:
    """Probabilities from a scikit-learn classifier; for SVMs without them, a softmax of the
    decision function (monotone in it, so the argmax is the SVM's own choice, but not calibrated)."""
    if hasattr(est, "predict_proba"):
        try:
            return est.predict_proba(x).astype(np.float32)
        except AttributeError:  # SVC(probability=False) has the method but refuses
            pass
    d = np.asarray(est.decision_function(x), dtype=np.float64)
    if d.ndim == 1:
        d = np.stack([-d, d], 1)
    d -= d.max(1, keepdims=True)
    e = np.exp(d)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path.parent} has no {path.name}: not a mnistlab run folder, or {what}") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path} is unreadable or damaged ({exc}); {what}") from None


class Run:
    """A trained (or partly trained) run, read from its folder.

    >>> run = mnistlab.load_run("runs/20261125-120000-cnn-mnist")
    >>> run.metrics["test_accuracy"], run.predict(images[:5])
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise RunError(f"run folder {self.path} not found")
        self.config: dict = _read_json(self.path / "config.json", "the run crashed before it started")
        if not isinstance(self.config, dict) or "model" not in self.config or "dataset" not in self.config:
            raise RunError(f"{self.path / 'config.json'} is not a mnistlab run config (no model/dataset)")

    def __repr__(self) -> str:
        acc = self.metrics.get("test_accuracy") if self.complete else None
        return f"Run({str(self.path)!r}, model={self.config['model']!r}, dataset={self.config['dataset']!r}, test_accuracy={acc})"

    @property
    def complete(self) -> bool:
        return (self.path / "metrics.json").exists()

    @cached_property
    def metrics(self) -> dict:
        return _read_json(self.path / "metrics.json", "the run did not finish: resume it with mnistlab train --resume")

    @property
    def history(self) -> list[dict]:
        """One row per completed epoch (metrics.jsonl)."""
        return _read_jsonl(self.path / "metrics.jsonl")

    @property
    def curve(self) -> list[dict]:
        """Training loss and accuracy every few steps (curve.jsonl); empty for runs written before it existed."""
        return _read_jsonl(self.path / "curve.jsonl")

    @property
    def temperature(self) -> float:
        """The temperature fitted after training (1.0 for runs without one, or not finished)."""
        return float(self.metrics.get("temperature", 1.0)) if self.complete and self.kind == "neural" else 1.0

    @property
    def classes(self) -> list[str]:
        return list(self.config["classes"])

    @property
    def kind(self) -> str:
        """neural, classical or ensemble (a run whose model is its members; written by `mnistlab ensemble`): a run has
        a kind, its model (ModelInfo) a family, neural or classical."""
        if self.config.get("kind") == ENSEMBLE or self.config["model"] == ENSEMBLE:  # the second: folders of before
            return ENSEMBLE
        if self.source is not None:  # known without importing the model's code
            return self.source["family"]
        from mnistlab.models import get_model_info

        return get_model_info(self.config["model"]).family

    @property
    def source(self) -> dict | None:
        """Where a model not of the zoo came from (config.json's model_source; models/reference.py); None for the zoo."""
        return self.config.get("model_source")

    def check_source(self) -> None:
        """Refuse, in one line, to rebuild a model whose source file moved or changed since the run was trained."""
        if self.source is not None:
            from mnistlab.models.reference import check_recorded

            check_recorded(self.source, str(self.path))

    @cached_property
    def settings(self) -> TrainConfig:
        """The TrainConfig it was trained with (an ensemble has none)."""
        if self.kind == ENSEMBLE:
            raise RunError(f"{self.path} is an ensemble: its members have settings, it has none")
        return TrainConfig.from_dict(self.config)

    @cached_property
    def facts(self) -> DatasetFacts:
        return DatasetFacts.from_dict(self.config)

    def split(self, train_labels: np.ndarray | None = None) -> Split:
        """How it divided the training images (see split.kept_split; a folder from before needs `train_labels`)."""
        return kept_split(self.path, train_labels, self.settings, len(self.classes), self.kind == "neural")

    @cached_property
    def model(self):
        """The trained model: an nn.Module in eval mode, a scikit-learn estimator, or a list of member Runs."""
        if self.kind == ENSEMBLE:
            return [Run(p) for p in self.config["members"]]
        if self.kind == "classical":
            return self._load_skops()
        return self._load_net()

    @cached_property
    def predictor(self):
        """A net as it predicts: with the test-time augmentation it was evaluated with (mnistlab/tta.py);
        other kinds of model as they are."""
        if self.kind != "neural":
            return self.model
        from mnistlab.tta import with_tta

        return with_tta(self.model, self.config.get("tta"))

    @property
    def calibrated(self):
        """A net's predictor giving calibrated probabilities: softmax(logits / T) (mnistlab/calibration.py), as
        `predict_proba` and the exports compute them (a light wrapper, made anew: a benchmark may swap the predictor)."""
        from mnistlab.calibration import calibrated

        return calibrated(self.predictor, self.temperature)

    def _load_net(self):
        import torch

        self.check_source()
        net = build_net(self.config)
        weights = self.path / "model.safetensors"
        if weights.exists():
            from safetensors.torch import load_file

            try:
                state = load_file(str(weights))
            except Exception as exc:
                raise RunError(f"{weights} is damaged ({type(exc).__name__}); retrain or resume the run") from None
        else:  # a run stopped before its end: its last completed epoch
            state = load_checkpoint(self.path / "checkpoint.pt")["model"]
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise RunError(f"{weights} does not fit model {self.config['model']!r}: {str(exc).splitlines()[0]}") from None
        if any(isinstance(m, torch.nn.Conv2d) for m in net.modules()):
            net = net.to(memory_format=torch.channels_last)  # about 2x faster convolutions on CPU too
        return net.eval()

    def _load_skops(self):
        import skops.io as sio

        trusted = SKOPS_TRUSTED_PREFIXES
        if self.source is not None:  # an estimator of your own: its module is trusted as its reference is
            from mnistlab.models import get_model_info

            self.check_source()
            trusted += (getattr(get_model_info(self.config["model"]).factory, "__module__", "") + ".",)
        path = self.path / "model.skops"
        if not path.exists():
            raise RunError(f"{path} not found: the run did not finish; train it again")
        try:
            untrusted = sio.get_untrusted_types(file=path)
            bad = [t for t in untrusted if not t.startswith(trusted)]
            if bad:
                raise RunError(f"{path} contains types mnistlab does not load: {', '.join(bad[:3])}")
            return sio.load(path, trusted=untrusted)
        except RunError:
            raise
        except Exception as exc:
            raise RunError(f"{path} is damaged or not a scikit-learn model ({type(exc).__name__})") from None

    def predict_proba(self, images: np.ndarray, batch_size: int = 2000) -> np.ndarray:
        """Class probabilities, float32 (N, classes), for uint8 images (N, 28, 28) in 0..255 or floats in [0, 1];
        a net's are calibrated by its temperature, an ensemble's are the mean of its members' calibrated ones."""
        x = _as_unit_float(images)
        if self.kind == ENSEMBLE:
            return np.mean([m.predict_proba(x, batch_size) for m in self.model], axis=0).astype(np.float32)
        if self.kind == "classical":
            return classical_proba(self.model, x.reshape(len(x), -1))
        import torch

        out, net = [], self.calibrated  # loaded outside inference mode: its weights stay ordinary tensors
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                xb = torch.from_numpy(x[i:i + batch_size]).unsqueeze(1).contiguous(memory_format=torch.channels_last)
                out.append(net(xb).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted class indices (int64) for images (see `predict_proba`)."""
        return self.predict_proba(images).argmax(1)

    def test_probs(self) -> np.ndarray:
        p = self.path / "test_probs.npy"
        if not p.exists() and self.config.get("evaluate_test") is False:
            raise RunError(f"{self.path} was trained without looking at the test set (a sweep trial), so it has no "
                           f"test_probs.npy; mnistlab evaluate {self.path} predicts the test set")
        try:
            return np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise RunError(f"{p} is missing or damaged ({exc}); the run did not finish") from None


def leaf_runs(run: Run) -> list[Run]:
    """The runs whose models make `run`'s prediction: the run itself, or an ensemble's members with nested ensembles
    flattened (what explain and robustness look inside; each decides what to do with a member that is no net)."""
    if run.kind != ENSEMBLE:
        return [run]
    return [leaf for member in run.model for leaf in leaf_runs(member)]


def _as_unit_float(images) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise MnistlabError(f"images must have shape (N, 28, 28), got {x.shape}; bring them into MNIST form first")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if x.size and (x.min() < 0 or x.max() > 1.0001):
        raise MnistlabError(f"float images must be in [0, 1], got {x.min():.3g}..{x.max():.3g}; pass uint8 0..255 or scale them")
    return x


def accept_source(path: str | Path, new_file: str | Path | None = None) -> dict:
    """Accept the code of a run's own model as it is now, or in a new place (`new_file`): its record takes the file's
    sha256 of today, the one it was trained with kept under `accepted`. The model must still build and take the run's
    weights, or nothing is written. Returns the new `model_source`."""
    from mnistlab.models.reference import file_sha256, moved

    path = Path(path)
    with run_lock(path):
        run = Run(path)
        if run.kind == ENSEMBLE:
            raise RunError(f"{path} is an ensemble: accept the source of each member run instead")
        if run.source is None:
            raise RunError(f"{path} trained the zoo's model {run.config['model']!r}: it has no source of its own to accept")
        old = run.source
        new = moved(old, new_file) if new_file is not None else dict(old)
        if new.get("file"):
            new["sha256"] = file_sha256(new["file"])
        new["accepted"] = [*old.get("accepted", []), {"file": old.get("file"), "sha256": old.get("sha256"),
                                                      "date": time.strftime("%Y-%m-%d %H:%M:%S")}]
        record = {**run.config, "model_source": new, **({"model": new["reference"]} if new["kind"] == "file" else {})}
        trial = Run(path)
        trial.config = record
        trial.model  # noqa: B018  builds the model from the new code and loads the weights, or raises
        write_json(path / "config.json", record)
    return new


def load_run(path: str | Path) -> Run:
    """Open a run folder written by `mnistlab train`."""
    return Run(path)
