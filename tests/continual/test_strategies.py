"""Each strategy's piece against a hand computation on a tiny problem: EWC's Fisher (softmax regression's closed
form) and penalty, online EWC's running Fisher, SI's path integral (plain gradient descent on a quadratic), LwF's
distillation loss, A-GEM's projection, the reservoir's uniformity and GDumb's class balance."""

import math

import numpy as np
import pytest
import torch

from mnistlab.continual.strategies import SI, ClassBalanced, Reservoir, Settings, agem_project, distillation_loss, fisher_diagonal, make_strategy
from mnistlab.errors import InvalidArgument


def test_fisher_of_softmax_regression_is_p_times_1_minus_p_times_x_squared():
    # for logits Wx + b: sum_c p_c (d log p_c / d W_kd)^2 = sum_c p_c (1[c=k] - p_k)^2 x_d^2 = p_k (1 - p_k) x_d^2
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 4)
    x = torch.randn(50, 3)
    fisher = fisher_diagonal(net, x, torch.ones(4, dtype=torch.bool), batch=16)
    p = torch.softmax(net(x), 1).detach()
    expected_w = torch.einsum("nk,nd->kd", p * (1 - p), x ** 2) / 50
    assert torch.allclose(fisher["weight"], expected_w, atol=1e-6)
    assert torch.allclose(fisher["bias"], (p * (1 - p)).mean(0), atol=1e-6)
    # only outputs 0 and 1 compete: the softmax over those two, nothing for the others
    two = fisher_diagonal(net, x, torch.tensor([True, True, False, False]))
    q = torch.softmax(net(x)[:, :2], 1).detach()
    assert torch.allclose(two["weight"][:2], torch.einsum("nk,nd->kd", q * (1 - q), x ** 2) / 50, atol=1e-6)
    assert two["weight"][2:].abs().max() == 0


class _Learner:
    """What EWC asks of the loop: images of a task, and the outputs that compete."""

    def __init__(self, x):
        self.x = x

    def images(self, t, rows):
        return self.x[torch.as_tensor(rows)]

    def active_mask(self, t, seen):
        return torch.ones(4, dtype=torch.bool)


@pytest.mark.parametrize("online", [False, True])
def test_ewc_penalty_by_hand(online):
    torch.manual_seed(1)
    net = torch.nn.Linear(3, 4)
    x = torch.randn(20, 3)
    s = make_strategy("online-ewc" if online else "ewc", Settings(strength=10.0, gamma=0.5, fisher_samples=20), seed=0)
    s.after_task(net, _Learner(x), 0, np.arange(20))
    f1 = fisher_diagonal(net, x, torch.ones(4, dtype=torch.bool))
    star1 = {n: p.detach().clone() for n, p in net.named_parameters()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1)
    s.after_task(net, _Learner(x), 1, np.arange(20))
    f2 = fisher_diagonal(net, x, torch.ones(4, dtype=torch.bool))
    star2 = {n: p.detach().clone() for n, p in net.named_parameters()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2)
    params = dict(net.named_parameters())
    if online:  # one Fisher, 0.5 * F1 + F2, anchored at the last task, weighted by gamma again in the penalty
        expected = 0.5 * 10 * sum((0.5 * (0.5 * f1[n] + f2[n]) * (params[n] - star2[n]) ** 2).sum() for n in params)
    else:  # a term per task
        expected = 0.5 * 10 * sum((f1[n] * (params[n] - star1[n]) ** 2).sum() + (f2[n] * (params[n] - star2[n]) ** 2).sum()
                                  for n in params)
    assert float(s.penalty(net, None).detach()) == pytest.approx(float(expected.detach()), rel=1e-5)


def test_si_path_integral_on_a_quadratic_by_hand():
    # L(theta) = a (theta - b)^2, plain gradient descent with rate lr: g = 2a(theta - b), each step moves by -lr g,
    # so w = -sum g * delta = sum lr g^2, and omega = w / (Delta^2 + xi) with Delta the whole move
    a, b, lr, steps, xi = 1.5, 2.0, 0.1, 5, 0.1
    net = torch.nn.Module()
    net.theta = torch.nn.Parameter(torch.tensor([0.0]))
    s = SI(Settings(strength=3.0, damping=xi), seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    theta, w = 0.0, 0.0
    for _ in range(steps):
        loss = a * (net.theta - b).pow(2).sum() + s.penalty(net, None)
        opt.zero_grad()
        loss.backward()
        s.after_backward(net, None)
        opt.step()
        s.after_step(net)
        g = 2 * a * (theta - b)
        w += lr * g * g
        theta -= lr * g
    s.after_task(net, None, 0, None)
    assert float(net.theta.detach()) == pytest.approx(theta, rel=1e-6)
    assert float(s.omega["theta"]) == pytest.approx(w / (theta ** 2 + xi), rel=1e-5)
    # the next task's penalty: c * omega * (theta - theta*)^2, theta* where the task ended
    with torch.no_grad():
        net.theta.add_(0.5)
    assert float(s.penalty(net, None).detach()) == pytest.approx(3.0 * w / (theta ** 2 + xi) * 0.25, rel=1e-5)


def test_distillation_loss_by_hand():
    old, new, t = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.5]]), 2.0
    q = [math.exp(v / t) for v in (2.0, 0.0, -1.0)]
    q = [v / sum(q) for v in q]
    logz = math.log(sum(math.exp(v / t) for v in (0.0, 1.0, 0.5)))
    log_p = [v / t - logz for v in (0.0, 1.0, 0.5)]
    expected = -sum(qi * lp for qi, lp in zip(q, log_p)) * t * t
    assert float(distillation_loss(new, old, t)) == pytest.approx(expected, rel=1e-6)
    # the code released with van de Ven & Tolias 2019's table: the same, averaged over the three classes too
    assert float(distillation_loss(new, old, t, "mean")) == pytest.approx(expected / 3, rel=1e-6)
    # a new class the old net lacks: its target is 0, and "mean" divides by the new net's four outputs
    wider = torch.cat([new, torch.tensor([[1.5]])], dim=1)
    logz4 = math.log(sum(math.exp(v / t) for v in (0.0, 1.0, 0.5, 1.5)))
    expected4 = -sum(qi * (v / t - logz4) for qi, v in zip(q, (0.0, 1.0, 0.5))) * t * t
    assert float(distillation_loss(wider, old, t, "mean")) == pytest.approx(expected4 / 4, rel=1e-6)


def test_an_unknown_distillation_is_refused():
    with pytest.raises(InvalidArgument, match="distillation must be one of sum, mean, got 'avg'"):
        make_strategy("lwf", Settings(distillation="avg"), seed=0)


def test_agem_projection_by_hand():
    g, ref = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    projected = agem_project(g, ref)  # g - (g.ref / ref.ref) ref = (1, 0) + 0.5 (-1, 1)
    assert projected.tolist() == [0.5, 0.5] and float(torch.dot(projected, ref)) == 0
    assert agem_project(torch.tensor([1.0, 2.0]), ref).tolist() == [1.0, 2.0]  # no conflict: unchanged


def test_reservoir_keeps_every_item_with_equal_chance():
    counts = np.zeros(100)
    for seed in range(2000):
        r = Reservoir(10, seed)
        for i in range(100):
            r.offer(i)
        assert len(r.items) == 10 and len(set(r.items)) == 10
        counts[r.items] += 1
    # each item kept in Binomial(2000, 0.1) runs: mean 200, sd 13.4; and a chi-square test of uniformity
    assert abs(counts - 200).max() < 5 * 13.42
    from scipy.stats import chisquare

    assert chisquare(counts).pvalue > 1e-3


def test_gdumb_buffer_balances_the_classes():
    b = ClassBalanced(12, seed=0)
    stream = [0] * 30 + [1] * 10 + [2] * 5
    for i, c in enumerate(stream):
        b.offer(i, c)
    counts = np.bincount([c for _, c in b.items], minlength=3)
    assert counts.sum() == 12 and counts.max() - counts.min() <= 1


def test_buffers_only_where_a_strategy_keeps_one():
    with pytest.raises(InvalidArgument, match="--buffer is for replay, agem, gdumb"):
        make_strategy("ewc", Settings(buffer=100), 0)
    with pytest.raises(InvalidArgument, match="give its size with --buffer"):
        make_strategy("replay", Settings(), 0)


def _lwf_after_two_tasks(scenario: str):
    """LwF after the second of Split MNIST's five two-class tasks (a net of 10 outputs), the net then moved away from
    its copy."""
    from mnistlab.continual.benchmarks import make_benchmark

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 10)
    s = make_strategy("lwf", Settings(temperature=2.0, strength=0.5), seed=0)
    bench = make_benchmark("split-mnist", scenario, np.repeat(np.arange(10), 3), np.repeat(np.arange(10), 2))

    class Seen:  # the learner's masks, as the loop's Learner computes them
        def __init__(self):
            self.bench = bench

        def active_mask(self, t, seen):
            mask = torch.zeros(bench.outputs, dtype=torch.bool)
            mask[torch.from_numpy(bench.active(t, seen))] = True
            return mask

    s.after_task(net, Seen(), 4, None)  # after the last task: no next one to make room for
    s.after_task(net, Seen(), 1, None)
    with torch.no_grad():
        net.weight.add_(0.3)
    x = torch.randn(5, 3)
    s.batch(x, torch.zeros(5, dtype=torch.long), 2, None)  # the third task: its own loss 1/3, the distillation 2/3
    assert s.current_weight(2) == pytest.approx(1 / 3) and make_strategy("naive", Settings(), 0).current_weight(2) == 1
    return s, net, x


def test_lwf_in_the_class_scenario_teaches_the_new_outputs_a_probability_of_0():
    s, net, x = _lwf_after_two_tasks("class")
    old, new = s.old(x)[:, :4], net(x)[:, :6]  # the copy's 4 outputs seen; in the third task, 6
    target = torch.softmax(old / 2, dim=1)
    by_hand = -(target * torch.log_softmax(new / 2, dim=1)[:, :4]).sum(1).mean() * 4  # the new two: target 0
    assert float(s.penalty(net, x).detach()) == pytest.approx(0.5 * 2 / 3 * float(by_hand.detach()), rel=1e-6)


def test_lwf_in_the_task_scenario_averages_a_term_per_earlier_task():
    s, net, x = _lwf_after_two_tasks("task")
    old, new = s.old(x), net(x)
    by_hand = sum(-(torch.softmax(old[:, k:k + 2] / 2, 1) * torch.log_softmax(new[:, k:k + 2] / 2, 1)).sum(1).mean() * 4
                  for k in (0, 2)) / 2
    assert float(s.penalty(net, x).detach()) == pytest.approx(0.5 * 2 / 3 * float(by_hand.detach()), rel=1e-6)
    assert float(distillation_loss(new[:, :2], new[:, :2], 2.0).detach()) > 0  # a cross-entropy, not a KL: never 0


def test_lwf_resumes_a_checkpoint_of_the_version_that_distilled_the_last_task_only():
    s = make_strategy("lwf", Settings(), seed=0)
    s.load_state_dict({"old": None, "old_active": torch.tensor([2, 3])})
    assert [(a.tolist(), b.tolist()) for a, b in s.pairs] == [([2, 3], [2, 3])]
