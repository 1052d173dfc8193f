"""`RunFolder`: the one place that makes, locks and writes a run folder while it trains, and the record
(config.json) it keeps of the settings and the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistlab.config import TrainConfig
from mnistlab.errors import RunError
from mnistlab.fileio import atomic_write
from mnistlab.run.files import RUN_HINT, append_jsonl, load_checkpoint, new_run_dir, save_torch, take_lock, write_json
from mnistlab.run.reader import DatasetFacts, Run
from mnistlab.split import SPLIT_FILE, Split, kept_split


def config_record(cfg: TrainConfig, facts: DatasetFacts, world_size: int | None = None, source: dict | None = None) -> dict:
    """config.json of a trained run: its settings, the dataset's facts, the augmentation as resolved (for readers), and
    for a model not of the zoo, where it came from (models/reference.py's Origin)."""
    from mnistlab.vocabulary import parse_augment

    record = {**cfg.to_dict(), "classes": list(facts.classes), "input_mean": facts.input_mean, "input_std": facts.input_std,
              "augment_resolved": parse_augment(cfg.augment).__dict__, "dataset_sha256": facts.dataset_sha256,
              "input_shape": list(facts.input_shape)}
    if source is not None:
        record["model_source"] = source
    return {**record, "world_size": world_size} if world_size else record


def model_source(model: str) -> dict | None:
    """Where a model not of the zoo comes from, to record in a new run (None for the zoo's)."""
    from mnistlab.models import get_model_info

    return get_model_info(model).origin


class RunFolder:
    """A run folder being written: made (or reopened to resume) and locked in one place, by this process, until
    `close`; it holds the run's TrainConfig and dataset facts, keeps its split, and writes each epoch and the final
    files atomically. A process of a distributed run other than rank 0 holds a view (`lock=None`) and writes nothing."""

    def __init__(self, path: Path, cfg: TrainConfig, facts: DatasetFacts, *, lock=None, world_size: int | None = None,
                 finished: bool = False, source: dict | None = None):
        self.path, self.cfg, self.facts, self._lock, self.world_size = Path(path), cfg, facts, lock, world_size
        self.finished = finished  # it held its final files when opened: nothing left to train
        self.source = source  # where a model not of the zoo came from, as recorded when the run began

    @classmethod
    def create(cls, out, cfg: TrainConfig, facts: DatasetFacts, split: Split, world_size: int | None = None) -> "RunFolder":
        """A new run's folder: made, locked, its config and split written."""
        source = model_source(cfg.model)
        path = new_run_dir(out, cfg.model, cfg.dataset)
        folder = cls(path, cfg, facts, lock=take_lock(path, new=True), world_size=world_size, source=source)
        try:
            if source is not None and source.get("file"):  # the code as trained, beside the weights it made
                code = Path(source["file"]).read_bytes()
                atomic_write(path / "model_source.py", lambda fh: fh.write(code), hint=RUN_HINT, error=RunError)
            folder._write_json("config.json", folder.record())
            atomic_write(path / SPLIT_FILE, lambda fh: np.savez_compressed(fh, **split.arrays()), hint=RUN_HINT, error=RunError)
        except BaseException:
            folder.close()
            raise
        return folder

    @classmethod
    def reopen(cls, path: str | Path) -> "RunFolder":
        """An existing run's folder, locked before its checkpoint or metrics are looked at (to resume it)."""
        run = Run(path)
        run.check_source()
        lock = take_lock(Path(path))
        return cls(Path(path), run.settings, run.facts, lock=lock, world_size=run.config.get("world_size"),
                   finished=run.complete, source=run.source)

    @classmethod
    def view(cls, path: str, record: dict, finished: bool) -> "RunFolder":
        """Rank 0's folder as another process of a distributed run sees it: its settings, never its files."""
        return cls(Path(path), TrainConfig.from_dict(record), DatasetFacts.from_dict(record),
                   world_size=record.get("world_size"), finished=finished, source=record.get("model_source"))

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self) -> dict:
        return config_record(self.cfg, self.facts, self.world_size, self.source)

    def split(self, train_labels: np.ndarray, neural: bool) -> Split:
        """The split it keeps (see split.kept_split)."""
        return kept_split(self.path, train_labels, self.cfg, len(self.facts.classes), neural)

    def last_checkpoint(self) -> dict | None:
        path = self.path / "checkpoint.pt"
        return load_checkpoint(path) if path.exists() else None

    def save_epoch(self, history: list[dict], curve: list[dict], checkpoint: dict | None = None) -> None:
        """An epoch's checkpoint (what a resume starts from), then its rows and points: the rows never claim an
        epoch that the checkpoint lacks (a full disk between the two leaves the rows one epoch behind, and a resume
        writes them again from the checkpoint)."""
        if checkpoint is not None:
            save_torch(self.path / "checkpoint.pt", checkpoint)
        append_jsonl(self.path / "metrics.jsonl", history)
        if curve:
            append_jsonl(self.path / "curve.jsonl", curve)

    def save_weights(self, state: dict) -> None:
        from safetensors.torch import save

        atomic_write(self.path / "model.safetensors", lambda fh: fh.write(save(state)), hint=RUN_HINT, error=RunError)

    def save_estimator(self, est) -> None:
        import skops.io as sio

        atomic_write(self.path / "model.skops", lambda fh: fh.write(sio.dumps(est)), hint=RUN_HINT, error=RunError)

    def save_test_probs(self, probs: np.ndarray) -> None:
        atomic_write(self.path / "test_probs.npy", lambda fh: np.save(fh, probs.astype(np.float32), allow_pickle=False),
                     hint=RUN_HINT, error=RunError)

    def save_metrics(self, metrics: dict) -> "Run":
        """The final record, written last: a folder with metrics.json is a finished run."""
        self._write_json("metrics.json", metrics)
        return Run(self.path)

    def _write_json(self, name: str, obj) -> None:
        write_json(self.path / name, obj)


