"""Training across environments, one algorithm each (DomainBed's shape: `update(minibatches)` takes one batch from every
training environment and makes one optimiser step); what differs between them is the penalty, each written from its
paper and tested against a hand computation (tests/training/test_algorithms.py):

    erm       the mean of the environments' risks                                          (Vapnik 1992)
    irm       + lambda * IRMv1's squared gradient of each risk w.r.t. a dummy scale of the logits (Arjovsky et al. 2019)
    vrex      + lambda * the variance of the environments' risks                            (Krueger et al. 2021)
    groupdro  the risks weighted by q, q_e <- q_e exp(eta * risk_e), normalised              (Sagawa et al. 2020)
    coral     + gamma * the distance between the environments' feature means and covariances (Sun & Saenko 2016)

Two published conventions for the penalty's weight: "paper" (IRM's code/colored_mnist: the weight is 1 for the first
`penalty_anneal` steps, then lambda, and the whole loss is divided by lambda when lambda > 1) and "domainbed" (the same
annealing, no division, Adam restarted when lambda takes over; IRM's penalty estimated without bias from the product
of two halves of each batch's gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mnistlab.errors import InvalidArgument

ALGORITHMS = ("erm", "irm", "vrex", "groupdro", "coral")
CONVENTIONS = ("paper", "domainbed")
# each algorithm's default strength (DomainBed's hparams_registry: irm_lambda, vrex_lambda, groupdro_eta, mmd_gamma)
DEFAULT_WEIGHT = {"erm": 0.0, "irm": 1e2, "vrex": 1e1, "groupdro": 1e-2, "coral": 1.0}
DEFAULT_ANNEAL = {"irm": 500, "vrex": 500}  # steps before the penalty takes its full weight


def irm_penalty(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """IRMv1: the squared gradient of the risk with respect to a scale w multiplying the logits, at w = 1."""
    scale = torch.ones((), device=logits.device, dtype=logits.dtype, requires_grad=True)
    grad = torch.autograd.grad(F.cross_entropy(logits * scale, y), [scale], create_graph=True)[0]
    return grad.pow(2)


def irm_penalty_halves(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """DomainBed's unbiased IRMv1: the product of the gradients on the batch's even and odd places."""
    scale = torch.ones((), device=logits.device, dtype=logits.dtype, requires_grad=True)
    g1 = torch.autograd.grad(F.cross_entropy(logits[::2] * scale, y[::2]), [scale], create_graph=True)[0]
    g2 = torch.autograd.grad(F.cross_entropy(logits[1::2] * scale, y[1::2]), [scale], create_graph=True)[0]
    return g1 * g2


def risk_variance(risks: torch.Tensor) -> torch.Tensor:
    """V-REx: the variance of the environments' risks (the mean of squared deviations)."""
    return (risks - risks.mean()).pow(2).mean()


def coral_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """DomainBed's CORAL: the mean squared difference of the two feature sets' means plus that of their covariances
    (unbiased, n - 1)."""
    mean_a, mean_b = a.mean(0, keepdim=True), b.mean(0, keepdim=True)
    ca, cb = a - mean_a, b - mean_b
    cov_a, cov_b = ca.t() @ ca / (len(a) - 1), cb.t() @ cb / (len(b) - 1)
    return (mean_a - mean_b).pow(2).mean() + (cov_a - cov_b).pow(2).mean()


def groupdro_weights(q: torch.Tensor, risks: torch.Tensor, eta: float) -> torch.Tensor:
    """GroupDRO's online update: q_e <- q_e * exp(eta * risk_e), then normalised to sum to 1."""
    q = q * torch.exp(eta * risks.detach())
    return q / q.sum()


@dataclass
class Settings:
    """An algorithm's settings, resolved from a run's config."""

    name: str
    weight: float  # lambda (irm, vrex), gamma (coral), eta (groupdro); unused by erm
    anneal: int  # steps before the weight applies (irm, vrex); the weight is 1 until then
    l2: float  # IRM's code: l2 * the squared norm of every parameter, added to the loss
    convention: str  # paper | domainbed (see the module's docstring)

    @classmethod
    def from_config(cls, cfg) -> "Settings":
        name = cfg.algorithm or "erm"
        if name not in ALGORITHMS:
            from mnistlab.errors import UnknownName

            raise UnknownName("algorithm", name, ALGORITHMS)
        args = dict(cfg.algorithm_args or {})
        convention = args.pop("convention", "paper")
        if convention not in CONVENTIONS:
            raise InvalidArgument(f"algorithm convention {convention!r} is not one of {', '.join(CONVENTIONS)}")
        if args:
            raise InvalidArgument(f"unknown algorithm setting{'s' * (len(args) > 1)} {', '.join(sorted(args))}; "
                                  "the one taken is convention=paper|domainbed")
        weight = DEFAULT_WEIGHT[name] if cfg.penalty_weight is None else float(cfg.penalty_weight)
        anneal = DEFAULT_ANNEAL.get(name, 0) if cfg.penalty_anneal is None else int(cfg.penalty_anneal)
        if weight < 0 or anneal < 0:
            raise InvalidArgument(f"penalty weight and anneal steps must be >= 0, got {weight} and {anneal}")
        return cls(name, weight, anneal, float(cfg.l2_weight), convention)


@dataclass
class Algorithm:
    """One net trained across environments: `update` makes one step from one batch per environment."""

    settings: Settings
    net: torch.nn.Module
    make_optimizer: object  # () -> a fresh optimiser over the net's trainable parameters
    optimizer: object = None
    steps_done: int = 0
    q: torch.Tensor | None = None  # GroupDRO's weights over the environments
    autocast: torch.dtype | None = None  # bf16: the net's forward under autocast; the risks and penalties in fp32

    def __post_init__(self):
        if self.optimizer is None:
            self.optimizer = self.make_optimizer()

    def penalty_weight(self) -> float:
        s = self.settings
        return s.weight if self.steps_done >= s.anneal else 1.0

    def update(self, minibatches: list[tuple[torch.Tensor, torch.Tensor]], lr: float | None = None) -> dict:
        s = self.settings
        if s.convention == "domainbed" and s.name in DEFAULT_ANNEAL and self.steps_done == s.anneal and s.anneal > 0:
            self.optimizer = self.make_optimizer()  # DomainBed: Adam dislikes the jump in gradient size here
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        loss, out = self.objective(minibatches)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.steps_done += 1
        return out

    def objective(self, minibatches) -> tuple[torch.Tensor, dict]:
        """The loss of one step and what to record of it: the mean risk (nll), the penalty, the accuracy."""
        s = self.settings
        sizes = [len(y) for _, y in minibatches]
        x = torch.cat([x for x, _ in minibatches])
        with torch.autocast(x.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            if s.name == "coral":
                features = _features(self.net, x)
                logits = self.net.forward_head(features)
            else:
                logits = self.net(x)
        logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        parts = list(zip(torch.split(logits, sizes), [y for _, y in minibatches]))
        risks = torch.stack([F.cross_entropy(lg, y) for lg, y in parts])
        nll, penalty, weight = risks.mean(), torch.zeros((), device=logits.device), self.penalty_weight()
        if s.name == "irm":
            estimate = irm_penalty_halves if s.convention == "domainbed" else irm_penalty
            penalty = torch.stack([estimate(lg, y) for lg, y in parts]).mean()
        elif s.name == "vrex":
            penalty = risk_variance(risks)
        elif s.name == "coral":
            feats = torch.split(features.float() if features.dtype != torch.float64 else features, sizes)
            pairs = [(i, j) for i in range(len(feats)) for j in range(i + 1, len(feats))]
            penalty = torch.stack([coral_distance(feats[i], feats[j]) for i, j in pairs]).mean() if pairs else penalty
        if s.name == "groupdro":
            if self.q is None:
                self.q = torch.ones(len(parts), device=logits.device)
            self.q = groupdro_weights(self.q, risks, s.weight)
            loss = (self.q * risks).sum()
        elif s.name == "erm":
            loss = nll
        else:
            loss = nll + weight * penalty
        if s.l2:
            loss = loss + s.l2 * sum(p.pow(2).sum() for p in self.net.parameters() if p.requires_grad)
        if s.convention == "paper" and s.name in ("irm", "vrex") and weight > 1.0:
            loss = loss / weight  # IRM's code: keeps the gradients in a reasonable range
        correct = sum(int((lg.argmax(1) == y).sum()) for lg, y in parts)
        return loss, {"loss": float(loss.detach()), "nll": float(nll.detach()), "penalty": float(penalty.detach()), "penalty_weight": weight,
                      "train_accuracy": correct / max(sum(sizes), 1)}

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "steps_done": self.steps_done,
                "q": None if self.q is None else self.q.detach().cpu()}

    def load_state_dict(self, state: dict) -> None:
        self.steps_done = int(state["steps_done"])
        self.optimizer.load_state_dict(state["optimizer"])  # after a restart (domainbed), the restarted one's state
        device = next(self.net.parameters()).device
        self.q = None if state.get("q") is None else state["q"].to(device)


def _features(net, x):
    if not callable(getattr(net, "forward_features", None)) or not callable(getattr(net, "forward_head", None)):
        raise InvalidArgument("--algorithm coral aligns the penultimate features: the model needs forward_features and "
                              "forward_head (mnistlab's Net has them)")
    return net.forward_features(x)
