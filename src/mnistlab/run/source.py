"""Accepting a run's own model code as it is now, or in a new place: the record changes only if the model still
builds from it and takes the run's weights."""

from __future__ import annotations

import time
from pathlib import Path

from mnistlab.errors import RunError
from mnistlab.run.files import run_lock, write_json
from mnistlab.run.reader import ENSEMBLE, Run


def accept_source(path: str | Path, new_file: str | Path | None = None) -> dict:
    """Accept the code of a run's own model as it is now, or in a new place (`new_file`): its record takes the file's
    sha256 of today, the one it was trained with kept under `accepted`. The model must still build and take the run's
    weights, or nothing is written. Returns the new `model_source`."""
    from mnistlab.models.reference import file_sha256, moved

    path = Path(path)
    with run_lock(path):
        run = Run(path)
        if run.kind == ENSEMBLE:
            raise RunError(f"{path} is an ensemble: accept the source of each member run instead")
        if run.source is None:
            raise RunError(f"{path} trained the zoo's model {run.config['model']!r}: it has no source of its own to accept")
        old = run.source
        new = moved(old, new_file) if new_file is not None else dict(old)
        if new.get("file"):
            new["sha256"] = file_sha256(new["file"])
        new["accepted"] = [*old.get("accepted", []), {"file": old.get("file"), "sha256": old.get("sha256"),
                                                      "date": time.strftime("%Y-%m-%d %H:%M:%S")}]
        record = {**run.config, "model_source": new, **({"model": new["reference"]} if new["kind"] == "file" else {})}
        trial = Run(path)
        trial.config = record
        trial.model  # noqa: B018  builds the model from the new code and loads the weights, or raises
        write_json(path / "config.json", record)
    return new

