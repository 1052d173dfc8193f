"""A run's detectors on any images: each net's logits and penultimate features in one forward pass, the feature
detectors fitted on its training images, an ensemble's scores the mean of its members' (its msp: of their mean
probabilities), a classical run's only msp."""

from __future__ import annotations

import numpy as np

from mnistlab.errors import RunError
from mnistlab.ood.detectors import BANK, DETECTORS, FEATURE_DETECTORS, Fit, Outputs, fit, score
from mnistlab.run import Run, leaf_runs

BATCH = 1000
MIN_HELD_OUT = 1000  # fewer images held out by every member of an ensemble: those held out by any are taken
HELD_OUT = 10_000  # held-out images the detector is chosen and its threshold set on, at most


class NetParts:
    """A net split where the detectors read it: `features(x)` the input of its last linear layer, `head` that
    layer (its weight and bias are ViM's). `why` says what is missing when a net has no such split."""

    def __init__(self, net):
        import torch

        self.net, self.head, self.why = net, None, None
        linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        if not linears:
            self.why = "it has no linear layer whose input is its penultimate features"
            return
        last = linears[-1]
        seen = {}
        handle = last.register_forward_hook(lambda m, i, o: seen.update(inputs=i[0], output=o))
        try:
            with torch.inference_mode():
                logits = net(torch.zeros(2, 1, 28, 28, device=next(net.parameters()).device))
        finally:
            handle.remove()
        if "output" not in seen or seen["output"].shape != logits.shape or not torch.equal(seen["output"], logits):
            self.why = "its last linear layer does not give its logits"
            return
        self.head = last

    def __call__(self, x):
        """(logits, features or None) for a batch `x` (N, 1, 28, 28)."""
        if self.head is None:
            return self.net(x), None
        seen = {}
        handle = self.head.register_forward_hook(lambda m, i, o: seen.update(inputs=i[0]))
        try:
            logits = self.net(x)
        finally:
            handle.remove()
        return logits, seen["inputs"].flatten(1)


class Scorer:
    """The detectors of a run. `fitted` maps each member (by position among its leaf runs) to its Fit, when the
    feature detectors are wanted; `fit_on(images, labels)` makes them."""

    def __init__(self, run: Run):
        self.run = run
        self.leaves = leaf_runs(run)
        self.neural = all(leaf.kind == "neural" for leaf in self.leaves)
        self.parts = [NetParts(leaf.model) for leaf in self.leaves] if self.neural else []
        self.fits: list[Fit] | None = None

    def available(self) -> tuple[list[str], str | None]:
        """The detectors this run can use, and why the others cannot be (None when all can)."""
        if not self.neural:
            return ["msp"], "a classical model (or member) gives probabilities only: msp alone"
        missing = [p.why for p in self.parts if p.head is None]
        if missing:
            return [d for d in DETECTORS if d not in FEATURE_DETECTORS], f"no penultimate features: {missing[0]}"
        return list(DETECTORS), None

    def outputs(self, images: np.ndarray) -> list[Outputs]:
        """Each member's outputs for uint8 images (N, 28, 28); a classical run's: its probabilities alone."""
        if not self.neural:
            return [Outputs(None, self.run.predict_proba(images))]
        import torch

        result = []
        for leaf, parts in zip(self.leaves, self.parts):
            device = next(leaf.model.parameters()).device
            logits, features = [], []
            with torch.inference_mode():
                for i in range(0, len(images), BATCH):
                    x = torch.from_numpy(images[i:i + BATCH].astype(np.float32) / 255).unsqueeze(1).to(device)
                    lo, fe = parts(x.contiguous(memory_format=torch.channels_last))
                    logits.append(lo.float().cpu().numpy())
                    if fe is not None:
                        features.append(fe.float().cpu().numpy())
            lo = np.concatenate(logits) if logits else np.zeros((0, len(leaf.classes)), np.float32)
            probs = _softmax(lo / leaf.temperature)
            result.append(Outputs(lo, probs, np.concatenate(features) if features else None))
        return result

    def fit_on(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Fit each member's feature detectors on training images (at most BANK of them are passed in)."""
        self.fits = []
        for out, parts in zip(self.outputs(images), self.parts):
            if out.features is None:
                self.fits.append(None)
                continue
            weight, bias = parts.head.weight.detach().cpu().numpy(), _bias(parts.head)
            self.fits.append(fit(out.features, labels, out.logits, weight, bias, len(self.run.classes)))

    def scores(self, images: np.ndarray, detectors) -> dict[str, np.ndarray]:
        """Each detector's scores for the images: msp of the members' mean probabilities, the others the mean of
        the members' scores."""
        outs = self.outputs(images)
        result = {}
        for name in detectors:
            if name == "msp":
                result[name] = np.mean([o.probs for o in outs], axis=0).max(1).astype(np.float64)
            else:
                fits = self.fits or [None] * len(outs)
                result[name] = np.mean([score(name, o, f) for o, f in zip(outs, fits)], axis=0)
        return result


def training_sample(run: Run, data_dir=None, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training images to fit on (at most BANK, seeded, from the images every member trained on, or any where they
    share few) and held-out ones
    (at most HELD_OUT, seeded) to choose a detector and set its threshold on: those no member trained on (its
    validation or calibration images, and those a training subset left out); where members split with other seeds
    leave fewer than MIN_HELD_OUT of them, those any member held out. Returns images, labels, held-out images."""
    from mnistlab.data import load_dataset

    train = load_dataset(run.config["dataset"], "train", data_dir=data_dir)
    labels = np.asarray(train.labels)
    splits = [leaf.split(labels) for leaf in leaf_runs(run)]
    trained_by_any = set().union(*(s.train.tolist() for s in splits))
    trained_by_all = set.intersection(*(set(s.train.tolist()) for s in splits))
    if len(trained_by_all) < BANK // 10:  # members trained on subsets of their own: fit on what any trained on
        trained_by_all = trained_by_any
    held = set(range(len(labels))) - trained_by_any
    if len(held) < MIN_HELD_OUT:
        held |= set().union(*(s.held_out.tolist() for s in splits))
    if not held:
        raise RunError(f"{run.path} trained on every training image, so none is left to set its OOD threshold on; "
                       "train with --val-split 5000 (or --train-subset) for answers with digit_like")
    rng = np.random.default_rng(seed)
    pick = lambda pool, most: np.sort(rng.choice(np.array(sorted(pool), dtype=np.int64), min(most, len(pool)), replace=False))  # noqa: E731
    fit_on, held_out = pick(trained_by_all, BANK), pick(held, HELD_OUT)
    return train.images[fit_on], labels[fit_on], train.images[held_out]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def _bias(linear) -> np.ndarray:
    return (linear.bias.detach().cpu().numpy() if linear.bias is not None
            else np.zeros(linear.out_features, np.float32))
