"""Training: `train(model, dataset, **settings) -> Run`, `load_run(path)`, the config, augmentation and schedules."""

from mnistlab.config import TrainConfig, resolve_config
from mnistlab.run import Run, load_run
from mnistlab.training.trainer import train

__all__ = ["Run", "TrainConfig", "load_run", "resolve_config", "train"]
