"""Where and how a run's training step runs: the device, the number format (fp32, or bf16 where the
hardware has it), and the way of running the step (eager, or a CUDA graph), chosen once at the start
from the config and checked, so a setting that cannot run on the chosen device is one clear line."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from mnistlab.devices import hardware_name, pick_device  # noqa: F401  (training's names for them)
from mnistlab.errors import InvalidArgument
from mnistlab.vocabulary import PRECISIONS, STEPS  # noqa: F401  (training's names for them)

# optimisers whose PyTorch implementation can be captured in a CUDA graph with a device learning rate
GRAPH_OPTIMIZERS = ("adam", "adamw")


@dataclass(frozen=True)
class Engine:
    device: object  # torch.device
    precision: str  # fp32 | bf16 (autocast: weights and the optimiser stay fp32)
    step: str  # eager | cuda-graph

    @property
    def autocast_dtype(self):
        import torch

        return torch.bfloat16 if self.precision == "bf16" else None

    def describe(self) -> dict:
        return {"device": str(self.device), "precision": self.precision, "step": self.step}


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (Intel AMX, or AVX512-BF16 on Intel and AMD); elsewhere
    PyTorch would emulate it, slower than fp32."""
    import torch

    try:
        caps = torch.cpu.get_capabilities()
    except (AttributeError, RuntimeError):  # older PyTorch: no way to ask, so no
        return False
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


def bf16_supported(device) -> bool:
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_bf16()


def resolve_engine(device_name: str, precision: str, step: str, *, optimizer: str, distributed: bool = False,
                   device=None) -> Engine:
    """The engine a run's settings ask for; `auto` picks the fastest that keeps accuracy (BENCHMARKS.md):
    bf16 where the hardware has it, a CUDA graph on CUDA for the optimisers that allow one."""
    device = device if device is not None else pick_device(device_name)
    if precision == "auto":
        precision = "bf16" if bf16_supported(device) else "fp32"
    elif precision == "bf16" and not bf16_supported(device):
        where = "this CPU has neither AMX nor AVX512-BF16" if device.type == "cpu" else f"{device} does not support it"
        raise InvalidArgument(f"precision bf16 requested but {where}; use --precision fp32 or auto")
    if step == "auto":
        step = "cuda-graph" if device.type == "cuda" and optimizer in GRAPH_OPTIMIZERS and not distributed else "eager"
    elif step == "cuda-graph":
        if device.type != "cuda":
            raise InvalidArgument(f"--step cuda-graph needs a CUDA device, not {device}; use --step eager or --device cuda")
        if optimizer not in GRAPH_OPTIMIZERS:
            raise InvalidArgument(f"--step cuda-graph works with the optimizers {', '.join(GRAPH_OPTIMIZERS)}, "
                                  f"not {optimizer}; use --step eager")
        if distributed:
            raise InvalidArgument("--step cuda-graph does not run under --distributed; use --step eager")
    return Engine(device, precision, step)
