"""Export a trained net to ONNX or TorchScript. The exported graph takes float32 images
(N, 1, 28, 28) in [0, 1] and returns class probabilities (N, classes), exactly as `Run.predict_proba`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnistlab.errors import InvalidArgument, RunError
from mnistlab.fileio import atomic_write_bytes
from mnistlab.training.run import Run

FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}


def _with_softmax(net):
    import torch

    class Probabilities(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, images):
            return torch.softmax(self.inner(images), dim=1)

    return Probabilities(net).eval()


def export_run(run: Run | str | Path, fmt: str = "onnx", out: str | Path | None = None, *, check: bool = True) -> dict:
    """Write the model file; with `check`, compare its probabilities with PyTorch's on real test digits."""
    import io

    import torch

    run = run if isinstance(run, Run) else Run(run)
    if fmt not in FORMATS:
        raise InvalidArgument(f"unknown export format {fmt!r}; use onnx or torchscript")
    if run.family != "neural":
        raise RunError(f"{run.path} is a {run.family} model ({run.config['model']}); only neural nets export to {fmt}")
    model = _with_softmax(run.model)
    out = Path(out) if out else run.path / f"model{FORMATS[fmt]}"
    example = torch.rand(2, 1, 28, 28)
    buf = io.BytesIO()
    with torch.no_grad():
        if fmt == "onnx":
            # the TorchScript-based exporter: no onnxscript needed, dynamic batch size
            torch.onnx.export(model, (example,), buf, input_names=["images"], output_names=["probabilities"],
                              dynamic_axes={"images": {0: "batch"}, "probabilities": {0: "batch"}}, opset_version=17,
                              dynamo=False)
        else:
            torch.jit.save(torch.jit.trace(model, example), buf)
    atomic_write_bytes(out, buf.getvalue(), hint="choose another --out", error=RunError)
    result = {"path": str(out), "format": fmt, "bytes": out.stat().st_size}
    if check:
        result["max_abs_difference"] = check_export(run, out, fmt)
    return result


def check_export(run: Run, path: Path, fmt: str, n: int = 256) -> float:
    """Largest absolute difference between the exported model's probabilities and PyTorch's, on real test images."""
    import torch

    from mnistlab.data import load_dataset

    images = np.asarray(load_dataset(run.config["dataset"], "test").images[:n], dtype=np.float32)[:, None] / 255
    expected = run.predict_proba(images[:, 0])
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"images": images})[0]
    else:
        got = torch.jit.load(str(path)).eval()(torch.from_numpy(images)).detach().numpy()
    return float(np.abs(got - expected).max())
