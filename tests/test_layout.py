"""The rooms of the house and which may import which (docs/architecture.md): evaluation, serving and export read run
folders and never reach into training; the data layer imports nothing of the rest; no function in src is over 60
lines."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "mnistlab"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


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
    code = ("import sys, mnistlab.evaluate.report, mnistlab.serve.app, mnistlab.export, mnistlab.evaluate.compare, mnistlab.explain, "
            "mnistlab.robustness, mnistlab.robustness.attacks, mnistlab.robustness.corruptions; "
            "print(sorted(m for m in sys.modules if m.startswith('mnistlab.training')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_no_function_is_over_sixty_lines():
    long = [f"{f.relative_to(SRC)}:{n.lineno} {n.name}" for f in sorted(SRC.rglob("*.py"))
            for n in ast.walk(ast.parse(f.read_text()))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert not long
