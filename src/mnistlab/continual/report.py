"""A continual run's report: report.html (self-contained) and report.md with its pictures in report_files/, in the
same form as a trained run's (mnistlab/report.py): the metrics, the accuracy matrix as a table and a heat map, each
task's accuracy as the tasks go by, the settings."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from mnistlab.continual.plots import curves_figure, matrix_figure
from mnistlab.errors import RunError
from mnistlab.evaluate.plots import to_png
from mnistlab.fileio import atomic_write_bytes
from mnistlab.report import _html, _markdown


def build_continual_report(path: str | Path) -> dict[str, Path]:
    path = Path(path)
    if not (path / "metrics.json").exists():
        raise RunError(f"{path} has not finished: run the same mnistlab continual command again to finish it")
    r = json.loads((path / "metrics.json").read_text())
    config = json.loads((path / "config.json").read_text())
    title = f"{r['strategy']} on {r['benchmark']} ({r['scenario']}-incremental)"
    summary = [("average accuracy", r["average_accuracy"]), ("backward transfer", r["backward_transfer"]),
               ("forward transfer", r["forward_transfer"]), ("tasks", len(r["tasks"])), ("train seconds", r["seconds"])]
    summary = [(k, v) for k, v in summary if v is not None]
    figures = {"matrix": ("The accuracy matrix: R[i][j], on task j after training task i", to_png(matrix_figure(r))),
               "curves": ("Each task's accuracy as the tasks go by", to_png(curves_figure(r)))}
    tables = {"matrix": ("The accuracy matrix", ["after", *r["tasks"]],
                         [[r["tasks"][i], *row] for i, row in enumerate(r["accuracy_matrix"])])}
    cfg_rows = [(k, json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in config.items() if k != "tasks_built"]
    env_rows = [("seconds", r["seconds"]), ("seed", r["seed"])]
    run = SimpleNamespace(path=path)
    hint = {"hint": "the run folder must be writable", "error": RunError}
    atomic_write_bytes(path / "report.html", _html(title, run, summary, cfg_rows, env_rows, tables, figures).encode(), **hint)
    for key, (_, png) in figures.items():
        atomic_write_bytes(path / "report_files" / f"{key}.png", png, **hint)
    atomic_write_bytes(path / "report.md", _markdown(title, run, summary, cfg_rows, env_rows, tables, figures).encode(), **hint)
    return {"html": path / "report.html", "md": path / "report.md"}
