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


def finish_own_loop(folder: RunFolder, net, numbers: dict, seconds: float, device, precision: str = "fp32"):
    """The end of a run trained by a loop of its own (across environments, from few labels): its last weights, then
    metrics.json with `numbers` and what every such run records (parameters, device, precision, an eager step,
    threads, no temperature)."""
    import torch

    from mnistlab.models import count_params

    folder.save_weights({k: v.detach().to("cpu", copy=True).contiguous() for k, v in net.state_dict().items()})
    metrics = {**numbers, "train_seconds": seconds, "params": count_params(net), "device": str(device),
               "precision": precision, "step_kind": "eager", "threads": torch.get_num_threads(), "temperature": 1.0}
    return folder.save_metrics(final_metrics(folder, metrics, device))
