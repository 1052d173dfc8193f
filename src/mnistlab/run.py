"""A run folder: the `Run` object that reads it back, its writers, its lock, and the net its config
describes. Training writes run folders; evaluation, serving, ensembles and sweeps read them; this
module uses none of those.

    runs/<date>-<model>-<dataset>/
      config.json        the resolved TrainConfig (plus dataset classes and input mean/std)
      metrics.jsonl      one line per completed epoch
      curve.jsonl        the training loss and accuracy every few steps (nets; about 64 points a run)
      metrics.json       the final record: test accuracy and loss, temperature and calibration, timings, sizes,
                         versions, data checksums
      model.safetensors  the net's weights (model.skops for scikit-learn models)
      checkpoint.pt      model + optimizer + epoch + history: what --resume needs
      test_probs.npy     float32 (N_test, classes): used by evaluation, reports and ensembles
      .lock              held by the process training the run, so a second one cannot train it at once
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

import numpy as np

from mnistlab.errors import MnistlabError, RunBusy, RunError
from mnistlab.fileio import atomic_write, atomic_write_json, ensure_dir, storage_error

RUNS_DIR = Path("runs")
RUN_HINT = "pass --out to a writable folder"
# types a scikit-learn run may contain; anything else in a .skops file is refused
SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


def new_run_dir(out: str | Path | None, model: str, dataset: str) -> Path:
    """The folder for a new run: `out` if given (must be empty or absent), else runs/<date>-<model>-<dataset>
    (made here, with a suffix -2, -3... when another run took the name in the same second)."""
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(p.name != ".lock" for p in path.iterdir())):
            raise RunError(f"{path} already exists and is not an empty folder; choose another --out or use --resume {path}")
        return ensure_dir(path, RUN_HINT, RunError)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{model}-{dataset}"
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


@contextlib.contextmanager
def run_lock(run_dir: Path, new: bool = False) -> Iterator[None]:
    """Hold the run folder's lock while training it: a second process that tries to train (or resume)
    the same run fails at once, before reading or writing anything. The operating system frees the
    lock when its process dies, so a run killed with kill -9 can be resumed. `new`: the folder must
    still be empty once locked (another process may have started a run in it in the meantime)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(run_dir / ".lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunBusy(f"{run_dir} is busy: another mnistlab process is training it right now; wait for it to end "
                      f"(or stop it), then mnistlab train --resume {run_dir}") from None
    except OSError as exc:
        raise storage_error(exc, run_dir, RUN_HINT, RunError) from None
    try:
        if new and any(p.name != ".lock" for p in run_dir.iterdir()):
            raise RunError(f"{run_dir} was just taken by another run; choose another --out")
        yield
    finally:
        lock.release()


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
        return float(self.metrics.get("temperature", 1.0)) if self.complete and self.family == "neural" else 1.0

    @property
    def classes(self) -> list[str]:
        return list(self.config["classes"])

    @property
    def family(self) -> str:
        from mnistlab.models import get_model_info

        return get_model_info(self.config["model"]).family

    @cached_property
    def model(self):
        """The trained model: an nn.Module in eval mode, a scikit-learn estimator, or a list of member Runs."""
        if self.family == "ensemble":
            return [Run(p) for p in self.config["members"]]
        if self.family == "classical":
            return self._load_skops()
        return self._load_net()

    @cached_property
    def predictor(self):
        """A net as it predicts: with the test-time augmentation it was evaluated with (mnistlab/tta.py);
        other kinds of model as they are."""
        if self.family != "neural":
            return self.model
        from mnistlab.tta import with_tta

        return with_tta(self.model, self.config.get("tta"))

    def _load_net(self):
        import torch

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

        path = self.path / "model.skops"
        if not path.exists():
            raise RunError(f"{path} not found: the run did not finish; train it again")
        try:
            untrusted = sio.get_untrusted_types(file=path)
            bad = [t for t in untrusted if not t.startswith(SKOPS_TRUSTED_PREFIXES)]
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
        if self.family == "ensemble":
            return np.mean([m.predict_proba(x, batch_size) for m in self.model], axis=0).astype(np.float32)
        if self.family == "classical":
            return classical_proba(self.model, x.reshape(len(x), -1))
        import torch

        out, net, temperature = [], self.predictor, self.temperature  # loaded outside inference mode: its weights stay ordinary tensors
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                xb = torch.from_numpy(x[i:i + batch_size]).unsqueeze(1).contiguous(memory_format=torch.channels_last)
                out.append(torch.softmax(net(xb).float() / temperature, 1).numpy())
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


def load_run(path: str | Path) -> Run:
    """Open a run folder written by `mnistlab train`."""
    return Run(path)
