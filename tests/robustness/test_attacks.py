"""The attacks held to their definitions: within eps, pixels in [0, 1], PGD never weaker than FGSM, a plain net
broken at eps 0.3; FGSM's step checked against its formula on a linear model."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnistlab.robustness.attacks import LogProbabilities, fgsm, pgd

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def attacked(mnist_run, real_home):
    """The first 200 MNIST test digits, and the served mlp (about 97%) as the attacks see it."""
    from mnistlab.data import load_dataset

    test = load_dataset("mnist", "test", data_dir=real_home)
    x = torch.from_numpy(test.images[:200].astype(np.float32) / 255).unsqueeze(1)
    y = torch.as_tensor(np.array(test.labels[:200]), dtype=torch.long)
    model = LogProbabilities([mnist_run.predictor], [mnist_run.temperature]).eval()
    return model, x, y


def _accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_attacks_stay_within_eps_and_in_the_pixel_range(attacked, eps):
    model, x, y = attacked
    for adv in (fgsm(model, x, y, eps), pgd(model, x, y, eps, steps=10, gen=torch.Generator().manual_seed(0))[0]):
        assert float((adv - x).abs().max()) <= eps + 1e-6
        assert float(adv.min()) >= 0 and float(adv.max()) <= 1
        assert float((adv - x).abs().max()) > eps / 2  # it moved


def test_pgd_is_never_weaker_than_fgsm_and_breaks_a_plain_net_at_eps_03(attacked):
    model, x, y = attacked
    clean = _accuracy(model, x, y)
    assert clean > 0.9
    previous = clean
    for eps in (0.1, 0.2, 0.3):
        fgsm_acc = _accuracy(model, fgsm(model, x, y, eps), y)
        _, fooled = pgd(model, x, y, eps, steps=40, step_size=0.01, gen=torch.Generator().manual_seed(0))
        pgd_acc = float((~fooled).float().mean())
        assert pgd_acc <= fgsm_acc <= clean
        assert pgd_acc <= previous  # a larger ball never helps the model
        previous = pgd_acc
    assert previous < 0.02  # a net without adversarial training: next to nothing survives eps 0.3


def test_restarts_are_new_random_starts_and_an_image_falls_to_any_of_them(attacked):
    """Three restarts: three ascents from three different random starts, drawn one after another from the same
    generator, and an image counts as fooled if any of them fooled it; three single runs sharing one generator
    are the hand computation."""
    model, x, y = attacked
    three = pgd(model, x, y, 0.1, steps=10, restarts=3, gen=torch.Generator().manual_seed(0))[1]
    gen = torch.Generator().manual_seed(0)
    singles = [pgd(model, x, y, 0.1, steps=10, restarts=1, gen=gen)[1] for _ in range(3)]
    assert torch.equal(three, singles[0] | singles[1] | singles[2])
    assert not torch.equal(singles[0], singles[1]) or not torch.equal(singles[1], singles[2])  # the starts differ


def test_fgsm_is_one_signed_gradient_step_of_eps():
    """On softmax regression the input gradient of the loss is W^T (p - onehot): FGSM must move by eps times its sign."""
    torch.manual_seed(0)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    model = LogProbabilities([linear], [1.0])
    x = torch.rand(8, 1, 28, 28) * 0.5 + 0.25  # away from 0 and 1: no clipping
    y = torch.arange(8) % 10
    with torch.no_grad():
        p = F.softmax(linear(x), 1)
        grad = (p - F.one_hot(y, 10).float()) @ linear[1].weight
    expected = (x + 0.1 * grad.sign().view_as(x)).clamp(0, 1)
    assert torch.allclose(fgsm(model, x, y, 0.1), expected, atol=1e-6)


def test_an_ensemble_is_attacked_through_the_mean_of_its_members_probabilities():
    torch.manual_seed(0)
    a, b = (torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)) for _ in range(2))
    x = torch.rand(4, 1, 28, 28)
    both = LogProbabilities([a, b], [1.0, 2.0])(x).exp()
    mean = (F.softmax(a(x), 1) + F.softmax(b(x) / 2.0, 1)) / 2
    assert torch.allclose(both, mean, atol=1e-6)
