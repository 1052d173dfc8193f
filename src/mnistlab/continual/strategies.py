"""Continual-learning strategies, each written from its paper and checked against a hand computation on a tiny problem
(tests/continual/test_strategies.py). A strategy is asked at four moments of the loop (continual/loop.py):

    batch(x, y, t)        the images of a step: the task's own, and for replay a sample of the buffer beside them
    penalty(net)          a term added to the loss (EWC, SI, LwF)
    after_backward(net)   the gradients before the optimiser's step (A-GEM's projection)
    after_step(net)       after the step (SI's path integral)
    after_task(...)       at a task's end (EWC's Fisher, SI's importance, LwF's copy of the net, the buffer)

    naive        fine-tuning: nothing but the task's own loss
    joint        the upper bound: each step draws from every task seen so far (cumulative)
    ewc          + lambda/2 sum_k F_k (theta - theta*_k)^2, a Fisher diagonal per past task (Kirkpatrick et al. 2017)
    online-ewc   one running Fisher, F <- gamma F + F_new, and one anchor (Schwarz et al. 2018)
    si           + c sum omega (theta - theta*)^2, omega from each parameter's path integral (Zenke et al. 2017)
    lwf          + T^2 x cross-entropy between the previous net's and this net's softened outputs on the task's
                 images: over every output seen so far (the new ones' targets 0), per earlier task, or over all, by
                 scenario; in task t the task's own loss weighs 1/t and this 1 - 1/t (Li & Hoiem 2016; van de Ven's
                 form)
    replay       experience replay: a reservoir buffer of N images (Vitter's algorithm R), a sample of it with every
                 batch (Chaudhry et al. 2019, "tiny episodic memories")
    agem         the gradient projected so that the loss on a buffer sample does not rise (Chaudhry et al. 2019)
    gdumb        a class-balanced greedy buffer, and a net trained from scratch on it alone after each task
                 (Prabhu et al. 2020)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from mnistlab.errors import InvalidArgument, UnknownName

STRATEGIES = ("naive", "joint", "ewc", "online-ewc", "si", "lwf", "replay", "agem", "gdumb")
WITH_BUFFER = ("replay", "agem", "gdumb")
DISTILLATIONS = ("sum", "mean")  # how LwF's term takes the classes (distillation_loss)


# ------------------------------------------------------------------------------------------- hand-checkable pieces

def masked_logits(logits: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """Outputs outside `active` (a bool mask, per row or shared) cannot win: set to -inf."""
    return logits.masked_fill(~active, float("-inf"))


def distillation_loss(new_logits: torch.Tensor, old_logits: torch.Tensor, temperature: float,
                      over_classes: str = "sum") -> torch.Tensor:
    """LwF's term: the cross-entropy of the new net's softened outputs against the old net's, times T^2 (so its
    gradients keep their scale as T changes), averaged over the batch. Where the new net has more outputs than the
    old one (the class scenario's new classes, last), the old net's probability for each of them is 0 (van de Ven's
    `loss_fn_kd`). `over_classes`: "sum" (a cross-entropy, as Hinton et al. and van de Ven's code since May 2019) or
    "mean" (divided by the outputs compared: the code released with van de Ven & Tolias 2019's table)."""
    target = F.softmax(old_logits / temperature, dim=1)
    target = F.pad(target, (0, new_logits.shape[1] - old_logits.shape[1]))
    per_image = -(target * F.log_softmax(new_logits / temperature, dim=1)).sum(1)
    if over_classes == "mean":
        per_image = per_image / new_logits.shape[1]
    return per_image.mean() * temperature ** 2


def agem_project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """A-GEM: if g would raise the reference loss (g . g_ref < 0), remove its component along g_ref."""
    dot = torch.dot(g, g_ref)
    if dot < 0:
        return g - dot / torch.dot(g_ref, g_ref) * g_ref
    return g


def fisher_diagonal(net: torch.nn.Module, x: torch.Tensor, active: torch.Tensor, batch: int = 256) -> dict:
    """The diagonal of the Fisher information at the net's weights, over images x: the mean over images of
    sum_c p(c|x) (d log p(c|x) / d theta)^2 among the active outputs (the expected Fisher, the labels weighted by the
    net's own probabilities, as van de Ven's code computes it), from per-image gradients (torch.func)."""
    from torch.func import functional_call, grad, vmap

    params = {n: p.detach() for n, p in net.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in net.named_buffers()}
    was_training = net.training
    net.eval()
    active = active.to(x.device)

    def log_p(p, xi, c):
        logits = functional_call(net, (p, buffers), (xi[None],))[0]
        return F.log_softmax(masked_logits(logits, active), dim=0)[c]

    per_image = vmap(grad(log_p), in_dims=(None, 0, None))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i:i + batch]
            probs = F.softmax(masked_logits(net(xb), active), dim=1)
            for c in torch.nonzero(active).flatten().tolist():
                g = per_image(params, xb, c)
                for n in total:
                    total[n] += torch.einsum("b,b...->...", probs[:, c], g[n] ** 2)
    net.train(was_training)
    return {n: v / len(x) for n, v in total.items()}


class Reservoir:
    """Vitter's reservoir sampling: after n items offered, each is in the buffer with probability capacity / n."""

    def __init__(self, capacity: int, seed: int):
        self.capacity, self.seen = capacity, 0
        self.rng = np.random.default_rng(seed)
        self.items: list = []

    def offer(self, item) -> None:
        self.seen += 1
        if len(self.items) < self.capacity:
            self.items.append(item)
        else:
            j = int(self.rng.integers(self.seen))
            if j < self.capacity:
                self.items[j] = item


class ClassBalanced:
    """GDumb's greedy sampler: take an item while there is room; when full, take it only if its class holds fewer than
    capacity / (classes seen), in place of a random item of the largest class."""

    def __init__(self, capacity: int, seed: int):
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.items: list = []  # (key, label) pairs

    def offer(self, item, label: int) -> None:
        if len(self.items) < self.capacity:
            self.items.append((item, label))
            return
        counts: dict[int, int] = {}
        for _, c in self.items:
            counts[c] = counts.get(c, 0) + 1
        if counts.get(label, 0) < self.capacity / (len(counts) + (label not in counts)):
            largest = max(counts, key=lambda c: (counts[c], c))
            places = [i for i, (_, c) in enumerate(self.items) if c == largest]
            self.items[places[int(self.rng.integers(len(places)))]] = (item, label)


# --------------------------------------------------------------------------------------------------- strategies

@dataclass
class Settings:
    strength: float | None = None  # EWC's lambda, SI's c, LwF's weight (None: the preset's or 1)
    gamma: float = 1.0  # online EWC's decay
    temperature: float = 2.0  # LwF's
    damping: float = 0.1  # SI's xi
    buffer: int = 0
    fisher_samples: int = 1000
    distillation: str = "sum"  # LwF's sum over classes, or "mean" (see distillation_loss)


class Strategy:
    name = "naive"
    seed = 0

    def __init__(self, settings: Settings, seed: int):
        self.settings, self.seed = settings, seed

    def batch(self, x, y, t: int, learner) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return x, y, torch.full((len(y),), t, dtype=torch.long, device=y.device)

    def penalty(self, net, x) -> torch.Tensor | float:
        return 0.0

    def current_weight(self, t: int) -> float:
        """The weight of the current task's own loss in task t (LwF gives the earlier tasks the rest)."""
        return 1.0

    def after_backward(self, net, learner) -> None:
        pass

    def after_step(self, net) -> None:
        pass

    def after_task(self, net, learner, t: int, rows: np.ndarray) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Naive(Strategy):
    name = "naive"


class Joint(Strategy):
    """Each step's batch drawn from the union of every task seen so far (the loop's draw asks `tasks_to_draw`)."""

    name = "joint"

    def tasks_to_draw(self, t: int) -> list[int]:
        return list(range(t + 1))


class EWC(Strategy):
    name = "ewc"
    online = False

    def __init__(self, settings, seed):
        super().__init__(settings, seed)
        self.anchors: list[dict] = []  # per past task (offline) or one (online): {"mean": {...}, "fisher": {...}}

    def penalty(self, net, x):
        if not self.anchors:
            return 0.0
        params = dict(net.named_parameters())
        total = 0.0
        for a in self.anchors:
            scale = self.settings.gamma if self.online else 1.0
            total = total + sum((scale * a["fisher"][n] * (params[n] - a["mean"][n]) ** 2).sum() for n in a["fisher"])
        return 0.5 * self.settings.strength * total

    def after_task(self, net, learner, t, rows):
        gen = torch.Generator().manual_seed(self.seed * 1009 + t)
        pick = rows[torch.randperm(len(rows), generator=gen)[: self.settings.fisher_samples].numpy()]
        x = learner.images(t, pick)
        fisher = fisher_diagonal(net, x, learner.active_mask(t, t + 1))
        mean = {n: p.detach().clone() for n, p in net.named_parameters() if p.requires_grad}
        if self.online and self.anchors:
            old = self.anchors[0]["fisher"]
            fisher = {n: self.settings.gamma * old[n] + fisher[n] for n in fisher}
            self.anchors = []
        self.anchors.append({"mean": mean, "fisher": fisher})

    def state_dict(self):
        return {"anchors": self.anchors}

    def load_state_dict(self, state):
        self.anchors = list(state["anchors"])


class OnlineEWC(EWC):
    name = "online-ewc"
    online = True


class SI(Strategy):
    """Zenke et al.: during a task, w_k += -g_k * delta_k at every step (the gradient of the loss the optimiser
    followed times the parameter's change); at its end omega_k += w_k / (Delta_k^2 + xi), with Delta_k the change
    over the task, and the anchor moves to the task's end."""

    name = "si"

    def __init__(self, settings, seed):
        super().__init__(settings, seed)
        self.omega: dict = {}
        self.anchor: dict = {}
        self.w: dict = {}
        self.before: dict = {}

    def _start(self, net):
        params = {n: p for n, p in net.named_parameters() if p.requires_grad}
        if not self.anchor:
            self.anchor = {n: p.detach().clone() for n, p in params.items()}
        self.w = {n: torch.zeros_like(p) for n, p in params.items()}
        self.before = {n: p.detach().clone() for n, p in params.items()}

    def penalty(self, net, x):
        if not self.w:
            self._start(net)
        if not self.omega:
            return 0.0
        params = dict(net.named_parameters())
        return self.settings.strength * sum((self.omega[n] * (params[n] - self.anchor[n]) ** 2).sum() for n in self.omega)

    def after_backward(self, net, learner):
        self.grads = {n: p.grad.detach().clone() for n, p in net.named_parameters() if p.grad is not None}

    def after_step(self, net):
        for n, p in net.named_parameters():
            if n in self.w:
                if n in self.grads:
                    self.w[n] -= self.grads[n] * (p.detach() - self.before[n])
                self.before[n] = p.detach().clone()

    def after_task(self, net, learner, t, rows):
        for n, p in net.named_parameters():
            if n in self.w:
                delta = p.detach() - self.anchor[n]
                self.omega[n] = self.omega.get(n, torch.zeros_like(p)) + self.w[n] / (delta ** 2 + self.settings.damping)
                self.anchor[n] = p.detach().clone()
        self.w = {}

    def state_dict(self):
        return {"omega": self.omega, "anchor": self.anchor}

    def load_state_dict(self, state):
        self.omega, self.anchor, self.w = dict(state["omega"]), dict(state["anchor"]), {}


class LwF(Strategy):
    """After the first task, a frozen copy of the net; each batch's loss gains, on the current images, the distillation
    between the copy's outputs and the net's, as the code of van de Ven & Tolias 2019 ("Three scenarios for continual
    learning", `loss_fn_kd`) has it in each scenario: class, one term over every output seen so far, the copy's
    probabilities for the current task's outputs taken as 0 (so the net is also taught to keep the new classes from
    taking the old ones' images); task, the mean of one term per earlier task over its own outputs; domain, one over
    all outputs. In task t (counting from 1) the task's own loss weighs 1/t and the distillation 1 - 1/t (times
    `strength`)."""

    name = "lwf"

    def __init__(self, settings, seed):
        super().__init__(settings, seed)
        self.old, self.task = None, 0
        self.pairs = []  # (the net's outputs, the copy's outputs) of each distillation term

    def batch(self, x, y, t, learner):
        self.task = t
        return super().batch(x, y, t, learner)

    def current_weight(self, t):
        return 1.0 / (t + 1)

    def penalty(self, net, x):
        if self.old is None:
            return 0.0
        with torch.no_grad():
            old = self.old(x)
        new = net(x)
        terms = [distillation_loss(new[:, mine], old[:, theirs], self.settings.temperature, self.settings.distillation)
                 for mine, theirs in self.pairs]
        strength = 1.0 if self.settings.strength is None else self.settings.strength
        return strength * (1 - 1 / (self.task + 1)) * sum(terms) / len(terms)

    def after_task(self, net, learner, t, rows):
        self.old = copy.deepcopy(net).eval()
        for p in self.old.parameters():
            p.requires_grad_(False)
        scenario = learner.bench.scenario

        def ids(task, seen):
            return torch.nonzero(learner.active_mask(task, seen)).flatten()

        if scenario == "task":
            self.pairs = [(ids(c, t + 1), ids(c, t + 1)) for c in range(t + 1)]
        elif scenario == "class":  # the next task's outputs, all seen so far, against the copy's (the first ones)
            later = min(t + 1, len(learner.bench.tasks) - 1)
            self.pairs = [(ids(later, later + 1), ids(t, t + 1))]
        else:
            self.pairs = [(ids(t, t + 1), ids(t, t + 1))]

    def state_dict(self):
        return {"old": None if self.old is None else self.old.state_dict(),
                "pairs": [(mine.cpu(), theirs.cpu()) for mine, theirs in self.pairs]}

    def load_state_dict(self, state):
        self.old_state, self.pairs = state["old"], list(state.get("pairs", []))
        if state.get("old_active") is not None:  # a checkpoint of the version that distilled the last task's outputs
            self.pairs = [(state["old_active"], state["old_active"])]

    def restore(self, net):
        """After load_state_dict: the frozen copy rebuilt from the net's architecture."""
        if getattr(self, "old_state", None) is not None:
            self.old = copy.deepcopy(net).eval()
            self.old.load_state_dict(self.old_state)
            for p in self.old.parameters():
                p.requires_grad_(False)
            device = next(net.parameters()).device
            self.pairs = [(mine.to(device), theirs.to(device)) for mine, theirs in self.pairs]


class Replay(Strategy):
    """A reservoir of (task, row) pairs offered every training image; each batch gains an equal-sized sample of it."""

    name = "replay"

    def __init__(self, settings, seed):
        super().__init__(settings, seed)
        self.buffer = Reservoir(settings.buffer, seed)
        self.gen = torch.Generator().manual_seed(seed + 7)

    def sample(self, n: int) -> list:
        idx = torch.randint(len(self.buffer.items), (min(n, len(self.buffer.items)),), generator=self.gen)
        return [self.buffer.items[i] for i in idx.tolist()]

    def batch(self, x, y, t, learner):
        x, y, tasks = super().batch(x, y, t, learner)
        if not self.buffer.items:
            return x, y, tasks
        xr, yr, tr = learner.gather(self.sample(len(y)))
        return torch.cat([x, xr]), torch.cat([y, yr]), torch.cat([tasks, tr])

    def after_task(self, net, learner, t, rows):
        for r in rows.tolist():
            self.buffer.offer((t, r))

    def state_dict(self):
        return {"items": torch.tensor(self.buffer.items, dtype=torch.long).reshape(-1, 2), "seen": self.buffer.seen,
                "rng": self.buffer.rng.bit_generator.state, "gen": self.gen.get_state()}

    def load_state_dict(self, state):
        self.buffer.items = [tuple(r) for r in state["items"].tolist()]
        self.buffer.seen = int(state["seen"])
        self.buffer.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])


class AGEM(Replay):
    """A-GEM: no replayed images in the loss; after backward, the gradient is projected against a buffer sample's."""

    name = "agem"
    sample_size = 256

    def batch(self, x, y, t, learner):
        return Strategy.batch(self, x, y, t, learner)

    def after_backward(self, net, learner):
        if not self.buffer.items:
            return
        params = [p for p in net.parameters() if p.grad is not None]
        g = torch.cat([p.grad.flatten() for p in params])
        xr, yr, tr = learner.gather(self.sample(self.sample_size))
        ref_loss = learner.loss(net, xr, yr, tr)
        g_ref = torch.cat([gr.flatten() for gr in torch.autograd.grad(ref_loss, params)])
        g = agem_project(g, g_ref)
        i = 0
        for p in params:
            p.grad.copy_(g[i:i + p.numel()].view_as(p))
            i += p.numel()


class GDumb(Replay):
    """GDumb: the images only go to its class-balanced buffer; after each task the net is trained from scratch on the
    buffer alone (the loop's `retrain`) and that is the net evaluated."""

    name = "gdumb"
    retrains = True

    def __init__(self, settings, seed):
        Strategy.__init__(self, settings, seed)
        self.buffer = ClassBalanced(settings.buffer, seed)
        self.gen = torch.Generator().manual_seed(seed + 7)

    def after_task(self, net, learner, t, rows):
        labels = learner.labels_of(t, rows)
        for r, c in zip(rows.tolist(), labels.tolist()):
            self.buffer.offer((t, r), c)

    def sample(self, n: int) -> list:
        idx = torch.randint(len(self.buffer.items), (n,), generator=self.gen)
        return [self.buffer.items[i][0] for i in idx.tolist()]

    def state_dict(self):
        return {"items": torch.tensor([[t, r, c] for (t, r), c in self.buffer.items], dtype=torch.long).reshape(-1, 3),
                "rng": self.buffer.rng.bit_generator.state, "gen": self.gen.get_state()}

    def load_state_dict(self, state):
        self.buffer.items = [((t, r), c) for t, r, c in state["items"].tolist()]
        self.buffer.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])


CLASSES = {c.name: c for c in (Naive, Joint, EWC, OnlineEWC, SI, LwF, Replay, AGEM, GDumb)}


def make_strategy(name: str, settings: Settings, seed: int) -> Strategy:
    if name not in CLASSES:
        raise UnknownName("strategy", name, STRATEGIES)
    if name in WITH_BUFFER and settings.buffer < 1:
        raise InvalidArgument(f"strategy {name} keeps a buffer of images: give its size with --buffer N")
    if name not in WITH_BUFFER and settings.buffer:
        raise InvalidArgument(f"strategy {name} keeps no buffer; --buffer is for {', '.join(WITH_BUFFER)}")
    if settings.strength is None:
        settings = Settings(**{**settings.__dict__, "strength": 1.0})
    if settings.strength < 0 or not 0 < settings.gamma <= 1 or settings.temperature <= 0 or settings.damping <= 0:
        raise InvalidArgument("strength must be >= 0, gamma in (0, 1], temperature and damping > 0")
    if settings.distillation not in DISTILLATIONS:
        raise InvalidArgument(f"distillation must be one of {', '.join(DISTILLATIONS)}, got {settings.distillation!r}")
    return CLASSES[name](settings, seed)
