"""The training configuration: one dataclass, resolved from model defaults, a preset, a TOML file and explicit
settings (in that order), and checked before any work starts. The run folder holds one (mnistlab/run.py); the CLI's
training options are made from its fields and their comments (cli.py), so the list of settings is written once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from mnistlab.errors import InvalidArgument, UnknownName
from mnistlab.fileio import read_toml as read_toml_file
from mnistlab.vocabulary import PRECISIONS, SCHEDULES, STEPS, check_adversarial, parse_augment

OPTIMIZERS = ("adam", "adamw", "sgd", "adadelta")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class TrainConfig:
    model: str = "cnn"  # a zoo name (`mnistlab models`), an installed package's, or your own: FILE.py:NAME or package.module:NAME
    dataset: str = "mnist"  # a catalog name: `mnistlab data list`
    epochs: int = 5  # passes over the training set
    batch_size: int = 64  # images per optimiser step
    optimizer: str = "adam"  # adam | adamw | sgd (Nesterov, momentum 0.9) | adadelta
    lr: float = 1e-3  # peak learning rate (the schedule scales it per step)
    schedule: str = "onecycle"  # onecycle | cosine | step | none, per step so resume follows the same curve
    weight_decay: float = 0.0  # L2 (adam, sgd, adadelta) or decoupled (adamw)
    label_smoothing: float = 0.0  # softens one-hot targets: helps the strongly augmented nets calibrate
    logit_norm: float | None = None  # LogitNorm (Wei et al. 2022; 0.04 on CIFAR-10): the loss of logits / (T |logits|); None: plain
    dropout: float | None = None  # None keeps the model's own default
    augment: str = "none"  # none | light | strong | KEY=VAL,... (see training/augment.py), mixup and cutmix included
    ema: float = 0.0  # decay of an exponential moving average of the weights, evaluated and saved instead (0: none; 0.999 typical)
    adversarial: str = "none"  # none | fgsm (one step from a random start: Wong et al. 2020) | pgd (Madry et al. 2018): train on attacked images
    adversarial_eps: float = 0.3  # the training attack's l_inf budget on [0, 1] pixels (the MNIST challenge's 0.3)
    adversarial_steps: int = 40  # PGD's steps in training (the challenge's 40); fgsm takes one
    adversarial_step_size: float | None = None  # None: 0.01 for pgd, 1.25 eps for fgsm (Wong et al.)
    tta: str = "none"  # test-time augmentation: none | shift | shift-rotate (mnistlab/tta.py), in evaluation and prediction
    val_split: int = 0  # training images held out (seeded) for validation; never the test set
    calibration_split: int = 5000  # nets: images held out (seeded) to fit the temperature on; a val split's serve instead; 0: none
    train_subset: int | None = None  # use only this many training images, balanced across classes
    seed: int = 0  # one seed for init, shuffling, augmentation and dropout
    device: str = "auto"  # auto picks cuda, then mps, then cpu
    precision: str = "auto"  # auto | fp32 | bf16: auto takes bf16 where the hardware computes it natively (training/engine.py)
    step: str = "auto"  # auto | eager | cuda-graph: how the training step runs; auto captures a CUDA graph on CUDA
    threads: int | None = None  # CPU threads for PyTorch; None keeps PyTorch's choice
    eval_batch_size: int = 1000  # images per forward pass at evaluation
    init_from: str | None = None  # a run folder whose weights start this run (transfer learning)
    freeze: str = "none"  # none | backbone: train only the new head when transferring
    model_args: dict = field(default_factory=dict)  # extra settings for the model factory (e.g. k for knn)
    preset: str | None = None  # a named recipe whose settings were applied (e.g. speedrun)
    tensorboard: str | None = None  # folder for TensorBoard event files (pip install 'mnistlab[tensorboard]')
    evaluate_test: bool = True  # False for sweep trials: choosing settings must never look at the test set
    algorithm: str | None = None  # erm | irm | vrex | groupdro | coral: training across a dataset's environments (None: erm there)
    test_environment: str | None = None  # the environment held out for testing (colored-mnist: -90%); `mnistlab data info NAME`
    train_environments: list | None = None  # the environments trained on; None: every one but the test environment
    steps: int | None = None  # across environments (IRM's code 501, DomainBed 5,001) and from few labels (5,000): optimiser steps
    penalty_weight: float | None = None  # the algorithm's strength: IRM's, V-REx's lambda, CORAL's gamma, GroupDRO's eta; None: DomainBed's default
    penalty_anneal: int | None = None  # steps at weight 1 before penalty_weight applies (irm, vrex); None: 500
    l2_weight: float = 0.0  # across environments: this times every parameter's squared norm, in the loss (IRM's code)
    holdout_fraction: float = 0.0  # across environments: the share of each environment held out for validation (DomainBed: 0.2)
    trial_seed: int | None = None  # across environments: the seed of that holdout split (DomainBed's trial_seed); None: seed
    checkpoint_every: int = 100  # across environments and from few labels: steps between evaluations and checkpoints
    algorithm_args: dict = field(default_factory=dict)  # convention=paper|domainbed: how the penalty is weighted (training/algorithms.py)
    labels: int | None = None  # few labels: this many labelled training images (balanced per class, seeded); the rest unlabelled
    semi: str | None = None  # with --labels: fixmatch | mean-teacher | pseudo-label, how the unlabelled images teach (None: the labelled alone)
    unlabelled_ratio: int = 7  # with --semi: unlabelled images per labelled one in a step (FixMatch's mu)
    threshold: float = 0.95  # fixmatch, pseudo-label: the confidence a pseudo-label needs
    unlabelled_weight: float | None = None  # with --semi: the unlabelled loss's weight (None: fixmatch 1, pseudo-label 3, mean-teacher 10)
    rampup: int | None = None  # with --semi: steps over which that weight ramps up (None: fixmatch 0, others 40% of the steps)
    teacher_decay: float = 0.99  # mean-teacher: the teacher's moving-average decay
    align: bool = False  # fixmatch, pseudo-label: distribution alignment (ReMixMatch): answers scaled by labelled prior / running mean

    def validate(self) -> "TrainConfig":
        from mnistlab.tta import check_tta  # imported here: reading a run's config needs no torch

        def need(ok: bool, what: str):
            if not ok:
                raise InvalidArgument(what)

        need(isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be a whole number >= 1, got {self.epochs!r}")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size!r}")
        need(isinstance(self.eval_batch_size, int) and self.eval_batch_size >= 1, f"eval batch size must be >= 1, got {self.eval_batch_size!r}")
        need(self.lr > 0, f"learning rate must be > 0, got {self.lr!r}")
        need(self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay!r}")
        need(0 <= self.label_smoothing < 1, f"label smoothing must be in [0, 1), got {self.label_smoothing!r}")
        need(self.logit_norm is None or (isinstance(self.logit_norm, (int, float)) and self.logit_norm > 0),
             f"logit norm's temperature must be > 0 (or unset), got {self.logit_norm!r}")
        need(0 <= self.ema < 1, f"ema (the weight average's decay) must be in [0, 1), got {self.ema!r}")
        need(self.dropout is None or 0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout!r}")
        need(self.val_split >= 0, f"val split must be >= 0 images, got {self.val_split!r}")
        need(isinstance(self.calibration_split, int) and self.calibration_split >= 0,
             f"calibration split must be a whole number >= 0 images, got {self.calibration_split!r}")
        need(self.train_subset is None or self.train_subset >= 1, f"train subset must be >= 1 image, got {self.train_subset!r}")
        need(self.threads is None or self.threads >= 1, f"threads must be >= 1, got {self.threads!r}")
        for name, value, allowed in (("optimizer", self.optimizer, OPTIMIZERS), ("schedule", self.schedule, SCHEDULES),
                                     ("device", self.device, DEVICES), ("freeze", self.freeze, ("none", "backbone")),
                                     ("precision", self.precision, PRECISIONS), ("step", self.step, STEPS)):
            if value not in allowed:
                raise UnknownName(name, str(value), allowed)
        if self.freeze != "none" and not self.init_from:
            raise InvalidArgument("--freeze backbone needs --init-from RUN (a backbone to keep)")
        if check_adversarial(self) != "none" and parse_augment(self.augment).mixing:
            raise InvalidArgument("adversarial training attacks each image against its own label; mixup and cutmix "
                                  "mix two, so leave them out of --augment")
        check_tta(self.tta)
        need(self.steps is None or (isinstance(self.steps, int) and self.steps >= 1), f"steps must be a whole number >= 1, got {self.steps!r}")
        need(self.labels is None or (isinstance(self.labels, int) and self.labels >= 1), f"labels must be a whole number >= 1, got {self.labels!r}")
        need(isinstance(self.unlabelled_ratio, int) and self.unlabelled_ratio >= 1,
             f"unlabelled ratio must be a whole number >= 1, got {self.unlabelled_ratio!r}")
        need(0 < self.threshold <= 1, f"threshold must be in (0, 1], got {self.threshold!r}")
        need(self.unlabelled_weight is None or self.unlabelled_weight >= 0, f"unlabelled weight must be >= 0, got {self.unlabelled_weight!r}")
        need(self.rampup is None or self.rampup >= 0, f"rampup must be >= 0 steps, got {self.rampup!r}")
        need(0 <= self.teacher_decay < 1, f"teacher decay must be in [0, 1), got {self.teacher_decay!r}")
        need(self.trial_seed is None or (isinstance(self.trial_seed, int) and self.trial_seed >= 0),
             f"trial seed must be a whole number >= 0, got {self.trial_seed!r}")
        need(0 <= self.holdout_fraction < 1, f"holdout fraction must be in [0, 1), got {self.holdout_fraction!r}")
        need(isinstance(self.checkpoint_every, int) and self.checkpoint_every >= 1,
             f"checkpoint every must be a whole number >= 1 of steps, got {self.checkpoint_every!r}")
        need(self.l2_weight >= 0, f"l2 weight must be >= 0, got {self.l2_weight!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """The settings among `values` (a run's config.json also holds the dataset's facts). A run written before
        calibration existed held no images out for it, and resumes that way."""
        names = {f.name for f in fields(cls)}
        return cls(**{"calibration_split": 0, **{k: v for k, v in values.items() if k in names}})


def field_comments() -> dict[str, str]:
    """Each TrainConfig field's comment in this file (the CLI's help for its option): the one list of settings."""
    import inspect
    import re

    found = {}
    for line in inspect.getsource(TrainConfig).splitlines():
        match = re.match(r"\s+(\w+): [^=]+=.*?  # (.+)$", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def read_toml(path: str | Path) -> dict:
    data = read_toml_file(path, "config")
    return data.get("train", data)


PRESETS = {
    # The fixed recipes of `mnistlab speedrun`: measured in BENCHMARKS.md, not to be tuned per run.
    "speedrun": {"model": "speednet", "epochs": 1, "batch_size": 128, "optimizer": "adam", "lr": 4e-3,
                 "schedule": "onecycle", "label_smoothing": 0.1, "augment": "none"},
    # MNIST to 99.5% within a minute: wider speednet, light augmentation, more epochs
    "speedrun-995": {"model": "speednet", "epochs": 4, "batch_size": 128, "optimizer": "adam", "lr": 4e-3,
                     "schedule": "onecycle", "label_smoothing": 0.1, "augment": "light", "model_args": {"widths": [32, 64, 128]}},
    "speedrun-fashion": {"model": "speednet", "epochs": 4, "batch_size": 128, "optimizer": "adam", "lr": 4e-3,
                         "schedule": "onecycle", "label_smoothing": 0.1, "augment": "none", "dataset": "fashion-mnist",
                         "model_args": {"widths": [32, 64, 128]}},
    # The same three on a GPU: large batches (a GPU step costs about the same at 128 or 512 images) and wider
    # nets where that is free; their accuracy measured on the CPU, their speed on a GPU (BENCHMARKS.md)
    "speedrun-gpu": {"model": "speednet", "epochs": 1, "batch_size": 512, "optimizer": "adam", "lr": 1.2e-2,
                     "schedule": "onecycle", "label_smoothing": 0.1, "augment": "none", "model_args": {"widths": [32, 64, 128]}},
    "speedrun-995-gpu": {"model": "speednet", "epochs": 6, "batch_size": 512, "optimizer": "adam", "lr": 1.2e-2,
                         "schedule": "onecycle", "label_smoothing": 0.1, "augment": "light", "model_args": {"widths": [32, 64, 128]}},
    "speedrun-fashion-gpu": {"model": "speednet", "epochs": 8, "batch_size": 512, "optimizer": "adam", "lr": 1.2e-2,
                             "schedule": "onecycle", "label_smoothing": 0.1, "augment": "none", "dataset": "fashion-mnist",
                             "model_args": {"widths": [32, 64, 128]}},
    # The accuracy frontier (issue: the accuracy frontier; BENCHMARKS.md). Settings from the validation sweeps of
    # BENCHMARKS.md (never the test set) plus the techniques that paid on a validation split, one at a time
    # (benchmarks/frontier.py): test-time shifts and rotations for digits, a wider net for clothes; mirror and random
    # erasing for clothes from the literature (Zhong et al. 2017).
    # best-mnist: the technique table's base (speednet, Adam 4e-3 one-cycle, label smoothing 0.1, light augmentation)
    # with its three rows that paid on validation: wider (48-96-192), longer, test-time shifts and rotations. At 15
    # epochs it replaced a resnet recipe (24-48-96, the MNIST sweep's settings, 15 epochs, now best-mnist-resnet)
    # that it beat on the held-out images seed for seed (`mnistlab evaluate RUN --split held-out`: 42 errors against
    # 45 over seeds 0 and 1, log-loss 0.016 against 0.020) in a quarter of the training time; 30 epochs beat 15 there
    # (37 errors against 42, log-loss 0.014 against 0.016).
    "best-mnist": {"model": "speednet", "epochs": 30, "batch_size": 128, "optimizer": "adam", "lr": 4e-3,
                   "schedule": "onecycle", "label_smoothing": 0.1, "augment": "light", "tta": "shift-rotate",
                   "model_args": {"widths": [48, 96, 192]}},
    # the resnet recipe best-mnist was before (the MNIST sweep's settings, 15 epochs): BENCHMARKS.md's rows of it
    "best-mnist-resnet": {"model": "resnet", "epochs": 15, "batch_size": 128, "optimizer": "adamw", "lr": 1.5e-3,
                          "schedule": "onecycle", "weight_decay": 1.1e-5, "label_smoothing": 0.136, "dropout": 0.2,
                          "augment": "rotate=9.4,shift=0.035,scale=0.154,elastic=0.07", "tta": "shift-rotate"},
    # best-fashion: the Fashion sweep's settings on a wide resnet (128-256-512), mirror and erasing, 40 epochs,
    # test-time shifts and mirrors. Judged on the held-out images of seeds 0 and 1: the ten views beat none (560 errors
    # against 583), 40 epochs beat 20 (506 against 560); then on an H100, 80 epochs tied 40 (484 against 485) and width
    # paid at every step: 32-64-128 485 errors, 64-128-256 465, 96-192-384 453, 128-256-512 436. A GPU recipe: 84 s
    # there, hours on a CPU, where best-fashion-cpu is the one to run.
    "best-fashion": {"model": "resnet", "dataset": "fashion-mnist", "epochs": 40, "batch_size": 128, "optimizer": "adamw",
                     "lr": 2.6e-3, "schedule": "onecycle", "weight_decay": 1.9e-4, "label_smoothing": 0.065, "dropout": 0.31,
                     "augment": "scale=0.155,elastic=0.1,flip=0.5,erase=0.5", "tta": "shift-flip",
                     "model_args": {"widths": [128, 256, 512]}},
    # pad: the drawing pad's model: the guides' CNN trained with other pens (strokes a pixel thicker or thinner) and
    # low-resolution scans, 8 epochs instead of 4 to pay for the harder images. On the handwriting benchmark's 14
    # families it lifts every weak one (thick marker 90.33% -> 94.00%, blocky 8 px 91.33% -> 95.00%, full frame
    # 93.67% -> 96.33%; mean 97.43% -> 98.10%) at no MNIST cost the McNemar test finds (99.23% against 99.38%,
    # p = 0.077); BENCHMARKS.md, "Other pens in training". `mnistlab serve` trains it when there is no run to serve.
    "pad": {"model": "cnn", "epochs": 8, "augment": "stroke=0.5,blocky=0.25"},
    # robust-mnist: adversarial training the cheap way (Wong, Rice and Kolter 2020): FGSM from a random start at the
    # MNIST challenge's eps 0.3, step 1.25 eps, Adam 5e-3 one-cycle, 10 epochs of batches of 100, their MNIST recipe,
    # on the guides' CNN. Measured against the challenge's 89.62% in BENCHMARKS.md ("How robust is it").
    "robust-mnist": {"model": "cnn", "epochs": 10, "batch_size": 100, "optimizer": "adam", "lr": 5e-3,
                     "schedule": "onecycle", "adversarial": "fgsm", "adversarial_eps": 0.3},
    # Colored MNIST as IRM's Table 1 trains it (code/colored_mnist/reproduce_paper_results.sh): the whole of both
    # training environments in every step (batch 25,000), Adam, 501 steps, the L2 term in the loss; IRM's settings
    # are their random search's best, ERM's "reasonable" ones, the grayscale oracle's its own search's (101 steps).
    "irm-colored-mnist": {"model": "irm-mlp", "dataset": "colored-mnist", "test_environment": "-90%", "algorithm": "irm",
                          "steps": 501, "batch_size": 25000, "optimizer": "adam", "lr": 0.0004898536566546834,
                          "schedule": "none", "l2_weight": 0.00110794568, "penalty_weight": 91257.18613115903,
                          "penalty_anneal": 190, "model_args": {"hidden": 390}, "calibration_split": 0},
    "erm-colored-mnist": {"model": "irm-mlp", "dataset": "colored-mnist", "test_environment": "-90%", "algorithm": "erm",
                          "steps": 501, "batch_size": 25000, "optimizer": "adam", "lr": 0.001, "schedule": "none",
                          "l2_weight": 0.001, "model_args": {"hidden": 256}, "calibration_split": 0},
    "erm-grayscale": {"model": "irm-mlp", "dataset": "colored-mnist", "test_environment": "-90%", "algorithm": "erm",
                      "steps": 101, "batch_size": 25000, "optimizer": "adam", "lr": 0.0028171488133821726,
                      "schedule": "none", "l2_weight": 0.0008602868865288383,
                      "model_args": {"hidden": 83, "grayscale": True}, "calibration_split": 0},
    # semi-100: MNIST from 100 labels (issue: few labels), on the guides' CNN, chosen on a stated held-out labelled set
    # (1,000 training images, labelled, never trained on; never the test set), seed 0, among FixMatch at 7 and 3
    # unlabelled images per labelled one (95.9%, 96.1%), with a weight average (96.3%) and with alignment too
    # (96.1%), and mean teacher (96.7%; with a weight average 96.7%; with dropout 0.5 97.2%, chosen; with dropout and
    # distorting augmentations 96.0%) (BENCHMARKS.md, "Few labels").
    "semi-100": {"model": "cnn", "labels": 100, "semi": "mean-teacher", "unlabelled_ratio": 3, "steps": 4000,
                 "dropout": 0.5, "ema": 0.999, "checkpoint_every": 500, "val_split": 1000},
}
# best-fashion-cpu: best-fashion on the resnet 32-64-128 (a sixteenth of its multiply-adds): 47 minutes on a 2-core CPU
PRESETS["best-fashion-cpu"] = {**PRESETS["best-fashion"], "model_args": {"widths": [32, 64, 128]}}
# Recipes made for a GPU: what `mnistlab train` says when it trains one on a CPU (BENCHMARKS.md's times)
ON_A_CPU = {"best-fashion": "recipe 'best-fashion' is made for a GPU (84 s on an H100, about 7 hours on a 2-core CPU); "
                            "--preset best-fashion-cpu trains it on a narrower net in about 47 minutes"}


def beside(model, folder: Path):
    """FILE.py:NAME with a relative FILE read as relative to `folder` when it is there (a config file's folder)."""
    from mnistlab.models.reference import is_reference

    if not is_reference(model):
        return model
    where, _, name = model.rpartition(":")
    found = folder / where
    return f"{found}:{name}" if where.endswith(".py") and not Path(where).is_absolute() and found.is_file() else model


def resolve_config(settings: dict | None = None, config_file: str | Path | None = None) -> TrainConfig:
    """Model defaults < preset < TOML file < explicit settings (None values are ignored)."""
    from mnistlab.models import get_model_info

    explicit = {k.replace("-", "_"): v for k, v in (settings or {}).items() if v is not None}
    from_file = {k.replace("-", "_"): v for k, v in (read_toml(config_file) if config_file else {}).items()}
    known = {f.name for f in fields(TrainConfig)}
    for source, values in (("config file", from_file), ("settings", explicit)):
        unknown = set(values) - known
        if unknown:
            name = sorted(unknown)[0]
            raise UnknownName(f"training setting in {source}", name, known)
    merged = {**from_file, **explicit}
    preset = merged.get("preset")
    if preset is not None and preset not in PRESETS:
        raise UnknownName("preset", preset, PRESETS)
    model = merged.get("model", PRESETS.get(preset, {}).get("model", TrainConfig.model))
    if model == "ensemble":  # a kind of run, not a model
        raise InvalidArgument("an ensemble is built from trained runs: mnistlab ensemble RUN RUN ... "
                              "(or mnistlab ensemble --recipe PRESET)")
    if config_file and "model" not in explicit:  # a file named in a config file is found beside it
        model = beside(model, Path(config_file).parent)
    info = get_model_info(model)  # a reference resolves to its full name: /abs/path/file.py:NAME
    recipe = dict(PRESETS.get(preset, {}))
    if recipe.get("model", info.name) != info.name:  # a recipe trained on another model: its model's settings stay behind
        recipe.pop("model_args", None)
    values = {**info.defaults, **recipe, **merged, "model": info.name}
    return TrainConfig(**values).validate()
