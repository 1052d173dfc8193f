"""One training step, two ways to run it.

The epoch loop calls `step(x, y, lr, gen)` once per batch of images already augmented one by one
(training/batches.py); the step object owns what happens then (label mixing, forward, loss, backward, the
optimiser update, the weight average's update; first, in adversarial training, the attack) and keeps the running loss, accuracy and image count on the
device, so the loop never waits for the accelerator; `totals()` reads them.

- EagerStep: PyTorch as written, on any device, in fp32 or under bf16 autocast.
- GraphStep (CUDA): after a few eager steps on a side stream, the whole step is captured once in a
  CUDA graph and then replayed per batch: one launch instead of hundreds. Batches are copied into
  static input buffers; the learning rate is a device tensor that `step` fills in place and the
  optimiser is capturable, so the schedule never forces a recapture; random numbers (label mixing,
  dropout) come from the device's default generator, which CUDA graphs replay correctly. A batch of
  another size (the last, partial one) runs eagerly on the same weights and optimiser state.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from mnistlab.models import has_convolutions
from mnistlab.training.adversarial import Adversary, frozen
from mnistlab.training.augment import Augment, mix_batch
from mnistlab.training.averaging import WeightAverage
from mnistlab.training.engine import Engine

log = logging.getLogger("mnistlab")


class EagerStep:
    def __init__(self, net, optimizer, engine: Engine, *, label_smoothing: float = 0.0, augment: Augment | None = None,
                 forward=None, average: WeightAverage | None = None, adversary: Adversary | None = None,
                 logit_norm: float | None = None):
        self.net, self.opt, self.engine = net, optimizer, engine
        self.adversary = adversary  # adversarial training: each batch attacked first (training/adversarial.py)
        self.forward = forward or net  # DistributedDataParallel wraps the net for the step
        self.label_smoothing = label_smoothing
        self.logit_norm = logit_norm  # LogitNorm (Wei et al. 2022): the loss of unit-length logits over this temperature
        self.augment = augment or Augment()  # only its label mixing (mixup, cutmix) happens here: it needs the batch
        self.average = average
        self.channels_last = has_convolutions(net)
        dev = engine.device
        self._loss = torch.zeros((), device=dev)
        self._correct = torch.zeros((), device=dev, dtype=torch.long)
        self._seen = 0

    def _autocast(self):
        dtype = self.engine.autocast_dtype
        return torch.autocast(self.engine.device.type, dtype=dtype) if dtype is not None else nullcontext()

    def _set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"] = lr

    def _prepare(self, lr: float) -> None:
        """The host's part of a step: this step's learning rate and weight-average rate, written in place."""
        self._set_lr(lr)
        if self.average is not None:
            self.average.advance()

    def _criterion(self, logits, y, mixed):
        if self.logit_norm is not None:
            logits = logit_normalised(logits, self.logit_norm)
        ce = lambda target, reduction: F.cross_entropy(logits, target, label_smoothing=self.label_smoothing,  # noqa: E731
                                                       reduction=reduction)
        if mixed is None:
            return ce(y, "mean")
        y2, weight = mixed
        return (weight * ce(y, "none") + (1 - weight) * ce(y2, "none")).mean()

    def _compute(self, x, y, gen):
        """Mix labels, forward, loss, backward, update; returns this batch's summed loss and correct count."""
        mixed = None
        if self.adversary is not None:
            with frozen(self.net):
                x = self.adversary.attack(self.forward, x, y, self._autocast)
        if self.augment.mixing:
            x, *mixed = mix_batch(x, y, self.augment, gen)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            logits = self.forward(x)
        loss = self._criterion(logits.float(), y, mixed)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.average is not None:
            self.average.update()
        return loss.detach() * len(y), (logits.argmax(1) == y).sum()

    def __call__(self, x, y, lr: float, gen: torch.Generator | None = None) -> None:
        self._prepare(lr)
        loss, correct = self._compute(x, y, gen)
        self._loss += loss
        self._correct += correct
        self._seen += len(y)

    def reset(self) -> None:
        """Zero the running totals (at the start of an epoch)."""
        self._loss.zero_()
        self._correct.zero_()
        self._seen = 0

    def snapshot(self) -> tuple:
        """The running totals as they are now, without waiting for the device: (seen, loss, correct tensors)."""
        return self._seen, self._loss.clone(), self._correct.clone()

    def optimizer_state(self) -> dict:
        """The optimiser's state for a checkpoint, learning rates as plain numbers (whichever step wrote
        it, any step can resume from it)."""
        state = self.opt.state_dict()
        for g in state["param_groups"]:
            g["lr"] = float(g["lr"])
        return state

    def totals(self) -> tuple[int, float, int]:
        """Images seen, summed loss and correct predictions since `reset`; waits for the device."""
        return self._seen, float(self._loss.item()), int(self._correct.item())


class GraphStep(EagerStep):
    WARMUP_STEPS = 3  # eager steps before the capture: cuDNN picks its kernels, the optimiser makes its state

    def __init__(self, net, optimizer, engine: Engine, *, batch_size: int, **kw):
        super().__init__(net, optimizer, engine, **kw)
        dev = engine.device
        self.batch_size = batch_size
        for g in self.opt.param_groups:  # the learning rate lives on the device, filled in place per step
            g["lr"] = torch.tensor(float(g["lr"]), device=dev)
        self.static_x = torch.zeros(batch_size, 1, 28, 28, device=dev)
        self.static_y = torch.zeros(batch_size, dtype=torch.long, device=dev)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.eager = False  # the capture failed: every step runs eagerly
        self._warm = 0

    def _set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            g["lr"].fill_(lr)

    def _capture(self) -> None:
        """Capture one step; a net that cannot be captured (it syncs with the host, changes shape with its input...)
        falls back to the eager step, said in one line."""
        graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)  # the graph allocates the gradients from its own pool
        try:
            with torch.cuda.graph(graph):
                loss, correct = self._compute(self.static_x, self.static_y, None)
                self._loss += loss
                self._correct += correct
        except Exception as exc:
            torch.cuda.synchronize()
            self.opt.zero_grad(set_to_none=True)
            self.eager = True
            log.warning("this net cannot be captured in a CUDA graph (%s: %s); training on with the eager step",
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            return
        self.graph = graph

    def __call__(self, x, y, lr: float, gen: torch.Generator | None = None) -> None:
        if self.eager:
            super().__call__(x, y, lr, None)
            return
        if len(y) != self.batch_size:
            super().__call__(x, y, lr, None)
            return
        self._prepare(lr)
        if self.graph is None and self._warm < self.WARMUP_STEPS:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss, correct = self._compute(x, y, None)
                self._loss += loss
                self._correct += correct
            torch.cuda.current_stream().wait_stream(side)
            self._warm += 1
            self._seen += len(y)
            return
        if self.graph is None:
            self._capture()
            if self.eager:
                super().__call__(x, y, lr, None)
                return
        self.static_x.copy_(x)
        self.static_y.copy_(y)
        self.graph.replay()
        self._seen += len(y)


def logit_normalised(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """LogitNorm's logits: each row scaled to unit length (plus 1e-7, as the authors' code), over the temperature."""
    return logits / (logits.norm(p=2, dim=-1, keepdim=True) + 1e-7) / temperature


def make_step(net, optimizer, engine: Engine, *, batch_size: int, label_smoothing: float, augment: Augment,
              forward=None, average: WeightAverage | None = None, adversary: Adversary | None = None,
              logit_norm: float | None = None) -> EagerStep:
    kw = {"label_smoothing": label_smoothing, "augment": augment, "forward": forward, "average": average,
          "adversary": adversary, "logit_norm": logit_norm}
    if engine.step == "cuda-graph":
        return GraphStep(net, optimizer, engine, batch_size=batch_size, **kw)
    return EagerStep(net, optimizer, engine, **kw)


def make_optimizer(name: str, params, lr: float, weight_decay: float, engine: Engine):
    """The optimiser of a run; on CUDA the fused implementation (one kernel for all parameters), and
    capturable for a CUDA-graph step (its step counter and learning rate on the device)."""
    fast = {}
    if engine.device.type in ("cuda", "cpu") and name in ("adam", "adamw"):
        fast = {"fused": True, "capturable": engine.step == "cuda-graph"}
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **fast)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **fast)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    return torch.optim.Adadelta(params, lr=lr, weight_decay=weight_decay)
