"""Export a trained net to ONNX or to a PyTorch 2 ExportedProgram (`.pt2`), both made by
`torch.export`; TorchScript stays for pipelines built on it, marked deprecated as PyTorch marks it.
The exported graph takes float32 images (N, 1, 28, 28) in [0, 1], any N, and returns class
probabilities (N, classes), exactly as `Run.predict_proba`."""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from pathlib import Path

import numpy as np

from mnistlab.errors import InvalidArgument, RunError
from mnistlab.fileio import atomic_write, atomic_write_bytes
from mnistlab.ood.graph import WithScore
from mnistlab.run import Run

FORMATS = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".pt"}
TORCHSCRIPT_NOTE = ("TorchScript is deprecated in PyTorch; this file still loads with torch.jit.load, but prefer "
                    "--format pt2 (torch.export.load) or onnx for new work")


@contextlib.contextmanager
def _quiet_exporter():
    """The ONNX exporter logs a line for every optional operator library it does not find (torchvision's
    among them); those are not the user's business. Nor is PyTorch's own FutureWarning from inside it: torch's
    pytree marks its LeafSpec class deprecated (torch/utils/_pytree.py, @deprecated on the class), and the exporter
    itself deep-copies the exported program, whose specs hold LeafSpecs, so copying one warns (torch 2.13)."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning)
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _torchscript():
    """TorchScript calls, after mnistlab has said once, in its own words, that the format is deprecated."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        yield


def _exported_program(model, example):
    import torch

    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    return torch.export.export(model, (example,), dynamic_shapes={"images": {0: batch}})


def export_run(run: Run | str | Path, fmt: str = "onnx", out: str | Path | None = None, *, check: bool = True,
               data_dir=None, ood: bool = False) -> dict:
    """Write the model file and its companion JSON (`<file>.json`: classes, input, outputs, the run's OOD detector and
    threshold); with `ood`, the graph gives each image's `ood_score` as a second output. With `check`, compare its
    outputs with mnistlab's on real test digits (from the cache at `data_dir`, default $MNISTLAB_HOME or
    ~/.cache/mnistlab)."""
    import torch

    run = run if isinstance(run, Run) else Run(run)
    if fmt not in FORMATS:
        raise InvalidArgument(f"unknown export format {fmt!r}; use {', '.join(FORMATS)}")
    if run.kind != "neural":
        raise RunError(f"{run.path} is a {run.kind} model ({run.config['model']}); only neural nets export to {fmt}")
    # in PyTorch's default memory format: a run's convolutions load channels_last (faster on CPU), and torch.export's
    # archive writer warns of every weight not contiguous in the default format ("No complete tensor found")
    detector, why = _detector(run, data_dir)
    if ood and detector is None:
        raise RunError(f"--ood needs the run's OOD detector: {why}")
    module = WithScore(run.calibrated, run.model, detector.name, _fit(detector)) if ood else run.calibrated
    model = copy.deepcopy(module).to(memory_format=torch.contiguous_format)
    out = Path(out) if out else run.path / f"model{FORMATS[fmt]}"
    outputs = ["probabilities", "ood_score"] if ood else ["probabilities"]
    example = torch.rand(2, *run.facts.input_shape)
    hint = "choose another --out"
    with torch.no_grad():
        if fmt == "onnx":
            try:
                import onnxscript  # noqa: F401  the exporter's own dependency: say so in one line if missing
            except ImportError:
                raise RunError("ONNX export needs the package onnxscript: pip install onnxscript") from None
            with _quiet_exporter():
                onnx_program = torch.onnx.export(_exported_program(model, example), (example,), input_names=["images"],
                                                 output_names=outputs, dynamo=True, verbose=False)
            atomic_write_bytes(out, onnx_program.model_proto.SerializeToString(), hint=hint, error=RunError)
        elif fmt == "pt2":
            program = _exported_program(model, example)
            atomic_write(out, lambda fh: torch.export.save(program, fh), hint=hint, error=RunError)
        else:
            import io

            buf = io.BytesIO()
            with _torchscript():
                torch.jit.save(torch.jit.trace(model, example), buf)
            atomic_write_bytes(out, buf.getvalue(), hint=hint, error=RunError)
    result = {"path": str(out), "format": fmt, "bytes": out.stat().st_size,
              "companion": str(_write_companion(run, out, outputs, detector, why))}
    if fmt == "torchscript":
        result["note"] = TORCHSCRIPT_NOTE
    if check:
        result["max_abs_difference"] = check_export(run, out, fmt, data_dir=data_dir)
        if ood:
            result["ood_score_max_abs_difference"] = check_scores(detector, out, fmt, data_dir=data_dir)
    return result


def _detector(run: Run, data_dir):
    """The run's kept OOD detector and None, or None and why it cannot be had."""
    from mnistlab.errors import MnistlabError
    from mnistlab.ood import kept_detector

    try:
        return kept_detector(run, data_dir), None
    except MnistlabError as exc:
        return None, str(exc)


def _fit(detector):
    return detector.scorer.fits[0] if detector.scorer.fits else None


def _write_companion(run: Run, out: Path, outputs: list[str], detector, why) -> Path:
    """`<file>.json` beside the export: what goes in and comes out, and how an answer's digit_like is had."""
    import json

    from mnistlab.fileio import atomic_write_bytes

    if detector is None:
        ood = {"unavailable": why}
    else:
        ood = {"detector": detector.name, "threshold": detector.threshold, "field": detector.field,
               "rule": f"{detector.field} = ood_score >= threshold (mnistlab ood {run.path.name}: how well it tells)",
               "in_graph": "ood_score" in outputs}
        if "ood_score" not in outputs:
            ood["how"] = ("ood_score is the largest of the probabilities" if detector.name == "msp"
                          else "export with --ood to have the graph compute ood_score")
    record = {"model": run.config["model"], "dataset": run.config["dataset"], "classes": run.classes,
              "input": {"name": "images", "shape": ["N", *run.facts.input_shape], "dtype": "float32", "range": [0.0, 1.0]},
              "outputs": outputs, "temperature": run.temperature, "ood": ood}
    path = out.with_name(out.name + ".json")
    atomic_write_bytes(path, (json.dumps(record, indent=2) + "\n").encode(), hint="choose another --out", error=RunError)
    return path


def load_exported(path: str | Path, fmt: str, output: int = 0):
    """A callable that maps float32 images (N, C, H, W) as the run takes them (MNIST's: (N, 1, 28, 28)) to the export's output number `output` (0: the
    probabilities; 1: the ood_score of an export made with --ood), from an exported file."""
    import torch

    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: session.run(None, {"images": images})[output]
    if fmt == "pt2":
        module = torch.export.load(str(path)).module()
    else:
        with _torchscript():
            module = torch.jit.load(str(path)).eval()

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.no_grad(), _torchscript():
            got = module(torch.from_numpy(images))
        return (got[output] if isinstance(got, (tuple, list)) else got).numpy()

    return predict


def check_export(run: Run, path: Path, fmt: str, n: int = 256, data_dir=None) -> float:
    """Largest absolute difference between the exported model's probabilities and PyTorch's, on real test images (a
    run across environments: its test environment's)."""
    from mnistlab.data import load_dataset

    split = run.config.get("test_environment") or "test"
    images = np.asarray(load_dataset(run.config["dataset"], split, data_dir=data_dir).images[:n], dtype=np.float32) / 255
    expected = run.predict_proba(images)
    got = load_exported(path, fmt)(images.reshape(len(images), *run.facts.input_shape))
    return float(np.abs(got - expected).max())


def check_scores(detector, path: Path, fmt: str, n: int = 256, data_dir=None) -> float:
    """Largest absolute difference between the exported ood_score and mnistlab's, relative to the scores' spread."""
    from mnistlab.data import load_dataset

    run = detector.scorer.run
    images = load_dataset(run.config["dataset"], "test", data_dir=data_dir).images[:n]
    expected = detector.scores(images)
    got = load_exported(path, fmt, output=1)(np.asarray(images, dtype=np.float32)[:, None] / 255)
    return float(np.abs(got - expected).max() / max(np.ptp(expected), 1e-12))
