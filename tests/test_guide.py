"""The guide runs: docs/guide.ipynb, made from docs/guide.md by docs/make_notebook.py and checked to be up to
date, is executed top to bottom in a real Jupyter kernel (nbclient), in one working folder, against the real
MNIST and Fashion-MNIST; every shell and Python block of the guide marked `run` is one of its cells, and the
pictures the guide makes are the notebook's outputs. Its numbers come from BENCHMARKS.md.

Fences: ```sh run``` (bash), ```sh run ci="ARGS"``` (ARGS appended to each `mnistlab train`, `mnistlab continual` or
`mnistlab sweep` line, so the suite stays fast; the guide says so in its text), ```python run```
(one namespace for the whole guide: it is a notebook), ```toml file=NAME``` and ```python file=NAME``` (written to
NAME), and
```sh norun="why"``` for a block that cannot run here (the reason is required).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "guide.md"
RUNNABLE = {"sh", "bash", "python"}


def _make_notebook():
    spec = importlib.util.spec_from_file_location("make_notebook", REPO / "docs" / "make_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_notebook = _make_notebook()
FENCE = make_notebook.FENCE


def blocks(path: Path = GUIDE) -> list[dict]:
    return make_notebook.blocks(path.read_text())


def test_every_code_block_is_runnable_or_says_why_not():
    found = blocks()
    for b in found:
        if b["lang"] in RUNNABLE:
            assert "run" in b["opts"] or "file" in b["opts"] or (isinstance(b["opts"].get("norun"), str) and len(b["opts"]["norun"]) > 10), \
                f"docs/guide.md:{b['line']}: a {b['lang']} block must be marked run or norun=\"reason\""
    runnable = [b for b in found if "run" in b["opts"]]
    assert len(runnable) >= 20 and sum(b["lang"] == "python" for b in runnable) >= 5


def test_numbers_in_the_guide_come_from_benchmarks():
    """Every accuracy or time the guide quotes (a number with decimals, followed by % or s) is in BENCHMARKS.md."""
    bench = (REPO / "BENCHMARKS.md").read_text()
    text = FENCE.sub("", GUIDE.read_text())  # prose and tables, not code
    quoted = set(re.findall(r"(?<![\w.])(\d+\.\d+)(%| s\b)", text))
    assert len(quoted) >= 20
    # a time may stand in a "seconds" column of BENCHMARKS.md without its unit; the number itself must be there
    missing = sorted(f"{n}{u}" for n, u in quoted if not re.search(rf"(?<![\d.]){re.escape(n)}(?![\d])", bench))
    assert not missing, f"numbers quoted in the guide but not in BENCHMARKS.md: {missing}"
    assert "TBD" not in GUIDE.read_text()


def test_pictures_and_links_exist():
    text = GUIDE.read_text()
    for target in re.findall(r"\]\(([^)#]+?)(?:#[^)]*)?\)", text):
        if target.startswith("http"):
            continue
        assert (GUIDE.parent / target).exists(), f"docs/guide.md links to {target}, which does not exist"
    for png in re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", text):
        assert (GUIDE.parent / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_notebook_is_made_from_the_guide():
    assert (REPO / "docs" / "guide.ipynb").read_text() == make_notebook.render(make_notebook.guide_notebook()), \
        "docs/guide.ipynb is stale: run .venv/bin/python docs/make_notebook.py"


@pytest.mark.realdata
def test_the_guide_runs(real_home, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(REPO / "docs" / "guide.ipynb", as_version=4)
    for cell in nb.cells:  # the suite's shorter settings, as the guide's text says
        ci = cell.get("metadata", {}).get("mnistlab", {}).get("ci")
        if ci:
            cell.source = re.sub(r"^(mnistlab (?:train|sweep|robustness|continual)\b.*)$", lambda m: f"{m.group(1)} {ci}", cell.source, flags=re.M)
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"a cell of docs/guide.ipynb failed: {str(exc)[-3000:]}")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 20 and all(c.execution_count for c in code)
    pictures = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 4  # the samples, class means, augmentation and Fashion-MNIST pictures, shown in the notebook
    # what the guide says the blocks make, they made
    for made in ("mnist-samples.png", "mnist-means.png", "augmented.png", "runs/cnn/report.html", "digits.onnx",
                 "sweeps/cnn/sweep.md", "runs/fashion-from-mnist/metrics.json", "steps", "runs/cnn/robustness.json",
                 "colored-mnist.png", "runs/irm-colored/metrics.json", "curves/curves.md", "runs/few-fixmatch/metrics.json"):
        assert (tmp_path / made).exists(), made
