"""The weight average and test-time augmentation, on nets whose numbers can be followed by hand."""

import torch

from mnistlab.training.averaging import WeightAverage
from mnistlab.tta import SHIFTS, Views, turned, with_tta


def test_the_average_follows_the_weights_at_its_rate():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    avg = WeightAverage(net, decay=0.5)
    w0 = net[0].weight.detach().clone()
    expected = w0.clone()
    for step in range(1, 6):
        with torch.no_grad():
            net[0].weight.fill_(float(step))
            net[1].running_mean.fill_(float(step))
        avg.advance()
        avg.update()
        rate = 1 - min(0.5, (1 + step - 1) / (10 + step - 1))
        expected = expected + rate * (step - expected)
    torch.testing.assert_close(avg.module[0].weight, expected)
    assert float(avg.module[1].running_mean[0]) != float(net[1].running_mean[0])  # buffers are averaged too
    assert not avg.module.training and not any(p.requires_grad for p in avg.module.parameters())
    again = WeightAverage(net, decay=0.5)
    again.load_state_dict(avg.state_dict())
    torch.testing.assert_close(again.module[0].weight, expected)
    assert again.updates == 5


class Probe(torch.nn.Module):
    """Logits = the ink at two pixels: shows exactly which moved copies the views made."""

    def forward(self, x):
        return torch.stack([x[:, 0, 10, 10], x[:, 0, 10, 11]], 1)


def test_shift_views_average_the_one_pixel_moves():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 10] = 1.0
    out = Views(Probe(), "shift")(x)
    # pixel (10, 10) keeps its ink only in the unshifted view; (10, 11) gets it from the shift right
    torch.testing.assert_close(out, torch.tensor([[1 / len(SHIFTS), 1 / len(SHIFTS)]]))
    net = Probe()
    assert with_tta(net, "none") is net and isinstance(with_tta(net, "shift-rotate"), Views)


def test_flip_views_add_the_mirror_of_each_view():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 10] = 1.0
    out = Views(Probe(), "flip")(x)
    # the unmoved image and its mirror: the ink at column 10 lands at column 17 in the mirror, away from both probes
    torch.testing.assert_close(out, torch.tensor([[0.5, 0.0]]))
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 17] = 1.0  # the mirror of column 10: only the mirrors see it at (10, 10), and at (10, 11) after a shift left
    out = Views(Probe(), "shift-flip")(x)
    torch.testing.assert_close(out, torch.tensor([[1 / (2 * len(SHIFTS)), 1 / (2 * len(SHIFTS))]]))


def test_turned_rotates_and_zooms_about_the_centre():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 20] = 1.0
    torch.testing.assert_close(turned(x, 0.0), x)
    # a quarter turn maps pixel centres onto pixel centres: the ink moves whole, from (10, 20) to (7, 10)
    expected = torch.zeros(1, 1, 28, 28)
    expected[0, 0, 7, 10] = 1.0
    torch.testing.assert_close(turned(x, 90.0), expected, atol=1e-6, rtol=0)
    # scale 2 shrinks the image to half its size about the centre: a white page keeps its middle, loses its rim
    small = turned(torch.ones(1, 1, 28, 28), 0.0, scale=2.0)
    assert small[0, 0, 14, 14] == 1.0 and small[0, 0, 0, 0] == 0.0 and small[0, 0, 14, 1] == 0.0
