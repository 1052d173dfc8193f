"""`Run`: a run folder read back, its model built (a net, a scikit-learn model, an ensemble's member runs) and its
prediction made, for evaluation, serving, ensembles and sweeps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from mnistlab.config import TrainConfig
from mnistlab.errors import MnistlabError, RunError
from mnistlab.run.files import load_checkpoint
from mnistlab.split import Split, kept_split

# types a scikit-learn run may contain; anything else in a .skops file is refused
SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")
ENSEMBLE = "ensemble"  # the kind of run whose model is its member runs (config.json "kind")


@dataclass(frozen=True)
class DatasetFacts:
    """What a run knows of the data it trained on, beside its settings."""

    classes: list[str]
    input_mean: float  # the training images' pixel mean and std in [0, 1]: the net normalises by them
    input_std: float
    dataset_sha256: dict | None  # the cached files' content checksums, so a result names its exact data
    input_shape: tuple[int, int, int] = (1, 28, 28)  # (channels, height, width) of one image (Colored MNIST: 2 channels)

    @classmethod
    def from_dict(cls, values: dict) -> "DatasetFacts":
        return cls(list(values["classes"]), float(values.get("input_mean", 0.1307)), float(values.get("input_std", 0.3081)),
                   values.get("dataset_sha256"), tuple(values.get("input_shape", (1, 28, 28))))


def build_net(config: dict):
    """The untrained net a run config describes (same factory settings as when it was trained)."""
    from mnistlab.models import create_model

    kwargs = dict(config.get("model_args") or {})
    if config.get("dropout") is not None:
        kwargs["dropout"] = config["dropout"]
    kwargs.setdefault("mean", config.get("input_mean", 0.1307))
    kwargs.setdefault("std", config.get("input_std", 0.3081))
    kwargs.setdefault("input_shape", tuple(config.get("input_shape", (1, 28, 28))))
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


def mean_accuracy(row: dict, names, part: str = "in") -> float:
    """A run across environments' history row: its mean accuracy over these environments' `part` ("in": trained on,
    or tested; "out": held out)."""
    return float(np.mean([row["environments"][n][part] for n in names]))


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

    def refuse_across_environments(self, what: str, grey_ok: bool = False) -> None:
        """One line for a command that reads grey 28x28 digits from a run trained across environments (Colored and
        Rotated MNIST), which it does not take yet; with `grey_ok`, only for runs whose input is not grey 28x28 digits
        (Colored MNIST's two channels): a Rotated MNIST run reads what an MNIST one does."""
        grey = self.facts.input_shape == (1, 28, 28)
        if self.config.get("test_environment") is not None and not (grey_ok and grey):
            raise RunError(f"{self.path} was trained across environments ({self.config['dataset']}); {what} does not "
                           f"read such runs yet: use mnistlab evaluate {self.path} [--split ENVIRONMENT]")

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

        from mnistlab.models import has_convolutions

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
        if has_convolutions(net):
            net = net.to(memory_format=torch.channels_last)
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
        x = _as_unit_float(images, self.config.get("input_shape", (1, 28, 28)))
        if self.kind == ENSEMBLE:
            return np.mean([m.predict_proba(x, batch_size) for m in self.model], axis=0).astype(np.float32)
        if self.kind == "classical":
            return classical_proba(self.model, x.reshape(len(x), -1))
        import torch

        out, net = [], self.calibrated  # loaded outside inference mode: its weights stay ordinary tensors
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                xb = torch.from_numpy(x[i:i + batch_size])
                xb = (xb.unsqueeze(1) if xb.ndim == 3 else xb).contiguous(memory_format=torch.channels_last)
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


def _as_unit_float(images, shape=(1, 28, 28)) -> np.ndarray:
    x = np.asarray(images)
    if tuple(shape) != (1, 28, 28):  # a run on images of other shapes (Colored MNIST: 2 channels) takes exactly those
        if x.ndim != 4 or x.shape[1:] != tuple(shape):
            raise MnistlabError(f"images must have shape (N, {', '.join(map(str, shape))}) for this run, got {x.shape}")
        return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
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
