"""FGSM and PGD under l_inf on [0, 1] pixels (Goodfellow et al. 2015; Madry et al. 2018), batched on any device.

One signed-gradient ascent (`ascend`) serves the evaluation here and adversarial training (training/adversarial.py):
from a start inside the eps-ball (the image itself, or uniform noise in the ball), each step moves every pixel by
`step_size` in the sign of the loss's gradient, then projects back into the ball and into [0, 1]. FGSM is one step of
eps from the image; PGD is `steps` steps of `step_size` from a random start, restarted `restarts` times. An image
counts as robust when the model reads it right and no point PGD visits (any step, any restart) is read wrong: every
such point lies within eps, so each is a valid adversarial example.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

EPSILONS = (0.1, 0.2, 0.3)  # the MNIST challenge's budget is 0.3
STEPS, STEP_SIZE = 40, 0.01  # the challenge's PGD: 40 steps of 0.01 from a random start


class LogProbabilities(torch.nn.Module):
    """The whole prediction of a run as log-probabilities: each net as it predicts (test-time views included) with
    its logits divided by its temperature; several (an ensemble's members) averaged in probability, as
    `Run.predict_proba` does."""

    def __init__(self, nets: list[torch.nn.Module], temperatures: list[float]):
        super().__init__()
        self.nets = torch.nn.ModuleList(nets)
        self.temperatures = list(map(float, temperatures))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logs = [F.log_softmax(net(x).float() / t, dim=1) for net, t in zip(self.nets, self.temperatures)]
        if len(logs) == 1:
            return logs[0]
        return torch.logsumexp(torch.stack(logs), 0) - math.log(len(logs))


def start_point(x: torch.Tensor, eps: float, random: bool, gen: torch.Generator | None = None) -> torch.Tensor:
    """The image itself, or a uniform draw in its eps-ball (kept in [0, 1])."""
    if not random:
        return x.clone()
    noise = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) * (2 * eps) - eps
    return (x + noise).clamp(0, 1)


def ascend(loss_of, x: torch.Tensor, start: torch.Tensor, eps: float, steps: int, step_size: float,
           watch=None) -> torch.Tensor:
    """`steps` signed-gradient steps on `loss_of(images) -> (summed loss, outputs)` from `start`, each projected
    into the eps-ball around `x` and into [0, 1]; `watch(outputs)` sees the model's outputs at every point visited
    (before each step), so a caller can count the images fooled on the way."""
    adv = start.detach()
    for _ in range(steps):
        adv.requires_grad_(True)
        with torch.enable_grad():  # callers may hold no_grad around an evaluation
            loss, outputs = loss_of(adv)
            grad, = torch.autograd.grad(loss, adv)
        if watch is not None:
            watch(outputs.detach())
        adv = torch.minimum(torch.maximum(adv.detach() + step_size * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def _loss_of(model, y):
    def loss_of(images):
        logp = model(images)
        return F.nll_loss(logp, y, reduction="sum"), logp
    return loss_of


def fgsm(model, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """The fast gradient sign method: one step of eps from the image. `model` gives log-probabilities."""
    return ascend(_loss_of(model, y), x, x, eps, 1, eps)


def pgd(model, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = STEPS, step_size: float = STEP_SIZE,
        restarts: int = 1, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected gradient descent from a random start, `restarts` times: (the last restart's images, and per image
    whether any point visited fooled the model, its clean reading included)."""
    fooled = model(x).argmax(1) != y
    adv = x
    for _ in range(restarts):
        def watch(logp):
            fooled.logical_or_(logp.argmax(1) != y)
        adv = ascend(_loss_of(model, y), x, start_point(x, eps, True, gen), eps, steps, step_size, watch)
        with torch.no_grad():
            fooled.logical_or_(model(adv).argmax(1) != y)
    return adv, fooled
