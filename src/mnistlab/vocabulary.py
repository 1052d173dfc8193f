"""The settings' vocabularies: the words and values a TrainConfig may hold (precisions, steps, schedules, the
augmentation's keys, the adversarial attacks), beside TrainConfig so that checking a config, reading a run folder
and describing a sweep's space import nothing of training; training's modules take their names from here."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from mnistlab.errors import InvalidArgument, UnknownName

PRECISIONS = ("auto", "fp32", "bf16")  # auto takes bf16 where the hardware computes it natively (training/engine.py)
STEPS = ("auto", "eager", "cuda-graph")  # how the training step runs (training/step.py)
SCHEDULES = ("onecycle", "cosine", "step", "none")  # learning-rate schedules (training/schedule.py)
ADVERSARIAL = ("none", "fgsm", "pgd")  # attacks adversarial training learns from (training/adversarial.py)


def check_adversarial(cfg) -> str:
    """The adversarial kind a TrainConfig asks for, its settings checked (training/adversarial.py builds the attack)."""
    kind = cfg.adversarial
    if kind not in ADVERSARIAL:
        raise UnknownName("adversarial training", kind, ADVERSARIAL)
    if kind == "none":
        return kind
    if not 0 < cfg.adversarial_eps <= 1:
        raise InvalidArgument(f"adversarial eps must be in (0, 1] (pixels are in [0, 1]), got {cfg.adversarial_eps!r}")
    if kind == "pgd" and (not isinstance(cfg.adversarial_steps, int) or cfg.adversarial_steps < 1):
        raise InvalidArgument(f"adversarial steps must be a whole number >= 1, got {cfg.adversarial_steps!r}")
    if cfg.adversarial_step_size is not None and cfg.adversarial_step_size <= 0:
        raise InvalidArgument(f"adversarial step size must be > 0, got {cfg.adversarial_step_size!r}")
    return kind


@dataclass(frozen=True)
class Augment:
    rotate: float = 0.0  # max rotation, degrees either way
    shift: float = 0.0  # max translation, fraction of the image size
    scale: float = 0.0  # max zoom in or out, fraction (0.1: 0.9x .. 1.1x)
    shear: float = 0.0  # max shear, degrees
    elastic: float = 0.0  # probability that an image also gets an elastic distortion (Simard et al. 2003)
    elastic_alpha: float = 34.0  # displacement strength in pixels, before smoothing
    elastic_sigma: float = 4.0  # smoothness of the displacement field, pixels
    erase: float = 0.0  # probability of erasing one random rectangle (Zhong et al. 2017)
    flip: float = 0.0  # probability of a left-right mirror: for clothes, never for digits or letters
    mixup: float = 0.0  # probability that an image is blended with another of the batch (Zhang et al. 2018)
    cutmix: float = 0.0  # probability that an image gets a rectangle of another pasted in (Yun et al. 2019)
    stroke: float = 0.0  # probability that an image's strokes are drawn thicker (2 in 3) or thinner: other pens
    blocky: float = 0.0  # probability that an image is scanned at 7-14 px and enlarged without smoothing
    marker: float = 0.0  # probability that an image's strokes are drawn two pixels thicker: a felt-tip marker

    @property
    def active(self) -> bool:
        """Whether the images are changed one by one (the mixing kinds are `mixing`)."""
        return any((self.rotate, self.shift, self.scale, self.shear, self.elastic, self.erase, self.flip, self.stroke, self.blocky,
                    self.marker))

    @property
    def mixing(self) -> bool:
        return bool(self.mixup or self.cutmix)


AUGMENT_PRESETS = {
    "none": Augment(),
    "light": Augment(rotate=10, shift=0.1, scale=0.1),
    "strong": Augment(rotate=12, shift=0.12, scale=0.15, shear=10, elastic=0.5, erase=0.1),
}


PROBABILITIES = ("elastic", "erase", "flip", "mixup", "cutmix", "stroke", "blocky", "marker")


def parse_augment(text: str | Augment | None) -> Augment:
    """'none', 'light', 'strong', or KEY=VAL,... optionally after a preset: 'light,elastic=0.3'."""
    if isinstance(text, Augment):
        return text
    aug = AUGMENT_PRESETS["none"]
    known = {f.name for f in fields(Augment)}
    for part in filter(None, (p.strip() for p in (text or "none").split(","))):
        if "=" not in part:
            if part not in AUGMENT_PRESETS:
                raise InvalidArgument(f"unknown augmentation preset {part!r}; use none, light, strong or KEY=VAL,...")
            aug = AUGMENT_PRESETS[part]
            continue
        key, _, val = part.partition("=")
        key = key.strip().replace("-", "_")
        if key not in known:
            raise InvalidArgument(f"unknown augmentation setting {key!r}; known: {', '.join(sorted(known))}")
        try:
            value = float(val)
        except ValueError:
            raise InvalidArgument(f"augmentation setting {key}={val!r} is not a number") from None
        if value < 0 or (key in PROBABILITIES and value > 1) or (key == "elastic_sigma" and value == 0):
            raise InvalidArgument(f"augmentation setting {key}={value} is out of range")
        aug = replace(aug, **{key: value})
    return aug
