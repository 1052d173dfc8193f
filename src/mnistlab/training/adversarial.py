"""Adversarial training: each batch is attacked before the step learns from it (Madry et al. 2018).

Two attacks, both l_inf on [0, 1] pixels, through the same signed-gradient ascent as `mnistlab robustness`
(robustness/attacks.py):
- pgd: k steps of `step_size` from a random start in the eps-ball (the MNIST challenge's net: 40 steps of 0.01);
  k + 1 forward and backward passes per batch.
- fgsm: one step of 1.25 eps from a random start (Wong, Rice and Kolter 2020, "Fast is better than free"): two passes
  per batch, the cheap way.
The step object (training/step.py) calls `Adversary.attack` on each batch with the net's weights and number format as
it trains, so it runs with every engine: eager, bf16 autocast, and inside the CUDA graph's capture (its random start
comes from the device's default generator, which graphs replay). The attack sees the net as it predicts (`frozen`:
evaluation mode), as MadryLab's robustness library attacks: BatchNorm's running statistics are updated once per
batch, by the step's own pass over the final adversarial images, never by the k intermediate ones, and dropout
does not redraw its mask between ascent steps (an ascent on a net that changes under it is no steepest ascent).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mnistlab.robustness.attacks import STEP_SIZE, ascend, start_point
from mnistlab.vocabulary import ADVERSARIAL as KINDS  # noqa: F401  (training's name for it)
from mnistlab.vocabulary import check_adversarial

FGSM_STEP = 1.25  # Wong et al.'s step, in units of eps


@contextmanager
def frozen(net: torch.nn.Module):
    """The net in evaluation mode for the attack, then back in the mode it was in."""
    was_training = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was_training)


@dataclass(frozen=True)
class Adversary:
    kind: str  # fgsm | pgd
    eps: float  # the l_inf budget on [0, 1] pixels
    steps: int  # ascent steps (fgsm: 1)
    step_size: float

    @classmethod
    def from_config(cls, cfg) -> "Adversary | None":
        """The training attack a TrainConfig asks for (None for adversarial = none); its settings checked."""
        kind = check_adversarial(cfg)
        if kind == "none":
            return None
        default = FGSM_STEP * cfg.adversarial_eps if kind == "fgsm" else STEP_SIZE
        return cls(kind, float(cfg.adversarial_eps), 1 if kind == "fgsm" else cfg.adversarial_steps,
                   float(cfg.adversarial_step_size or default))

    def attack(self, forward, x: torch.Tensor, y: torch.Tensor, autocast) -> torch.Tensor:
        """`x` moved within eps (and [0, 1]) to raise `forward`'s loss on labels `y`."""
        def loss_of(images):
            with autocast():
                logits = forward(images)
            return F.cross_entropy(logits.float(), y, reduction="sum"), logits

        return ascend(loss_of, x, start_point(x, self.eps, True), self.eps, self.steps, self.step_size)
