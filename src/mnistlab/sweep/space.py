"""The search space of a sweep: which training settings vary, over what range, and which stay fixed.

A space file is TOML:

    [fixed]                  # any training setting, the same in every trial
    epochs = 3

    [params.lr]              # a float range; log = true samples it on a log scale
    low = 1e-4
    high = 1e-2
    log = true

    [params.batch_size]      # a choice
    choices = [64, 128, 256]

    [params.rotate]          # augmentation strengths are parameters too (see training/augment.py)
    low = 0
    high = 15
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mnistlab.config import OPTIMIZERS
from mnistlab.errors import InvalidArgument, MnistlabError, UnknownName
from mnistlab.fileio import read_toml
from mnistlab.vocabulary import SCHEDULES, Augment

# what a trial may vary, and its type: training settings, then augmentation strengths
TRAIN_PARAMS = {"lr": float, "batch_size": int, "weight_decay": float, "dropout": float, "label_smoothing": float,
                "epochs": int, "optimizer": str, "schedule": str,
                # across environments (Colored and Rotated MNIST)
                "steps": int, "penalty_weight": float, "penalty_anneal": int, "l2_weight": float,
                # from few labels
                "threshold": float, "unlabelled_weight": float, "unlabelled_ratio": int, "rampup": int}
AUGMENT_PARAMS = {name: float for name in Augment.__dataclass_fields__}
PARAM_TYPES = {**TRAIN_PARAMS, **AUGMENT_PARAMS}
# bounds a sampled value must respect, whatever the space file says
LIMITS = {"dropout": (0, 0.95), "label_smoothing": (0, 0.95), "elastic": (0, 1), "erase": (0, 1)}


@dataclass(frozen=True)
class Param:
    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None

    def suggest(self, trial):
        """The value of this parameter for an Optuna trial."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if PARAM_TYPES[self.name] is int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log, step=self.step)


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]
    fixed: dict

    def to_dict(self) -> dict:
        return {"params": {p.name: {k: v for k, v in asdict(p).items() if k != "name" and v not in (None, False)}
                           for p in self.params},
                "fixed": dict(self.fixed)}

    def key(self) -> str:
        """A canonical text of the space: a study keeps it and refuses a different one."""
        return json.dumps(self.to_dict(), sort_keys=True, default=list)

    def settings(self, values: dict) -> dict:
        """Training settings for one trial: the fixed ones, then the sampled values, augmentation
        strengths folded into one `augment` string on top of the fixed preset."""
        settings = dict(self.fixed)
        aug = [f"{k}={v:g}" for k, v in values.items() if k in AUGMENT_PARAMS]
        settings.update({k: v for k, v in values.items() if k not in AUGMENT_PARAMS})
        if aug:
            settings["augment"] = ",".join([str(self.fixed.get("augment", "none")), *aug])
        return settings


def parse_param(name: str, spec) -> Param:
    where = f"search-space parameter {name!r}"
    if name not in PARAM_TYPES:
        raise UnknownName("search-space parameter", name, PARAM_TYPES)
    if not isinstance(spec, dict):
        raise InvalidArgument(f"{where} must be a table with low/high or choices, got {spec!r}")
    unknown = set(spec) - {"low", "high", "log", "step", "choices"}
    if unknown:
        raise UnknownName(f"key in {where}", sorted(unknown)[0], ("low", "high", "log", "step", "choices"))
    kind = PARAM_TYPES[name]
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise InvalidArgument(f"{where} has an empty list of choices; give at least one value")
        for c in choices:
            _check_value(name, c)
        return Param(name, choices=tuple(choices))
    if kind is str:
        raise InvalidArgument(f"{where} is a name: give choices = [...], not a range")
    if "low" not in spec or "high" not in spec:
        raise InvalidArgument(f"{where} needs low and high (or choices)")
    low, high, log, step = spec["low"], spec["high"], bool(spec.get("log", False)), spec.get("step")
    for v in (low, high):
        _check_value(name, v)
    if not low < high:
        raise InvalidArgument(f"{where} has an empty range: low {low} must be below high {high}")
    if log and low <= 0:
        raise InvalidArgument(f"{where} is on a log scale, so low must be > 0 (got {low})")
    if step is not None and (not isinstance(step, (int, float)) or step <= 0 or log):
        raise InvalidArgument(f"{where}: step must be a number > 0 and cannot go with log = true")
    return Param(name, low=low, high=high, log=log, step=step)


def _check_value(name: str, value) -> None:
    kind = PARAM_TYPES[name]
    ok = isinstance(value, str) if kind is str else (isinstance(value, (int, float)) and not isinstance(value, bool)
                                                   and (kind is not int or float(value).is_integer()))
    if not ok:
        raise InvalidArgument(f"search-space parameter {name!r}: {value!r} is not a {kind.__name__}")
    if kind is str:
        allowed = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES}[name]
        if value not in allowed:
            raise UnknownName(f"{name} in the search space", value, allowed)
        return
    lo, hi = LIMITS.get(name, (0, float("inf")))
    if not lo <= value <= hi:
        raise InvalidArgument(f"search-space parameter {name!r}: {value} is outside [{lo}, {hi}]")
    if name in ("batch_size", "epochs") and value < 1 or name == "lr" and value <= 0:
        raise InvalidArgument(f"search-space parameter {name!r}: {value} is not allowed (must be > 0)")


def parse_space(data: dict, where: str = "search space") -> SearchSpace:
    unknown = set(data) - {"params", "fixed"}
    if unknown:
        raise UnknownName(f"table in {where}", sorted(unknown)[0], ("params", "fixed"))
    params = data.get("params", {})
    if not isinstance(params, dict) or not params:
        raise InvalidArgument(f"{where} has no [params.NAME] tables: nothing to search")
    fixed = data.get("fixed", {})
    clash = set(fixed) & set(params)
    if clash:
        raise InvalidArgument(f"{where}: {sorted(clash)[0]!r} is both fixed and searched; keep one")
    return SearchSpace(tuple(parse_param(n, s) for n, s in sorted(params.items())), dict(fixed))


def load_space(path: str | Path) -> SearchSpace:
    return parse_space(read_toml(path, "search space"), str(path))


def default_space(model: str) -> SearchSpace:
    """A space around the model's own tuned defaults: learning rate within 4x either way, batch size,
    weight decay, label smoothing, dropout (where the model has it), augmentation strengths and epochs."""
    from mnistlab.models import get_model_info

    info = get_model_info(model)
    if info.family != "neural":
        raise InvalidArgument(f"sweeps tune the training of neural nets; {model!r} is a {info.family} model")
    d = info.defaults
    lr, epochs = float(d.get("lr", 1e-3)), int(d.get("epochs", 5))
    params = {
        "lr": {"low": lr / 4, "high": lr * 4, "log": True},
        "batch_size": {"choices": [64, 128, 256]},
        "weight_decay": {"low": 1e-6, "high": 1e-3, "log": True},
        "label_smoothing": {"low": 0.0, "high": 0.2},
        "rotate": {"low": 0.0, "high": 15.0},
        "shift": {"low": 0.0, "high": 0.15},
        "scale": {"low": 0.0, "high": 0.2},
        "elastic": {"low": 0.0, "high": 0.5},
    }
    if _takes_dropout(model):
        params["dropout"] = {"low": 0.0, "high": 0.5}
    if epochs > 1:
        params["epochs"] = {"low": max(1, epochs // 2), "high": epochs}
    return parse_space({"params": params, "fixed": {"augment": "none"}})


def _takes_dropout(model: str) -> bool:
    from mnistlab.models import create_model

    try:
        create_model(model, dropout=0.1)
        return True
    except MnistlabError:
        return False
