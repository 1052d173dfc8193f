"""Models are found by name: `@register_model` on a factory, `create_model(name)`, `list_models("cnn*")`.

Each entry records what a user needs to choose: family, a one-line description, the reference it
reproduces, and the training settings that suit it (used as defaults by `mnistlab train`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field

from mnistlab.errors import MnistlabError, UnknownName

FAMILIES = ("neural", "classical")  # an ensemble is a kind of run (mnistlab/run.py), not a model


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str  # "neural" (PyTorch) or "classical" (scikit-learn)
    factory: Callable
    description: str
    reference: str
    defaults: dict = field(default_factory=dict)  # training settings that suit this model


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, family: str, description: str, reference: str = "", defaults: dict | None = None):
    """Decorator: add a factory `f(num_classes, **kw)` to the registry under `name` (duplicates are an error)."""
    if family not in FAMILIES:
        raise MnistlabError(f"model family {family!r} is not one of {', '.join(FAMILIES)}")

    def wrap(factory: Callable) -> Callable:
        if name in _REGISTRY:
            raise MnistlabError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(name, family, factory, description, reference, dict(defaults or {}))
        return factory

    return wrap


def _ensure_loaded() -> None:
    # The model modules register themselves; import them here so a lookup never depends on import order.
    from mnistlab.models import classical, cnn, mlp, resnet, simple, speed  # noqa: F401


def get_model_info(name: str) -> ModelInfo:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise UnknownName("model", name, _REGISTRY)
    return _REGISTRY[name]


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Names of registered models matching a glob pattern (e.g. "cnn*"), optionally of one family."""
    _ensure_loaded()
    return [n for n, info in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (family is None or info.family == family)]


def create_model(name: str, num_classes: int = 10, **kwargs):
    """Build a fresh, untrained model: an `nn.Module` (neural) or a scikit-learn estimator (classical)."""
    info = get_model_info(name)
    if num_classes < 2:
        raise MnistlabError(f"num_classes must be at least 2, got {num_classes}")
    try:
        return info.factory(num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise MnistlabError(f"model {name!r} does not take these settings: {exc}") from None
    except ValueError as exc:
        settings = {k: v for k, v in kwargs.items() if k not in ("mean", "std")}  # the ones a user gives
        raise MnistlabError(f"model {name!r} cannot be built with {settings}: {exc}") from None
