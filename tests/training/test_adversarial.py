"""Adversarial training in the step object: the step learns from attacked images exactly as a hand-written
FGSM-from-a-random-start loop does, its settings are checked in one place, it trains end to end, and on real MNIST
it makes a net that holds up under PGD where the same net trained plainly does not."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnistlab.cli import invoke as cli
from mnistlab.config import resolve_config
from mnistlab.errors import InvalidArgument, UnknownName
from mnistlab.models import create_model
from mnistlab.training import train
from mnistlab.training.adversarial import Adversary
from mnistlab.training.augment import Augment
from mnistlab.training.engine import Engine
from mnistlab.training.step import make_optimizer, make_step

CPU = torch.device("cpu")


def test_the_step_trains_on_fgsm_from_a_random_start_as_a_hand_written_loop_does():
    g = torch.Generator().manual_seed(0)
    data = [(torch.rand(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(3)]
    torch.manual_seed(0)
    plain = create_model("mlp", 10)
    torch.manual_seed(0)
    net = create_model("mlp", 10)
    engine = Engine(CPU, "fp32", "eager")
    adversary = Adversary.from_config(resolve_config({"model": "mlp", "adversarial": "fgsm", "adversarial_eps": 0.2}))
    assert adversary == Adversary("fgsm", 0.2, 1, 0.25)  # Wong et al.'s step: 1.25 eps
    step = make_step(net, make_optimizer("sgd", net.parameters(), 0.1, 0.0, engine), engine, batch_size=16,
                     label_smoothing=0.0, augment=Augment(), adversary=adversary)
    opt = torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for x, y in data:
        torch.manual_seed(1)  # the same random start for both
        delta = (torch.rand_like(x) * 0.4 - 0.2)
        start = (x + delta).clamp(0, 1).requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(plain(start), y, reduction="sum"), start)
        adv = torch.minimum(torch.maximum(start.detach() + 0.25 * grad.sign(), x - 0.2), x + 0.2).clamp(0, 1)
        loss = F.cross_entropy(plain(adv), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        torch.manual_seed(1)
        step(x, y, 0.1)
    for a, b in zip(plain.state_dict().values(), net.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("settings, error", [
    ({"adversarial": "trades"}, UnknownName),
    ({"adversarial": "pgd", "adversarial_eps": 0.0}, InvalidArgument),
    ({"adversarial": "pgd", "adversarial_steps": 0}, InvalidArgument),
    ({"adversarial": "fgsm", "adversarial_step_size": -1.0}, InvalidArgument),
    ({"adversarial": "fgsm", "augment": "mixup=0.2"}, InvalidArgument),
])
def test_bad_adversarial_settings_are_refused_before_any_work(settings, error):
    with pytest.raises(error):
        resolve_config({"model": "mlp", **settings})


def test_a_classical_model_is_refused_adversarial_training(tmp_path):
    with pytest.raises(InvalidArgument, match="--adversarial attacks the batches of a neural net"):
        train("logreg", "mnist", out=tmp_path / "run", adversarial="fgsm")
    assert not (tmp_path / "run").exists()


def test_the_preset_is_fgsm_at_the_challenges_eps():
    cfg = resolve_config({"preset": "robust-mnist"})
    assert (cfg.adversarial, cfg.adversarial_eps, cfg.model) == ("fgsm", 0.3, "cnn")
    assert Adversary.from_config(cfg).step_size == pytest.approx(0.375)


@pytest.mark.realdata
def test_adversarial_training_makes_a_net_that_holds_up_under_pgd(real_home, tmp_path):
    """The same mlp, the same 10,000 digits, one epoch: trained on PGD-attacked images (eps 0.1), it keeps far more of
    its accuracy under a PGD attack it never saw than when trained plainly."""
    from mnistlab.robustness import measure_robustness

    common = {"data_dir": real_home, "epochs": 2, "train_subset": 10000, "calibration_split": 0}
    plain = train("mlp", "mnist", out=tmp_path / "plain", **common)
    robust = train("mlp", "mnist", out=tmp_path / "robust", adversarial="pgd", adversarial_eps=0.1, adversarial_steps=5,
                   adversarial_step_size=0.03, **common)
    assert robust.config["adversarial"] == "pgd"
    kw = {"data_dir": real_home, "corruption_images": 10, "attack_images": 300, "epsilons": [0.1], "steps": 20,
          "step_size": 0.01, "write": False}
    before = measure_robustness(plain, **kw)["adversarial"]["pgd"]["0.1"]
    after = measure_robustness(robust, **kw)["adversarial"]["pgd"]["0.1"]
    assert before < 0.35 and after > before + 0.3
    assert robust.metrics["test_accuracy"] > 0.9


def test_the_cli_trains_adversarially(tmp_path, register, capsys):
    from mnistlab.data import catalog
    from tests.conftest import make_tiny

    tiny = make_tiny(tmp_path / "files", catalog.MNIST, n_train=40)
    register(tiny.spec)
    assert cli(["data", "import", "tiny-mnist", str(tiny.folder)]) == 0
    assert cli(["train", "--model", "mlp", "--dataset", "tiny-mnist", "--epochs", "1", "--adversarial", "pgd",
                "--adversarial-steps", "2", "--calibration-split", "0", "--out", str(tmp_path / "run")]) == 0
    import json

    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["adversarial"] == "pgd" and cfg["adversarial_steps"] == 2 and np.isfinite(
        json.loads((tmp_path / "run" / "metrics.json").read_text())["test_loss"])


def test_the_attack_runs_under_bf16_autocast_and_stays_within_eps():
    """In bf16 the attack's forward passes run under autocast too; the images it makes stay inside the ball."""
    seen = []
    adversary = Adversary("pgd", 0.1, 3, 0.05)
    net = create_model("cnn", 10)

    def forward(x):
        seen.append(x.detach().clone())
        return net(x)

    engine = Engine(CPU, "bf16", "eager")
    step = make_step(net, make_optimizer("adam", net.parameters(), 1e-3, 0.0, engine), engine, batch_size=8,
                     label_smoothing=0.0, augment=Augment(), forward=forward, adversary=adversary)
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8)
    step(x, y, 1e-3)
    assert len(seen) == 4  # three attack steps, then the step that learns
    assert all(float((s - x).abs().max()) <= 0.1 + 1e-6 and float(s.min()) >= 0 and float(s.max()) <= 1 for s in seen)
    assert float((seen[-1] - x).abs().max()) > 0.05
    assert np.isfinite(step.totals()[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_adversarial_training_inside_the_cuda_graph(tmp_path):
    from mnistlab.training.step import GraphStep

    net = create_model("cnn", 10).cuda()
    engine = Engine(torch.device("cuda"), "fp32", "cuda-graph")
    step = make_step(net, make_optimizer("adam", net.parameters(), 1e-3, 0.0, engine), engine, batch_size=32,
                     label_smoothing=0.0, augment=Augment(), adversary=Adversary("fgsm", 0.3, 1, 0.375))
    assert isinstance(step, GraphStep)
    g = torch.Generator(device="cuda").manual_seed(0)
    for _ in range(8):
        step(torch.rand(32, 1, 28, 28, device="cuda", generator=g), torch.randint(0, 10, (32,), device="cuda", generator=g), 1e-3)
    assert step.graph is not None and not step.eager and np.isfinite(step.totals()[1])


@pytest.mark.parametrize("kind, steps", [("fgsm", 1), ("pgd", 5)])
def test_the_attack_sees_the_net_as_it_predicts(kind, steps):
    """BatchNorm's running statistics learn from one pass per batch (the step's own, over the final adversarial
    images: equal to a plain step's on those images), never from the attack's passes; dropout holds still while the
    attack climbs; the net is back in training mode afterwards."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                              torch.nn.Dropout(0.5), torch.nn.Linear(16, 10))
    engine = Engine(CPU, "fp32", "eager")
    adversary = Adversary(kind, 0.2, steps, 0.1)
    seen = []
    real_attack = adversary.attack

    def watched(forward, x, y, autocast):
        seen.append(net.training)
        adv = real_attack(forward, x, y, autocast)
        seen.append(adv)
        return adv

    object.__setattr__(adversary, "attack", watched)
    step = make_step(net, make_optimizer("sgd", net.parameters(), 0.1, 0.0, engine), engine, batch_size=8,
                     label_smoothing=0.0, augment=Augment(), adversary=adversary)
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g)
    bn = net[2]
    step(x, y, 0.1)
    assert seen[0] is False and net.training, "attacked in evaluation mode, trained in training mode"
    assert int(bn.num_batches_tracked) == 1
    # BN's running mean after one batch from zero: momentum x the batch mean of the adversarial images' features,
    # through the first layer as it was before the optimiser moved it (rebuilt from the same seed)
    torch.manual_seed(0)
    fresh = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16))
    assert torch.allclose(bn.running_mean, 0.1 * fresh[1](seen[1].flatten(1)).mean(0).detach(), atol=1e-6)
