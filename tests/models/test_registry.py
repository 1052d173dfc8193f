"""Every model in the registry: builds for every class count in the catalog, forward shape, backward, no NaN."""

import pytest
import torch

from mnistlab.errors import MnistlabError, UnknownName
from mnistlab.models import count_macs, count_params, create_model, get_model_info, list_models, register_model

NETS = list_models(family="neural")
CLASSICAL = list_models(family="classical")


def test_registry_has_every_model_the_guides_name():
    assert {"logreg", "linear-svm", "rbf-svm", "rbf-svm-approx", "knn", "random-forest"} <= set(CLASSICAL)
    assert {"mlp", "cnn", "lenet5", "cnn-bn", "resnet"} <= set(NETS)
    assert "ensemble" not in list_models()  # a kind of run (mnistlab ensemble), not a model
    assert list_models("cnn*") == ["cnn", "cnn-bn"]


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("num_classes", [10, 26, 47, 62])
def test_net_forward_backward(name, num_classes):
    torch.manual_seed(0)
    net = create_model(name, num_classes)
    x = torch.rand(4, 1, 28, 28)
    logits = net(x)
    assert logits.shape == (4, num_classes) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.arange(4) % num_classes).backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", NETS)
def test_features_head_and_reset_classifier(name):
    net = create_model(name, 10).eval()
    x = torch.rand(3, 1, 28, 28)
    feats = net.forward_features(x)
    assert feats.shape == (3, net.num_features)
    torch.testing.assert_close(net.forward_head(feats), net(x))
    backbone = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("head.")}
    net.reset_classifier(47)
    assert net(x).shape == (3, 47)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in backbone.items()), "the backbone is kept"


def test_guide_models_are_exactly_the_guides():
    mlp, cnn = create_model("mlp"), create_model("cnn")
    assert count_params(mlp) == 784 * 128 + 128 + 128 * 10 + 10  # Keras summary: 101,770
    assert count_params(cnn) == (9 * 32 + 32) + (9 * 32 * 64 + 64) + (1600 * 128 + 128) + (128 * 10 + 10)
    convs = [m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(32, (3, 3)), (64, (3, 3))]
    assert count_macs(mlp) == 784 * 128 + 128 * 10
    # conv 3x3 1->32 on 26x26, conv 3x3 32->64 on 11x11, dense 1600->128->10: PyTorch's flop counter, halved
    assert count_macs(cnn) == 26 * 26 * 32 * 9 + 11 * 11 * 64 * 9 * 32 + 1600 * 128 + 128 * 10 == 2_631_040


@pytest.mark.parametrize("kernel, channels, side", [(3, [32, 48, 64, 80, 96, 112, 128, 144, 160, 176], 8),
                                                   (5, [32, 64, 96, 128, 160], 8), (7, [48, 96, 144, 192], 4)])
def test_simplecnn_is_an_et_al_layout(kernel, channels, side):
    """M3, M5 and M7 of An et al. 2020: KxK convs without padding or pooling, a linear layer with batch norm."""
    net = create_model("simplecnn", kernel=kernel)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == channels and {c.kernel_size for c in convs} == {(kernel, kernel)}
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())
    assert net.num_features == channels[-1] * side * side
    assert [c.out_channels for c in create_model("simplecnn", kernel=kernel, width=0.5).modules()
            if isinstance(c, torch.nn.Conv2d)] == [round(c / 2) for c in channels]
    with pytest.raises(MnistlabError, match=r"cannot be built with \{'kernel': 4\}: kernel must be one of \[3, 5, 7\]"):
        create_model("simplecnn", kernel=4)


@pytest.mark.parametrize("name", CLASSICAL)
def test_classical_models_keep_the_estimator_contract(name):
    from sklearn.base import clone, is_classifier

    est = create_model(name)
    assert is_classifier(est) or hasattr(est, "steps")
    clone(est)  # get_params/set_params round-trip, as scikit-learn requires


def test_unknown_and_duplicate_names():
    with pytest.raises(UnknownName, match="did you mean 'resnet'"):
        create_model("resnt")
    with pytest.raises(MnistlabError, match="already registered"):
        register_model("cnn", family="neural", description="x")(lambda num_classes: None)
    with pytest.raises(UnknownName, match="unknown model 'ensemble'"):
        create_model("ensemble")  # a kind of run: `mnistlab train --model ensemble` says how to make one
    with pytest.raises(MnistlabError, match="does not take the setting wings"):
        create_model("mlp", wings=2)
    assert get_model_info("knn").family == "classical"
