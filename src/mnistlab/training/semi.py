"""Semi-supervised training from few labels: `--labels N` labelled training images (balanced per class, seeded), the
rest of the training set unlabelled, and `--semi` the way the unlabelled images teach the net:

    pseudo-label   the net's own confident answers (max probability >= threshold) on the unlabelled images taken as
                   their labels, the loss on them weighed up from 0 (Lee 2013)
    fixmatch       the confident answers on a weakly augmented copy are the labels of a strongly augmented copy
                   (Sohn et al. 2020: threshold 0.95, `unlabelled_ratio` unlabelled images per labelled one)
    mean-teacher   the net's answers pulled towards those of its exponential moving average (the teacher) on other
                   augmentations of the same images, the consistency weight ramped up (Tarvainen & Valpola 2017)

With `--align` (fixmatch, pseudo-label) the answers on unlabelled images are distribution-aligned before the
threshold (ReMixMatch; `Alignment`). With `--ema D` the weights' moving average (decay D) is what is evaluated and
saved, for every method (FixMatch's paper evaluates such an average, decay 0.999). Without `--semi`, `--labels N`
trains on the N labelled images alone with the same steps: the supervised baseline.

    train_semi -> per block of `checkpoint_every` steps (the block's generator seeded from (seed, block)):
                  a labelled batch (weak augmentation) and an unlabelled one, one forward pass over them all, the
                  labelled loss + weight(step) x the method's unlabelled loss, the step; then the row (test accuracy,
                  how many pseudo-labels were used and, for the record only, how many were right) and the checkpoint.

The unlabelled images' labels never enter training: the loop's unlabelled tensor holds images only (a test scrambles
those labels and gets the same weights). Validation (`val_split`) is a held-out labelled set, never the test set.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np

from mnistlab.errors import InvalidArgument
from mnistlab.split import MIN_CALIBRATION_IMAGES, Split, _balanced_subset

log = logging.getLogger(__name__)

METHODS = ("fixmatch", "mean-teacher", "pseudo-label")
DEFAULT_STEPS = 5000
WEAK = "shift=0.125"  # FixMatch's weak augmentation for digits: a translation of up to an eighth (no flips)
STRONG = "rotate=25,shift=0.2,scale=0.2,shear=20,elastic=0.5,erase=1"  # strong: distortions, and always a cutout


def labelled_split(labels: np.ndarray, cfg, num_classes: int) -> Split:
    """A semi-supervised run's split: `val_split` held-out labelled images for validation (and calibration), then
    `labels` images balanced per class, the first of each class in the seed's order; every other training image is
    unlabelled (`unlabelled_rows`)."""
    n = len(labels)
    order = np.random.default_rng(cfg.seed).permutation(n)
    val = np.sort(order[:cfg.val_split])
    labelled = _balanced_subset(order[cfg.val_split:], labels, cfg.labels, num_classes)
    calib = val if len(val) >= MIN_CALIBRATION_IMAGES else np.zeros(0, np.int64)
    return Split(np.sort(labelled), val, calib)


def unlabelled_rows(n: int, split: Split) -> np.ndarray:
    keep = np.ones(n, bool)
    keep[np.concatenate([split.train, split.val, split.calibration])] = False
    return np.flatnonzero(keep)


def check_semi(cfg, spec, family: str) -> None:
    """Bad settings for training from few labels, in one line each, before any run folder."""
    if cfg.semi is not None and cfg.labels is None:
        raise InvalidArgument(f"--semi {cfg.semi} learns from a few labels and the rest unlabelled: say how many are "
                              "labelled with --labels N (e.g. --labels 100)")
    if cfg.labels is None:
        return
    if cfg.semi is not None and cfg.semi not in METHODS:
        from mnistlab.errors import UnknownName

        raise UnknownName("semi-supervised method", cfg.semi, METHODS)
    if cfg.align and cfg.semi not in ("fixmatch", "pseudo-label"):
        raise InvalidArgument(f"--align adjusts pseudo-labels: use it with --semi fixmatch or pseudo-label, not "
                              f"{cfg.semi or 'without --semi'}")
    if family != "neural":
        raise InvalidArgument(f"--labels/--semi train a neural net; {cfg.model!r} is a {family} model")
    k, n = spec.num_classes, spec.sizes.get("train", 0)
    if cfg.labels % k:
        raise InvalidArgument(f"--labels {cfg.labels} does not divide into {spec.name}'s {k} classes: use a multiple "
                              f"of {k} (e.g. {max(k, cfg.labels // k * k)})")
    if cfg.labels + cfg.val_split >= n:
        raise InvalidArgument(f"--labels {cfg.labels} and --val-split {cfg.val_split} leave no unlabelled image of the "
                              f"{n:,} in {spec.name}'s training set")
    for given, what in ((cfg.train_subset is not None, "--train-subset (use --labels)"),
                        (cfg.adversarial != "none", "--adversarial"), (cfg.tta != "none", "--tta"),
                        (cfg.step == "cuda-graph", "--step cuda-graph"), (cfg.precision == "bf16", "--precision bf16"),
                        (cfg.init_from, "--init-from"), (cfg.logit_norm is not None, "--logit-norm")):
        if given:
            raise InvalidArgument(f"training from few labels (--labels) runs in fp32, eager, with none of: {what}")


def ramp(step: int, length: int) -> float:
    """Tarvainen & Valpola's sigmoid ramp-up, exp(-5 (1 - t/T)^2), from 0 to 1 over `length` steps."""
    if length <= 0 or step >= length:
        return 1.0
    return math.exp(-5 * (1 - step / length) ** 2)


def unlabelled_loss(method: str, logits_weak, logits_strong, teacher_probs, threshold: float, scale=None):
    """The method's loss on a batch of unlabelled images (before its weight), the mask of images whose pseudo-label
    was used, and those pseudo-labels (None for mean-teacher, which uses the teacher's whole answer). `scale` (per
    class): distribution alignment, each answer multiplied by it and normalised before the threshold."""
    import torch
    import torch.nn.functional as F

    if method == "mean-teacher":
        loss = (F.softmax(logits_weak, 1) - teacher_probs).pow(2).sum(1).mean()
        return loss, torch.ones(len(logits_weak), dtype=torch.bool, device=logits_weak.device), None
    probs = F.softmax(logits_weak.detach(), 1)
    if scale is not None:
        probs = probs * scale
        probs = probs / probs.sum(1, keepdim=True)
    confidence, pseudo = probs.max(1)
    mask = confidence >= threshold
    target_logits = logits_strong if method == "fixmatch" else logits_weak
    loss = (F.cross_entropy(target_logits, pseudo, reduction="none") * mask).mean()
    return loss, mask, pseudo


ALIGN_BATCHES = 128  # ReMixMatch's running mean of the answers: over the last 128 batches


class Alignment:
    """Distribution alignment (Berthelot et al. 2020, ReMixMatch): the answers on unlabelled images scaled by the
    labelled images' class shares over the running mean of the answers on the last 128 batches, so that the
    pseudo-labels keep the classes' proportions instead of drifting towards the classes the net already favours."""

    def __init__(self, prior, batches: int = ALIGN_BATCHES):
        import torch

        self.prior = prior
        self.means = torch.zeros(batches, len(prior), device=prior.device)
        self.seen = 0

    def scale(self, probs):
        """Record this batch's mean answer, and give the per-class scale: prior / the running mean."""
        self.means[self.seen % len(self.means)] = probs.mean(0)
        self.seen += 1
        return self.prior / self.means[:min(self.seen, len(self.means))].mean(0)

    def state_dict(self) -> dict:
        return {"means": self.means.cpu().clone(), "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        self.means.copy_(state["means"])
        self.seen = int(state["seen"])


@dataclass
class _Semi:
    """What a semi-supervised run trains with: the net (and its teacher), the optimiser, the labelled images and
    labels, the unlabelled images (no labels), their true labels for the record only, the evaluation sets."""

    net: object
    teacher: object
    opt: object
    xl: object
    yl: object
    xu: object
    truth_u: np.ndarray
    val: tuple | None
    test: tuple | None
    device: object
    weak: object  # the augmentations, parsed once
    strong: object
    average: object  # with --ema: the weight average, evaluated and saved in the net's place (else None)
    alignment: Alignment | None  # with --align

    @property
    def kept(self):
        return self.average.module if self.average is not None else self.net

    @property
    def extras(self) -> dict:
        """What a checkpoint holds beside the net and the optimiser: the teacher, the average, the alignment."""
        return {k: v for k, v in (("teacher", self.teacher), ("average", self.average), ("alignment", self.alignment))
                if v is not None}


def _setup(folder, ds, test_ds) -> _Semi:
    import copy

    import torch

    from mnistlab.run import build_net
    from mnistlab.training.averaging import WeightAverage
    from mnistlab.training.engine import Engine, pick_device
    from mnistlab.training.step import make_optimizer
    from mnistlab.training.tensors import to_tensors
    from mnistlab.vocabulary import parse_augment

    cfg = folder.cfg
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    net = build_net(folder.record()).to(device)
    teacher = copy.deepcopy(net).requires_grad_(False) if cfg.semi == "mean-teacher" else None
    opt = make_optimizer(cfg.optimizer, [p for p in net.parameters() if p.requires_grad], cfg.lr, cfg.weight_decay,
                         Engine(device, "fp32", "eager"))
    split = folder.split(np.asarray(ds.labels), True)
    unl = unlabelled_rows(len(ds.labels), split)
    xl, yl = to_tensors(ds.images, ds.labels, device, idx=split.train)
    xu, _ = to_tensors(ds.images, np.zeros(len(ds.labels), np.int64), device, idx=unl)  # images only
    return _Semi(net, teacher, opt, xl, yl, xu, np.asarray(ds.labels)[unl],
                 to_tensors(ds.images, ds.labels, device, idx=split.val) if len(split.val) else None,
                 to_tensors(test_ds.images, test_ds.labels, device) if test_ds is not None else None, device,
                 parse_augment(cfg.augment if cfg.augment != "none" else WEAK), parse_augment(STRONG),
                 WeightAverage(net, cfg.ema) if cfg.ema else None,
                 Alignment(torch.bincount(yl).float() / len(yl)) if cfg.align else None)


def _step(s: _Semi, cfg, gen, aug_gen, weight: float, tally: dict) -> None:
    """One optimiser step: a labelled batch and (with a method) the unlabelled images, in one forward pass."""
    import torch
    import torch.nn.functional as F

    from mnistlab.training.augment import augment_batch

    weak, strong = s.weak, s.strong
    il = torch.randint(len(s.xl), (cfg.batch_size,), generator=gen).to(s.device)
    xlb, ylb = augment_batch(s.xl[il], weak, aug_gen), s.yl[il]
    loss_u = torch.zeros((), device=s.device)
    if cfg.semi is None:
        loss_l = F.cross_entropy(s.net(xlb), ylb)
    else:
        iu = torch.randint(len(s.xu), (cfg.unlabelled_ratio * cfg.batch_size,), generator=gen)
        xub = s.xu[iu.to(s.device)]
        views = [xlb, augment_batch(xub, weak, aug_gen)] + ([augment_batch(xub, strong, aug_gen)] if cfg.semi == "fixmatch" else [])
        logits = s.net(torch.cat(views)).split([len(v) for v in views])
        teacher_probs = None
        if s.teacher is not None:
            with torch.no_grad():
                teacher_probs = F.softmax(s.teacher.train()(augment_batch(xub, weak, aug_gen)), 1)
        loss_l = F.cross_entropy(logits[0], ylb)
        scale = s.alignment.scale(F.softmax(logits[1].detach(), 1)) if s.alignment is not None else None
        loss_u, mask, pseudo = unlabelled_loss(cfg.semi, logits[1], logits[-1], teacher_probs, cfg.threshold, scale)
        if pseudo is not None:  # the record of the pseudo-labels: how many used, how many right
            m = mask.cpu().numpy()
            tally["used"] += int(m.sum())
            tally["right"] += int((pseudo.cpu().numpy()[m] == s.truth_u[iu.numpy()][m]).sum())
        tally["offered"] += len(iu)
    loss = loss_l + weight * loss_u
    s.opt.zero_grad(set_to_none=True)
    loss.backward()
    s.opt.step()
    if s.average is not None:
        s.average.advance()
        s.average.update()
    if s.teacher is not None:
        _ema(s.teacher, s.net, cfg.teacher_decay)
    for k, v in (("loss", loss), ("labelled", loss_l), ("unlabelled", loss_u)):
        tally[k] += float(v.detach())


def train_semi(folder, ds, test_ds, progress: bool = False, on_step=None):
    """Train the run in `folder` from its labelled images and the rest unlabelled (see the module's docstring)."""
    import torch

    from mnistlab.training.schedule import epoch_seed, lr_at

    cfg, s = folder.cfg, _setup(folder, ds, test_ds)
    weight, rampup = unlabelled_settings(cfg)
    step, history, seconds = 0, [], 0.0
    ckpt = folder.last_checkpoint()
    if ckpt is not None:
        s.net.load_state_dict(ckpt["model"])
        s.opt.load_state_dict(ckpt["optimizer"])
        for name, part in s.extras.items():
            part.load_state_dict(ckpt[name])
        step, history, seconds = int(ckpt["step"]), list(ckpt["history"]), float(ckpt["train_seconds"])
    total, every = cfg.steps or DEFAULT_STEPS, cfg.checkpoint_every
    while step < total:
        block, end = step // every, min(total, (step // every + 1) * every)
        gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, block))
        torch.manual_seed(epoch_seed(cfg.seed, block, 1))
        s.net.train()
        t0, tally = time.perf_counter(), dict.fromkeys(("loss", "labelled", "unlabelled", "used", "right", "offered"), 0)
        for i in range(step, end):
            for g in s.opt.param_groups:
                g["lr"] = lr_at(i, total, cfg.lr, cfg.schedule)
            _step(s, cfg, gen, gen if s.device.type == "cpu" else None, weight * ramp(i, rampup), tally)
        seconds += time.perf_counter() - t0
        history.append(_row(s, cfg, block, step, end, tally, weight * ramp(end - 1, rampup), time.perf_counter() - t0))
        step = end
        folder.save_epoch(history, [], {"model": {k: v.detach().cpu().clone() for k, v in s.net.state_dict().items()},
                                        "optimizer": s.opt.state_dict(), "step": step, "history": history,
                                        "train_seconds": seconds,
                                        **{name: part.state_dict() for name, part in s.extras.items()}})
        if on_step:
            on_step(history[-1]["epoch"], history[-1])
        if progress:
            log.warning("step %d/%d  loss %.4f  test accuracy %s", step, total, history[-1]["train_loss"],
                        f"{history[-1]['test_accuracy']:.4f}" if "test_accuracy" in history[-1] else "-")
    return _finish(folder, s.kept, history, seconds, s.device, len(s.truth_u))


def _row(s: _Semi, cfg, block: int, start: int, end: int, tally: dict, weight: float, seconds: float) -> dict:
    from mnistlab.training.tensors import evaluate_net

    n = end - start
    row = {"epoch": block + 1, "step": end, "train_loss": tally["loss"] / n, "labelled_loss": tally["labelled"] / n,
           "unlabelled_loss": tally["unlabelled"] / n, "unlabelled_weight": weight,
           "lr": s.opt.param_groups[0]["lr"], "seconds": seconds}
    if cfg.semi in ("fixmatch", "pseudo-label"):
        row |= {"pseudo_labels_used": tally["used"] / max(tally["offered"], 1),
                "pseudo_labels_right": tally["right"] / tally["used"] if tally["used"] else None}
    if s.val is not None:
        row["val_loss"], row["val_accuracy"], _ = evaluate_net(s.kept, *s.val, cfg.eval_batch_size)
        if s.average is not None:  # the trained weights themselves, beside their average
            row["trained_val_accuracy"] = evaluate_net(s.net, *s.val, cfg.eval_batch_size)[1]
    if s.test is not None:
        row["test_loss"], row["test_accuracy"], _ = evaluate_net(s.kept, *s.test, cfg.eval_batch_size)
    return row


def unlabelled_settings(cfg) -> tuple[float, int]:
    """The unlabelled loss's weight and its ramp-up steps: the settings given, else each method's published ones
    (FixMatch 1 from the start; pseudo-labels 3, Lee's final alpha; mean teacher 10), ramped over 40% of the steps."""
    default = {"fixmatch": 1.0, "pseudo-label": 3.0, "mean-teacher": 10.0}.get(cfg.semi, 0.0)
    weight = default if cfg.unlabelled_weight is None else cfg.unlabelled_weight
    rampup = cfg.rampup if cfg.rampup is not None else (0 if cfg.semi == "fixmatch" else int(0.4 * (cfg.steps or DEFAULT_STEPS)))
    return weight, rampup


def _ema(teacher, student, decay: float) -> None:
    import torch

    with torch.no_grad():
        for t, s in zip(teacher.parameters(), student.parameters()):
            t.mul_(decay).add_(s.detach(), alpha=1 - decay)
        for t, s in zip(teacher.buffers(), student.buffers()):
            t.copy_(s)


def _finish(folder, net, history: list[dict], seconds: float, device, unlabelled: int):
    from mnistlab.training.record import finish_own_loop

    cfg, last = folder.cfg, history[-1]
    return finish_own_loop(folder, net, {
        "test_accuracy": last.get("test_accuracy"), "test_loss": last.get("test_loss"),
        "val_accuracy": last.get("val_accuracy"), "labels": cfg.labels, "unlabelled": unlabelled,
        "semi": cfg.semi or "supervised", "steps": last["step"]}, seconds, device)
