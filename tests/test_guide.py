"""The guide runs: every shell and Python block of docs/guide.md marked `run` is executed in order, in
one working folder, against the real MNIST and Fashion-MNIST; its numbers come from BENCHMARKS.md.

Fences: ```sh run``` (bash), ```sh run ci="ARGS"``` (ARGS appended to each `mnistlab train` or
`mnistlab sweep` line, so the suite stays fast; the guide says so in its text), ```python run```
(one namespace for the whole guide, like a notebook), ```toml file=NAME``` (written to NAME), and
```sh norun="why"``` for a block that cannot run here (the reason is required).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "guide.md"
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
RUNNABLE = {"sh", "bash", "python"}


def blocks(path: Path = GUIDE) -> list[dict]:
    out = []
    for m in FENCE.finditer(path.read_text()):
        lang, info, body = m.group(1), m.group(2).strip(), m.group(3)
        words = shlex.split(info) if info else []
        opts = dict(w.split("=", 1) if "=" in w else (w, True) for w in words)
        line = path.read_text()[: m.start()].count("\n") + 1
        out.append({"lang": lang, "opts": opts, "body": body, "line": line})
    return out


def test_every_code_block_is_runnable_or_says_why_not():
    found = blocks()
    for b in found:
        if b["lang"] in RUNNABLE:
            assert "run" in b["opts"] or (isinstance(b["opts"].get("norun"), str) and len(b["opts"]["norun"]) > 10), \
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


@pytest.mark.realdata
def test_the_guide_runs(real_home, tmp_path, monkeypatch):
    env = {**os.environ, "MNISTLAB_HOME": str(real_home), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "guide"}
    ran = 0
    for b in blocks():
        where = f"docs/guide.md:{b['line']}"
        if b["lang"] == "toml" and "file" in b["opts"]:
            (tmp_path / b["opts"]["file"]).write_text(b["body"])
        elif "run" not in b["opts"]:
            continue
        elif b["lang"] == "python":
            try:
                exec(compile(b["body"], where, "exec"), namespace)
            except Exception as exc:
                pytest.fail(f"{where}: the Python block failed: {type(exc).__name__}: {exc}")
            ran += 1
        else:
            script = b["body"]
            if isinstance(b["opts"].get("ci"), str):
                script = re.sub(r"^(mnistlab (?:train|sweep)\b.*)$", lambda m: f"{m.group(1)} {b['opts']['ci']}", script, flags=re.M)
            done = subprocess.run(["bash", "-eo", "pipefail", "-c", script], env=env, cwd=tmp_path, capture_output=True,
                                  text=True, timeout=900)
            assert done.returncode == 0, f"{where}: the block failed:\n{script}\n{done.stderr[-3000:]}"
            ran += 1
    assert ran >= 20
    # what the guide says the blocks make, they made
    for made in ("mnist-samples.png", "mnist-means.png", "augmented.png", "runs/cnn/report.html", "digits.onnx",
                 "sweeps/cnn/sweep.md", "runs/fashion-from-mnist/metrics.json", "steps"):
        assert (tmp_path / made).exists(), made
