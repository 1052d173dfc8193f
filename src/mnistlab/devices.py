"""Which device to compute on (`auto` picks CUDA, then MPS, then the CPU), and its name, recorded beside every number
measured on it. Training, robustness and the benchmarks share these; nothing here knows of training."""

from __future__ import annotations

import contextlib

from mnistlab.errors import InvalidArgument


def pick_device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument("device cuda requested but PyTorch sees no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InvalidArgument("device mps requested but it is not available; use --device cpu or auto")
    return torch.device(name)


def hardware_name(device) -> str:
    """The GPU's or the CPU's model name, for every number recorded."""
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def kept_threads():
    """PyTorch's CPU thread count as it was before the block: a run that sets its own (`threads`) leaves the process
    as it found it, so the next run in the same process (a notebook, a test suite) computes as it would alone."""
    import torch

    n = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(n)
