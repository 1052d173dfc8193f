"""A run folder: `RunFolder` (folder.py), the one place that makes, locks and writes one, and `Run` (reader.py),
which reads it back; files.py holds the lock and the atomic writes, source.py the acceptance of a model's new code.
Training writes run folders through RunFolder; evaluation, serving, ensembles and sweeps read them through Run;
this package uses none of those.

    runs/<date>-<model>-<dataset>/
      config.json        the TrainConfig and the dataset's facts (classes, input mean/std, content checksums);
                         an ensemble's names its kind and members instead
      split.npz          the training images' indices: train, val, calibration (the held-out ones are read, never
                         recomputed; folders from before it existed get theirs recomputed from the seed)
      metrics.jsonl      one line per completed epoch
      curve.jsonl        the training loss and accuracy every few steps (nets; about 64 points a run)
      metrics.json       the final record: test accuracy and loss, temperature and calibration, timings, sizes,
                         versions, data checksums
      model.safetensors  the net's weights (model.skops for scikit-learn models)
      checkpoint.pt      model + optimizer + epoch + history: what --resume needs
      test_probs.npy     float32 (N_test, classes), calibrated: used by evaluation, reports and ensembles
      model_source.py    a model of your own (FILE.py:NAME, package.module:NAME, an entry point): a copy of its file
                         as trained; config.json's model_source says where it came from and the file's sha256, and
                         loading the run imports that file again (refused, in one line, if it moved or changed)
      robustness.json, ood.json and their pictures: what `mnistlab robustness` and `mnistlab ood` measured
      ood_detector.json  the detector every answer's digit_like comes from, chosen once (ood_fit.safetensors: its fit)
      .lock              held by the process training the run, so a second one cannot train it at once
"""

from mnistlab.run.files import (
           RUN_HINT,
           RUNS_DIR,
           append_jsonl,
           load_checkpoint,
           new_run_dir,
           read_result,
           run_lock,
           save_torch,
           versions,
           write_json,
           write_result,
)
from mnistlab.run.folder import DatasetFacts, RunFolder, config_record, model_source
from mnistlab.run.reader import ENSEMBLE, SKOPS_TRUSTED_PREFIXES, Run, build_net, classical_proba, leaf_runs, load_run, mean_accuracy
from mnistlab.run.source import accept_source

__all__ = ["ENSEMBLE", "RUNS_DIR", "RUN_HINT", "SKOPS_TRUSTED_PREFIXES", "DatasetFacts", "Run", "RunFolder", "accept_source",
           "append_jsonl", "build_net", "classical_proba", "config_record", "leaf_runs", "load_checkpoint", "load_run",
           "mean_accuracy", "model_source", "new_run_dir", "read_result", "run_lock", "save_torch", "versions", "write_json", "write_result"]
