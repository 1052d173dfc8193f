"""An exponential moving average of a net's weights (Polyak averaging as in Izmailov et al. 2018's SWA and
the "EMA" of most record-setting training recipes): a copy of the net whose weights and batch-norm
statistics follow the trained ones slowly, and which is evaluated and saved in their place.

The update is three fused multi-tensor operations on the device, with its rate held in a device tensor
that the host writes in place, so it runs inside a captured CUDA graph as well as eagerly. The rate
starts fast and slows to `decay` ((1 + n) / (10 + n), as in TensorFlow's ExponentialMovingAverage with
num_updates), so an average is useful even after a short run.
"""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(net).eval()  # evaluated and saved in the trained net's place
        for p in self.module.parameters():
            p.requires_grad_(False)
        live, mine = net.state_dict(), self.module.state_dict()
        names = [k for k, v in live.items() if v.is_floating_point()]  # batch norm's step counters are copied as they are
        self._live = [live[k] for k in names]
        self._mine = [mine[k] for k in names]
        self._rate = torch.zeros((), device=self._mine[0].device if self._mine else "cpu")
        self.updates = 0

    def advance(self) -> None:
        """Host side, before a step: this update's rate (1 - the current decay)."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self._rate.fill_(1 - decay)
        self.updates += 1

    def update(self) -> None:
        """Device side, after the optimiser's step: average += rate * (weights - average)."""
        delta = torch._foreach_sub(self._live, self._mine)
        torch._foreach_mul_(delta, self._rate)
        torch._foreach_add_(self._mine, delta)

    def state_dict(self) -> dict:
        return {"module": {k: v.detach().to("cpu", copy=True) for k, v in self.module.state_dict().items()},
                "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
