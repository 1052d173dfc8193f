"""What a finished run's metrics.json says beside its numbers: what was trained, on which data, with which
versions, on which machine."""

from __future__ import annotations

import os
import platform

from mnistlab.run import RunFolder, versions
from mnistlab.training.engine import hardware_name


def final_metrics(folder: RunFolder, numbers: dict, device=None) -> dict:
    """`device`: where the net trained (None: a classical model, on the CPU)."""
    import torch

    cfg = folder.cfg
    device = device if device is not None else torch.device("cpu")
    return {"model": cfg.model, "dataset": cfg.dataset, "seed": cfg.seed, "epochs": cfg.epochs,
            "versions": versions(), "dataset_sha256": folder.facts.dataset_sha256,
            "hardware": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                         "name": hardware_name(device)},
            **numbers}
