"""Models are found by name: `@register_model` on a factory, `create_model(name)`, `list_models("cnn*")`.

Each entry records what a user needs to choose: family, a one-line description, the reference it
reproduces, and the training settings that suit it (used as defaults by `mnistlab train`). Beside the zoo: the
models installed packages publish (entry points) and any model named by reference, FILE.py:NAME or
package.module:NAME (mnistlab/models/reference.py).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mnistlab.errors import MnistlabError, UnknownName

log = logging.getLogger("mnistlab")

FAMILIES = ("neural", "classical")  # an ensemble is a kind of run (mnistlab/run.py), not a model


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str  # "neural" (PyTorch) or "classical" (scikit-learn)
    factory: Callable
    description: str
    reference: str
    defaults: dict = field(default_factory=dict)  # training settings that suit this model
    origin: dict | None = None  # where a model not of the zoo came from (reference.Origin); None for the zoo


_REGISTRY: dict[str, ModelInfo] = {}
_PLUGINS: dict[str, ModelInfo] | None = None  # the entry points, loaded on first need


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
    from mnistlab.models import classical, cnn, mlp, resnet, shift, simple, speed  # noqa: F401


def plugins() -> dict[str, ModelInfo]:
    """The models of installed packages (entry-point group `mnistlab.models`), except any named like a zoo model."""
    global _PLUGINS
    if _PLUGINS is None:
        _ensure_loaded()
        from mnistlab.models.reference import entry_point_models

        found = entry_point_models()
        for name in sorted(set(found) & set(_REGISTRY)):
            log.warning("model %r of %s is named like a zoo model and is not used; its package must rename it", name,
                        found.pop(name).origin.get("distribution"))
        _PLUGINS = found
    return _PLUGINS


def get_model_info(name) -> ModelInfo:
    """A zoo model, an installed package's, or one named by reference (FILE.py:NAME, package.module:NAME)."""
    from mnistlab.models import reference

    _ensure_loaded()
    if not isinstance(name, str):  # a class or factory handed to the Python API
        name = reference.reference_of(name)
    if name in _REGISTRY:
        return _REGISTRY[name]
    if reference.is_reference(name):
        return reference.resolve(name)
    if name in plugins():
        return plugins()[name]
    raise UnknownName("model", name, [*_REGISTRY, *plugins()])


def list_models(pattern: str = "*", family: str | None = None) -> list[str]:
    """Names of the zoo's and installed packages' models matching a glob pattern (e.g. "cnn*"), optionally of one family."""
    _ensure_loaded()
    every = {**_REGISTRY, **plugins()}
    return [n for n, info in every.items() if fnmatch.fnmatch(n, pattern) and (family is None or info.family == family)]


def create_model(name, num_classes: int = 10, **kwargs):
    """Build a fresh, untrained model: an `nn.Module` (neural) or a scikit-learn estimator (classical). The dataset's
    `mean` and `std`, when given, reach only a factory that names them."""
    from mnistlab.models.reference import call_factory

    info = get_model_info(name)
    if num_classes < 2:
        raise MnistlabError(f"num_classes must be at least 2, got {num_classes}")
    return call_factory(info.factory, num_classes, kwargs, info.name)
