"""Make docs/guide.ipynb from docs/guide.md, the one source of truth: prose becomes Markdown cells, ```python run```
blocks Python cells, ```sh run``` blocks `%%bash` cells (which stop at the first failing command), a
```toml file=NAME``` or ```python file=NAME``` block a `%%writefile NAME` cell, and the pictures a block writes (`--out NAME.png`) are shown
in a cell after it. Blocks that cannot run stay in the prose. A block's `ci="ARGS"` is kept in the cell's
metadata (`mnistlab.ci`), for the test suite's shorter run.

    .venv/bin/python docs/make_notebook.py            # rewrite docs/guide.ipynb
    .venv/bin/python docs/make_notebook.py --check    # exit 1 if it is stale

tests/test_guide.py checks that the notebook is up to date and runs it in a Jupyter kernel.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import nbformat

DOCS = Path(__file__).resolve().parent
GUIDE, NOTEBOOK = DOCS / "guide.md", DOCS / "guide.ipynb"
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```[ \t]*$", re.M | re.S)
PICTURE = re.compile(r"--out\s+(\S+\.png)\b")


def blocks(text: str) -> list[dict]:
    """The guide's fenced blocks, in order: language, options (`run`, `ci="..."`, `norun="..."`, `file=NAME`),
    body, line, and where each starts and ends in the text."""
    out = []
    for m in FENCE.finditer(text):
        lang, info, body = m.group(1), m.group(2).strip(), m.group(3)
        words = shlex.split(info) if info else []
        opts = dict(w.split("=", 1) if "=" in w else (w, True) for w in words)
        out.append({"lang": lang, "opts": opts, "body": body, "line": text[: m.start()].count("\n") + 1,
                    "start": m.start(), "end": m.end()})
    return out


def _code_cells(block: dict) -> list:
    lang, opts, body = block["lang"], block["opts"], block["body"].rstrip("\n")
    if lang in ("toml", "python") and "file" in opts:  # a file the guide writes (a config, a net of your own)
        return [nbformat.v4.new_code_cell(f"%%writefile {opts['file']}\n{body}")]
    if "run" not in opts:
        return []
    if lang == "python":
        return [nbformat.v4.new_code_cell(body)]
    cell = nbformat.v4.new_code_cell(f"%%bash\nset -eo pipefail\n{body}")
    if isinstance(opts.get("ci"), str):
        cell.metadata["mnistlab"] = {"ci": opts["ci"]}
    cells = [cell]
    pictures = PICTURE.findall(body)
    if pictures:
        shows = "\n".join(f'display(Image(filename="{p}"))' for p in pictures)
        cells.append(nbformat.v4.new_code_cell(f"from IPython.display import Image, display\n\n{shows}"))
    return cells


def guide_notebook(text: str | None = None) -> nbformat.NotebookNode:
    text = GUIDE.read_text() if text is None else text
    cells, pos = [], 0
    for block in blocks(text):
        code = _code_cells(block)
        if not code:
            continue  # stays in the prose around it
        prose = text[pos:block["start"]].strip()
        if prose:
            cells.append(nbformat.v4.new_markdown_cell(prose))
        cells += code
        pos = block["end"]
    if text[pos:].strip():
        cells.append(nbformat.v4.new_markdown_cell(text[pos:].strip()))
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:03d}"  # stable ids: the file changes only when the guide does
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"},
                   "mnistlab": {"generated_from": "docs/guide.md", "by": "docs/make_notebook.py"}}
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv: list[str]) -> int:
    fresh = render(guide_notebook())
    if "--check" in argv:
        if not NOTEBOOK.exists() or NOTEBOOK.read_text() != fresh:
            print("docs/guide.ipynb is stale: run .venv/bin/python docs/make_notebook.py", file=sys.stderr)
            return 1
        return 0
    NOTEBOOK.write_text(fresh)
    print(f"wrote {NOTEBOOK.relative_to(DOCS.parent)} ({len(guide_notebook().cells)} cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
