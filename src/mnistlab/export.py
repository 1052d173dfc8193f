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
               data_dir=None) -> dict:
    """Write the model file; with `check`, compare its probabilities with PyTorch's on real test digits (from the
    cache at `data_dir`, default $MNISTLAB_HOME or ~/.cache/mnistlab)."""
    import torch

    run = run if isinstance(run, Run) else Run(run)
    if fmt not in FORMATS:
        raise InvalidArgument(f"unknown export format {fmt!r}; use {', '.join(FORMATS)}")
    if run.kind != "neural":
        raise RunError(f"{run.path} is a {run.kind} model ({run.config['model']}); only neural nets export to {fmt}")
    # in PyTorch's default memory format: a run's convolutions load channels_last (faster on CPU), and torch.export's
    # archive writer warns of every weight not contiguous in the default format ("No complete tensor found")
    model = copy.deepcopy(run.calibrated).to(memory_format=torch.contiguous_format)
    out = Path(out) if out else run.path / f"model{FORMATS[fmt]}"
    example = torch.rand(2, 1, 28, 28)
    hint = "choose another --out"
    with torch.no_grad():
        if fmt == "onnx":
            try:
                import onnxscript  # noqa: F401  the exporter's own dependency: say so in one line if missing
            except ImportError:
                raise RunError("ONNX export needs the package onnxscript: pip install onnxscript") from None
            with _quiet_exporter():
                onnx_program = torch.onnx.export(_exported_program(model, example), (example,), input_names=["images"],
                                                 output_names=["probabilities"], dynamo=True, verbose=False)
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
    result = {"path": str(out), "format": fmt, "bytes": out.stat().st_size}
    if fmt == "torchscript":
        result["note"] = TORCHSCRIPT_NOTE
    if check:
        result["max_abs_difference"] = check_export(run, out, fmt, data_dir=data_dir)
    return result


def load_exported(path: str | Path, fmt: str):
    """A callable that maps float32 images (N, 1, 28, 28) to probabilities, from an exported file."""
    import torch

    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda images: session.run(None, {"images": images})[0]
    if fmt == "pt2":
        module = torch.export.load(str(path)).module()
    else:
        with _torchscript():
            module = torch.jit.load(str(path)).eval()

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.no_grad(), _torchscript():
            return module(torch.from_numpy(images)).numpy()

    return predict


def check_export(run: Run, path: Path, fmt: str, n: int = 256, data_dir=None) -> float:
    """Largest absolute difference between the exported model's probabilities and PyTorch's, on real test images."""
    from mnistlab.data import load_dataset

    images = np.asarray(load_dataset(run.config["dataset"], "test", data_dir=data_dir).images[:n], dtype=np.float32)[:, None] / 255
    expected = run.predict_proba(images[:, 0])
    got = load_exported(path, fmt)(images)
    return float(np.abs(got - expected).max())
