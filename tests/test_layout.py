"""The rooms of the house and which may import which (docs/architecture.md): every room imports only rooms below it
in one order, no module imports one that imports it back (but the models registry and its zoo), evaluation,
serving and export read run folders and never reach into training; no function in src is over 60 lines."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mnistlab"


# the rooms from the bottom up: each may import those before it, never one after it
ROOMS = ("errors", "fileio", "devices", "vocabulary", "data", "models", "calibration", "tta", "config", "split", "run",
         "datasets", "transforms", "preprocess", "evaluate", "robustness", "ood", "explain", "serve", "export", "report",
         "training", "continual", "sweep", "bench", "cli", "__init__", "__main__")
# the one circle kept: the registry (and the room's face) imports the zoo's modules so they register, and they
# import its decorator
KEPT_CIRCLE = {"mnistlab.models", "mnistlab.models.registry"}


def _imports(path: Path) -> set[str]:
    """What `path` imports, at the top or inside a function: modules, and for `from X import n` the name X.n (the
    module X.n where there is one, as in `from mnistlab import fileio`; else a name in X)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    modules = {_module(f): f for f in SRC.rglob("*.py")}
    graph = {}
    for name, f in modules.items():
        targets = set()
        for m in _imports(f):
            while m.startswith("mnistlab") and m not in modules:  # a name imported from a module: the module
                m = m.rpartition(".")[0]
            if m in modules and m != name:
                targets.add(m)
        graph[name] = targets
    return graph


def test_every_room_imports_only_rooms_below_it():
    graph = _graph()
    unknown = sorted({_room(m) for m in graph} - set(ROOMS))
    assert not unknown, f"rooms not in ROOMS (place them in the order): {unknown}"
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                    if ROOMS.index(_room(b)) > ROOMS.index(_room(a)))
    assert not upward


def test_no_module_imports_one_that_imports_it_back():
    """Circles through the registry (it imports the zoo's modules so they register) are the one kind kept: without the
    registry's own imports, none is left."""
    graph = _graph()
    for kept in KEPT_CIRCLE:
        graph[kept] = {m for m in graph[kept] if not m.startswith("mnistlab.models.")}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return False

    assert not sorted(f"{a} <-> {b}" for a, targets in graph.items() for b in targets if reaches(b, a))


@pytest.mark.parametrize("room, forbidden", [("evaluate", "mnistlab.training"), ("serve", "mnistlab.training"),
                                             ("export.py", "mnistlab.training"), ("explain", "mnistlab.training"),
                                             ("robustness", "mnistlab.training"),
                                             ("data", "mnistlab.")])
def test_a_room_imports_nothing_it_must_not(room, forbidden):
    files = [SRC / room] if room.endswith(".py") else sorted((SRC / room).rglob("*.py"))
    bad = {f"{f.relative_to(SRC)}: {m}" for f in files for m in _imports(f)
           if m.startswith(forbidden) and not (room == "data" and m.startswith(("mnistlab.data", "mnistlab.errors", "mnistlab.fileio")))}
    assert not bad


def test_reading_evaluating_and_serving_a_run_loads_nothing_of_training():
    code = ("import sys, mnistlab.report, mnistlab.serve.app, mnistlab.export, mnistlab.evaluate.compare, mnistlab.explain, "
            "mnistlab.robustness, mnistlab.robustness.attacks, mnistlab.robustness.corruptions; "
            "print(sorted(m for m in sys.modules if m.startswith('mnistlab.training')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_no_function_is_over_sixty_lines():
    long = [f"{f.relative_to(SRC)}:{n.lineno} {n.name}" for f in sorted(SRC.rglob("*.py"))
            for n in ast.walk(ast.parse(f.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert not long
