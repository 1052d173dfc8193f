"""Models of your own, named by reference: `path/to/file.py:Name`, `package.module:Name`, the object itself
(`mnistlab.train(model=MyNet)`), or an entry point in the group `mnistlab.models` that an installed package declares.

They resolve here, in one place, and every failure is one line (ModelSourceError): no such file or module, no such
name, not a model, a source that changed since a run was trained on it. NAME is an `nn.Module` subclass, a factory
`f(num_classes, **settings)` returning one, or a scikit-learn-style estimator (a class or factory whose objects have
`fit` and `predict_proba`). Resolving a reference imports its code, as importing any Python does.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import logging
import re
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from mnistlab.errors import InvalidArgument, ModelSourceError

log = logging.getLogger("mnistlab")

ENTRY_POINTS = "mnistlab.models"  # the entry-point group installed packages publish models in
OFFERED = ("mean", "std", "seed", "input_shape")  # what mnistlab hands a factory that names it: the data's pixel
# statistics, the run's seed, the (channels, height, width) of its images

_FILES: dict[str, tuple[str, object]] = {}  # an imported file's path -> (its sha256 then, its module)
_OBJECTS: dict[str, object] = {}  # reference -> an object handed to mnistlab.train in this process
_INFOS: dict[tuple, object] = {}  # (reference, the file's sha256) -> its ModelInfo, resolved once per version
_IMPORTING = threading.RLock()  # a served pad resolves models from many threads; imports of users' code take turns


@dataclass(frozen=True)
class Origin:
    """Where a model came from, as a run folder records it (config.json's `model_source`)."""

    kind: str  # file | module | entry-point
    reference: str  # what resolves it again: /abs/path/file.py:Name or package.module:Name
    family: str  # neural or classical
    file: str | None = None  # the file its code is in
    sha256: str | None = None  # that file's sha256 when the run was trained
    entry_point: str | None = None  # the entry point's name (kind entry-point)
    distribution: str | None = None  # the installed package that declares it, "name version"

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def is_reference(name) -> bool:
    return isinstance(name, str) and ":" in name


def label(name: str) -> str:
    """A short name for folders and tables: `TinyNet` for `nets/tiny.py:TinyNet`."""
    return name.rpartition(":")[2] if is_reference(name) else name


def names_a_file(where: str) -> bool:
    """Whether the part of a reference before its colon is a file (FILE.py, a path) rather than a module."""
    return where.endswith(".py") or "/" in where or "\\" in where


def shown_name(name: str) -> str:
    """A model's name as the network may see it: `idea.py:Net` for `/home/me/nets/idea.py:Net`, so a pad served to a
    room shows no folder of this machine; a zoo name or a package.module:Name stays as it is."""
    where, _, qualname = name.rpartition(":")
    if not is_reference(name) or not names_a_file(where):
        return name
    file = re.split(r"[\\/]", where)[-1]
    return f"{file}:{qualname}"


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def reference_of(obj) -> str:
    """The reference another process resolves `obj` by (a class or factory handed to mnistlab.train)."""
    qualname, modname = getattr(obj, "__qualname__", None), getattr(obj, "__module__", None)
    if not qualname or not modname:
        raise ModelSourceError(f"model={obj!r} is not a class or a function; name a model, a FILE.py:NAME or a class")
    if "<" in qualname:
        raise ModelSourceError(f"{qualname} is defined inside a function (or is a lambda), so no other process can import "
                               "it; define it at the top level of a file")
    file = getattr(sys.modules.get(modname), "__file__", None)
    if modname == "__main__" or modname.startswith("mnistlab_user_"):
        if _is_estimator(obj):  # its saved types would name __main__, which no other process has
            raise ModelSourceError(f"{qualname} is an estimator defined in the script being run; pass it by reference, "
                                   f"model='FILE.py:{qualname}', so another process can load the fitted model")
        if not file:
            raise ModelSourceError(f"{qualname} is defined in an interactive session (a notebook or the Python prompt), so no "
                                   f"other process can import it; put it in a file and pass model='FILE.py:{qualname}'")
        ref = f"{Path(file).resolve()}:{qualname}"
    else:
        ref = f"{modname}:{qualname}"
    _OBJECTS[ref] = obj
    return ref


def resolve(reference: str):
    """The ModelInfo (mnistlab/models/registry.py) of FILE.py:NAME or package.module:NAME."""
    where, _, qualname = reference.rpartition(":")
    if not where or not qualname:
        raise ModelSourceError(f"model reference {reference!r} is not FILE.py:NAME or package.module:NAME")
    if names_a_file(where):
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise ModelSourceError(f"no such file: {where} (model {reference!r}); give FILE.py:NAME with a path from the "
                                   "current folder, or an absolute one")
        ref = f"{path}:{qualname}"
        sha = file_sha256(path)  # read once: the cache key, the import and the record
        if (ref, sha) not in _INFOS:  # a file edited in this process is imported again
            obj = _OBJECTS.get(ref) or _attribute(_import_file(path, sha), qualname, str(path))
            _INFOS[ref, sha] = describe(obj, qualname, "file", ref, path, sha256=sha)
        return _INFOS[ref, sha]
    if (reference, None) not in _INFOS:
        obj = _OBJECTS.get(reference) or _attribute(_import_module(where), qualname, f"module {where}")
        _INFOS[reference, None] = describe(obj, qualname, "module", reference, _file_of(obj))
    return _INFOS[reference, None]


def describe(obj, name: str, kind: str, reference: str, file: Path | None, sha256: str | None = None, **extra):
    """A ModelInfo for a user's object: its family found from what it is (or builds), its docstring's first line;
    `sha256`: its file's, when the caller has already read it."""
    from mnistlab.models.registry import ModelInfo

    family = family_of(obj, reference)
    doc = (inspect.getdoc(obj) or "").strip().splitlines()
    if file and sha256 is None:
        sha256 = file_sha256(file)
    origin = Origin(kind, reference, family, str(file) if file else None, sha256, **extra)
    return ModelInfo(name if kind == "entry-point" else reference, family, obj, doc[0] if doc else "", reference, {},
                     origin.to_dict())


def family_of(obj, reference: str) -> str:
    """neural for an nn.Module subclass or a factory returning a module; classical for an estimator (fit, predict_proba)."""
    from torch import nn

    if inspect.isclass(obj):
        if issubclass(obj, nn.Module):
            return "neural"
        if _is_estimator(obj):
            return "classical"
    elif callable(obj):
        from mnistlab.models.base import MEAN, STD

        made = call_factory(obj, 10, {"mean": MEAN, "std": STD, "seed": 0, "input_shape": (1, 28, 28)},
                            reference)  # what it builds (for MNIST's shape) says what it is
        if isinstance(made, nn.Module):
            return "neural"
        if _is_estimator(made):
            return "classical"
        raise ModelSourceError(f"{reference} returns a {type(made).__name__}, not a model: a factory must return an "
                               "nn.Module or an estimator with fit and predict_proba")
    kind = type(obj).__name__
    raise ModelSourceError(f"{reference} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not a model: name an nn.Module subclass, a factory "
                           "f(num_classes, **settings) returning one, or an estimator with fit and predict_proba")


def _is_estimator(obj) -> bool:
    return callable(getattr(obj, "fit", None)) and (callable(getattr(obj, "predict_proba", None))
                                                     or callable(getattr(obj, "decision_function", None)))


def call_factory(factory, num_classes: int, settings: dict, name: str):
    """`factory(num_classes=..., **settings)`: num_classes where it takes one, the dataset's mean and std and the
    run's seed only where it names them; a setting it does not take, or a failure inside it, is one line."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: hand it everything
        params = {}
    takes_any = not params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    kwargs = {k: v for k, v in settings.items() if k not in OFFERED or k in named}
    unknown = sorted(k for k in kwargs if k not in named) if not takes_any else []
    if unknown:
        raise InvalidArgument(f"model {name!r} does not take the setting{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                               f"it takes: {', '.join(sorted(named - {'num_classes', 'self'})) or 'none'}")
    if "num_classes" in named or (takes_any and params):
        kwargs["num_classes"] = num_classes
    try:
        return factory(**kwargs)
    except Exception as exc:
        shown = {k: v for k, v in kwargs.items() if k not in (*OFFERED, "num_classes")}
        stray = re.search(r"unexpected keyword argument '(\w+)'", str(exc)) if isinstance(exc, TypeError) else None
        if stray:  # a factory taking **settings that hands them on
            raise InvalidArgument(f"model {name!r} does not take the setting {stray.group(1)} (given {shown})") from None
        if isinstance(exc, ValueError):  # the factory's own check of a setting
            raise InvalidArgument(f"model {name!r} cannot be built with {shown}: {exc}") from None
        raise InvalidArgument(f"building model {name!r} with {shown or 'its defaults'} failed: {one_line(exc)}") from None


def entry_point_models() -> dict:
    """The models installed packages publish (entry-point group `mnistlab.models`); one that fails to load is named
    in one warning and the others still load."""
    from importlib.metadata import entry_points

    found = {}
    for ep in entry_points(group=ENTRY_POINTS):
        dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else None
        try:
            obj = ep.load()
            found[ep.name] = describe(obj, ep.name, "entry-point", ep.value, _file_of(obj), entry_point=ep.name,
                                      distribution=dist)
        except Exception as exc:
            log.warning("model %r of the package %s (%s) does not load: %s; the other models still do", ep.name, dist,
                        ep.value, one_line(exc))
    return found


def check_recorded(source: dict, run: str) -> None:
    """Refuse, in one line, a run whose model's source file is gone or changed since it was trained."""
    if source.get("kind") == "entry-point":
        from mnistlab.models.registry import plugins

        if source.get("entry_point") not in plugins():
            raise ModelSourceError(f"{run} was trained on the model {source.get('entry_point')!r} of the package "
                                   f"{source.get('distribution')}, which is not installed here: install that package")
    file, sha = source.get("file"), source.get("sha256")
    if not file or not sha:
        return
    if not Path(file).is_file():
        raise ModelSourceError(f"the model's source {file} is gone (moved or deleted) since {run} was trained: put it back, "
                               f"or point the run at its new place: mnistlab accept-source {run} NEW_PLACE.py")
    now = file_sha256(file)
    if now != sha:
        raise ModelSourceError(f"the model's source {file} changed since {run} was trained (sha256 {sha[:12]} then, "
                               f"{now[:12]} now): retrain the run, or accept the new code for it: mnistlab accept-source {run}")


def moved(source: dict, new_file: str | Path) -> dict:
    """The `model_source` record of a run pointed at its model's file in a new place (kind file)."""
    if source.get("kind") != "file":
        raise ModelSourceError(f"the model comes from {source.get('kind')} {source.get('reference')}, not a file; "
                               "accept its new code without a path")
    path = Path(new_file).expanduser().resolve()
    if not path.is_file():
        raise ModelSourceError(f"no such file: {new_file}")
    return {**source, "file": str(path), "reference": f"{path}:{source['reference'].rpartition(':')[2]}"}


def _file_of(obj) -> Path | None:
    file = getattr(sys.modules.get(getattr(obj, "__module__", None) or ""), "__file__", None)
    return Path(file) if file else None


def module_name(path: Path) -> str:
    """The module a user's file is imported as: named by its place, so a run's pickled-by-name parts (a scikit-learn
    estimator's types) find it again in another process, and two files called net.py stay apart."""
    stem = re.sub(r"\W", "_", path.stem)
    return f"mnistlab_user_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"


def _import_file(path: Path, sha: str):
    with _IMPORTING:  # sys.path and sys.modules change for the length of the import: one thread at a time does that
        cached = _FILES.get(str(path))
        if cached and cached[0] == sha:
            return cached[1]
        name = module_name(path)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: dataclasses and pickling look their module up
        sys.path.insert(0, str(path.parent))  # the file's own imports of its neighbours
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            raise ModelSourceError(f"importing {path} failed: {one_line(exc, path)}") from None
        finally:
            sys.path.remove(str(path.parent))
        _FILES[str(path)] = (sha, module)
        return module


def _import_module(name: str):
    try:
        with _IMPORTING:
            return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise ModelSourceError(f"no module named {exc.name!r} (model {name}:...): install it, run from the folder that "
                                   "holds it, or name a file: FILE.py:NAME") from None
        raise ModelSourceError(f"importing module {name} failed: {one_line(exc)}") from None
    except Exception as exc:
        raise ModelSourceError(f"importing module {name} failed: {one_line(exc)}") from None


def _attribute(module, qualname: str, where: str):
    obj = module
    for part in qualname.split("."):
        if not hasattr(obj, part):
            known = [n for n, v in vars(module).items() if not n.startswith("_") and callable(v)
                     and getattr(v, "__module__", None) == module.__name__]
            close = difflib.get_close_matches(part, known, n=3, cutoff=0.5)
            hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"it defines: {', '.join(known) or 'nothing callable'}"
            raise ModelSourceError(f"{where} has no {qualname!r}; {hint}")
        obj = getattr(obj, part)
    return obj


def one_line(exc: BaseException, path: Path | None = None) -> str:
    """The error and, where it happened in the user's file, its line."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    tb, line = exc.__traceback__, None
    while tb is not None:
        if path is not None and Path(tb.tb_frame.f_code.co_filename) == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return text + (f" (line {line})" if line else "")
