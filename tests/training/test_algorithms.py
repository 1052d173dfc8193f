"""Each algorithm's penalty against a computation by hand (NumPy, closed forms), and one step of each."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mnistlab.errors import InvalidArgument, UnknownName
from mnistlab.training.algorithms import Algorithm, Settings, coral_distance, groupdro_weights, irm_penalty, irm_penalty_halves, risk_variance


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _d_risk_d_scale(logits: np.ndarray, y: np.ndarray) -> float:
    """d/dw of mean_i CE(w * l_i, y_i) at w = 1 is mean_i (sum_k p_ik l_ik - l_iy)."""
    p = _softmax(logits)
    return float(np.mean((p * logits).sum(1) - logits[np.arange(len(y)), y]))


def test_irm_penalty_is_the_squared_derivative_by_hand():
    rng = np.random.default_rng(0)
    logits, y = rng.normal(size=(64, 3)) * 2, rng.integers(0, 3, 64)
    got = float(irm_penalty(torch.tensor(logits), torch.tensor(y)).detach())
    assert got == pytest.approx(_d_risk_d_scale(logits, y) ** 2, rel=1e-9)
    halves = float(irm_penalty_halves(torch.tensor(logits), torch.tensor(y)).detach())
    assert halves == pytest.approx(_d_risk_d_scale(logits[::2], y[::2]) * _d_risk_d_scale(logits[1::2], y[1::2]), rel=1e-9)


def test_irm_penalty_with_one_logit_is_the_binary_one_of_irms_code():
    """IRM's code: BCE-with-logits of w * z; our two-class logits (0, z) give the same derivative, mean((sigmoid(z) - y) z)."""
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=100) * 3, rng.integers(0, 2, 100)
    logits = torch.tensor(np.stack([np.zeros_like(z), z], 1))
    by_hand = np.mean((1 / (1 + np.exp(-z)) - y) * z) ** 2
    assert float(irm_penalty(logits, torch.tensor(y)).detach()) == pytest.approx(by_hand, rel=1e-9)


def test_vrex_is_the_variance_of_the_risks():
    risks = np.array([0.3, 0.9, 0.45])
    assert float(risk_variance(torch.tensor(risks))) == pytest.approx(np.var(risks), rel=1e-12)


def test_coral_by_hand():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(30, 4)), rng.normal(1.0, 2.0, size=(20, 4))
    by_hand = np.mean((a.mean(0) - b.mean(0)) ** 2) + np.mean((np.cov(a, rowvar=False) - np.cov(b, rowvar=False)) ** 2)
    assert float(coral_distance(torch.tensor(a), torch.tensor(b))) == pytest.approx(by_hand, rel=1e-9)
    assert float(coral_distance(torch.tensor(a), torch.tensor(a))) == pytest.approx(0.0, abs=1e-12)


def test_groupdro_weights_by_hand():
    q, risks, eta = np.array([0.2, 0.5, 0.3]), np.array([1.0, 0.2, 2.0]), 0.5
    by_hand = q * np.exp(eta * risks)
    got = groupdro_weights(torch.tensor(q), torch.tensor(risks), eta).numpy()
    np.testing.assert_allclose(got, by_hand / by_hand.sum(), rtol=1e-12)


def _cfg(**kw):
    base = {"algorithm": "erm", "algorithm_args": {}, "penalty_weight": None, "penalty_anneal": None, "l2_weight": 0.0}
    return SimpleNamespace(**{**base, **kw})


def _algorithm(name, **kw):
    torch.manual_seed(0)
    from mnistlab.models import create_model

    net = create_model("irm-mlp", 2, input_shape=(2, 4, 4), hidden=8).double()
    settings = Settings.from_config(_cfg(algorithm=name, **kw))
    return Algorithm(settings, net, lambda: torch.optim.SGD(net.parameters(), lr=0.1))


def _batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(16, 2, 4, 4, generator=g, dtype=torch.float64), torch.randint(0, 2, (16,), generator=g))
            for _ in range(2)]


def test_one_step_of_each_objective_is_its_formula():
    batches = _batches()
    for name, weight in (("erm", None), ("irm", 3.0), ("vrex", 3.0), ("coral", 3.0)):
        algo = _algorithm(name, penalty_weight=weight, penalty_anneal=0)
        net = algo.net
        risks = torch.stack([torch.nn.functional.cross_entropy(net(x), y) for x, y in batches])
        expected = {"erm": risks.mean(),
                    "irm": risks.mean() + 3 * torch.stack([irm_penalty(net(x), y) for x, y in batches]).mean(),
                    "vrex": risks.mean() + 3 * risks.var(unbiased=False),
                    "coral": risks.mean() + 3 * coral_distance(net.forward_features(batches[0][0]),
                                                               net.forward_features(batches[1][0]))}[name]
        if name in ("irm", "vrex"):
            expected = expected / 3  # the paper's convention divides by a weight above 1
        loss, out = algo.objective(batches)
        assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-9), name
        assert out["nll"] == pytest.approx(float(risks.mean().detach()), rel=1e-9)


def test_annealing_keeps_the_weight_at_one_then_applies_it():
    algo = _algorithm("irm", penalty_weight=100.0, penalty_anneal=2)
    weights = [algo.update(_batches(i))["penalty_weight"] for i in range(4)]
    assert weights == [1.0, 1.0, 100.0, 100.0]


def test_groupdro_weights_follow_the_risks_step_by_step():
    algo = _algorithm("groupdro", penalty_weight=0.5)
    q = np.ones(2)
    for step in range(4):
        batches = _batches(step)
        with torch.no_grad():
            risks = np.array([float(torch.nn.functional.cross_entropy(algo.net(x), y)) for x, y in batches])
        q = q * np.exp(0.5 * risks)
        q = q / q.sum()
        out = algo.update(batches)
        np.testing.assert_allclose(algo.q.numpy(), q, rtol=1e-9)
        assert out["loss"] == pytest.approx(float(q @ risks), rel=1e-9)


def test_l2_adds_the_squared_norm_of_every_parameter():
    batches = _batches()
    plain, with_l2 = _algorithm("erm"), _algorithm("erm", l2_weight=0.01)
    norm = sum(float(p.detach().pow(2).sum()) for p in plain.net.parameters())
    assert with_l2.objective(batches)[1]["loss"] == pytest.approx(plain.objective(batches)[1]["loss"] + 0.01 * norm, rel=1e-9)


def test_bf16_runs_the_net_under_autocast_and_keeps_risks_penalties_and_weights_in_fp32():
    batches = [(x.float(), y) for x, y in _batches()]
    for name in ("erm", "irm", "vrex", "coral"):
        exact = _algorithm(name, penalty_weight=3.0, penalty_anneal=0)
        exact.net.float()
        fast = _algorithm(name, penalty_weight=3.0, penalty_anneal=0)
        fast.net.float()
        fast.autocast = torch.bfloat16
        seen = []
        first = next(m for m in fast.net.modules() if isinstance(m, torch.nn.Linear))
        first.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
        loss, out = fast.objective(batches)
        want = float(exact.objective(batches)[0].detach())
        assert seen and set(seen) == {torch.bfloat16}, name  # the net's layers computed in bf16
        assert loss.dtype == torch.float32 and float(loss.detach()) == pytest.approx(want, rel=2e-2), name
        assert float(loss.detach()) != want, name  # and it is not the fp32 number: autocast did run
        before = [p.detach().clone() for p in fast.net.parameters()]
        fast.update(batches)
        assert all(p.dtype == torch.float32 for p in fast.net.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, fast.net.parameters())), name


def test_bad_settings_are_one_line():
    with pytest.raises(UnknownName, match="did you mean"):
        Settings.from_config(_cfg(algorithm="irn"))
    with pytest.raises(InvalidArgument, match="convention"):
        Settings.from_config(_cfg(algorithm="irm", algorithm_args={"convention": "mine"}))
    with pytest.raises(InvalidArgument, match="unknown algorithm setting"):
        Settings.from_config(_cfg(algorithm="irm", algorithm_args={"lambda": 3}))
