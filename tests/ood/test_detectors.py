"""Each detector and metric against an independent computation: scikit-learn's covariance, neighbours and curves,
SciPy's Mahalanobis distance and logsumexp, and ViM computed as its authors' code does (np.linalg.eig of an
EmpiricalCovariance), on features with the shape of a small net's."""

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis
from scipy.special import logsumexp, softmax

from mnistlab.errors import InvalidArgument
from mnistlab.ood.detectors import KNN_K, Outputs, fit, principal_dims, score
from mnistlab.ood.metrics import misclassification_auroc, risk_coverage, separation, with_intervals

C, F = 4, 12


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (C, F))
    labels = rng.integers(0, C, 400)
    train = centres[labels] + rng.normal(0, 1, (400, F)) @ rng.normal(0, 0.5, (F, F))
    weight, bias = rng.normal(0, 1, (C, F)), rng.normal(0, 1, C)
    test = np.concatenate([centres[rng.integers(0, C, 30)] + rng.normal(0, 1, (30, F)), rng.normal(0, 6, (30, F))])
    return train, labels, weight, bias, test


def _outputs(features, weight, bias, temperature=1.0):
    logits = features @ weight.T + bias
    return Outputs(logits, softmax(logits / temperature, axis=1), features)


def test_the_logit_detectors_are_the_papers_formulas():
    logits = np.array([[2.0, 1.0, -1.0], [0.1, 0.2, 0.3], [10.0, -5.0, 9.0]])
    out = Outputs(logits, softmax(logits / 1.7, axis=1))
    assert np.allclose(score("msp", out), np.exp(logits / 1.7).max(1) / np.exp(logits / 1.7).sum(1))
    assert np.array_equal(score("max_logit", out), [2.0, 0.3, 10.0])
    assert np.allclose(score("energy", out), logsumexp(logits, axis=1))  # -E(x; f) with T = 1 (Liu et al., eq. 7)


def test_mahalanobis_is_sklearn_s_shared_covariance_and_scipy_s_distance(data):
    from sklearn.covariance import EmpiricalCovariance

    train, labels, weight, bias, test = data
    fitted = fit(train, labels, train @ weight.T + bias, weight, bias, C)
    means = np.stack([train[labels == c].mean(0) for c in range(C)])
    precision = EmpiricalCovariance(assume_centered=False).fit(train - means[labels]).precision_  # Lee et al.'s code
    expected = [-min(scipy_mahalanobis(x, m, precision) ** 2 for m in means) for x in test]
    assert np.allclose(score("mahalanobis", _outputs(test, weight, bias), fitted), expected, rtol=1e-6)


def test_knn_is_the_kth_neighbour_of_sklearn_on_unit_features(data):
    from sklearn.neighbors import NearestNeighbors

    train, labels, weight, bias, test = data
    fitted = fit(train, labels, train @ weight.T + bias, weight, bias, C)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    distances, _ = NearestNeighbors(n_neighbors=KNN_K).fit(unit(train)).kneighbors(unit(test))
    assert np.allclose(score("knn", _outputs(test, weight, bias), fitted), -distances[:, -1], atol=1e-5)


def test_vim_is_its_authors_computation(data):
    from sklearn.covariance import EmpiricalCovariance

    train, labels, weight, bias, test = data
    train_logits = train @ weight.T + bias
    fitted = fit(train, labels, train_logits, weight, bias, C)
    # as Wang et al.'s code does it: the origin from the head, the covariance's eigenvectors by np.linalg.eig
    u = -np.matmul(np.linalg.pinv(weight), bias)
    covariance = EmpiricalCovariance(assume_centered=True).fit(train - u).covariance_
    values, vectors = np.linalg.eig(covariance)
    ns = np.ascontiguousarray(vectors.T[np.argsort(values * -1)[principal_dims(F):]].T)
    alpha = train_logits.max(axis=-1).mean() / np.linalg.norm(np.matmul(train - u, ns), axis=-1).mean()
    test_logits = test @ weight.T + bias
    expected = -np.linalg.norm(np.matmul(test - u, ns), axis=-1) * alpha + logsumexp(test_logits, axis=-1)
    assert np.isclose(fitted.alpha, alpha)
    assert np.allclose(score("vim", _outputs(test, weight, bias), fitted), expected, rtol=1e-6)


def test_a_feature_detector_without_features_or_an_unknown_one_is_one_line():
    out = Outputs(np.zeros((2, 3)), np.full((2, 3), 1 / 3))
    with pytest.raises(InvalidArgument, match="penultimate features"):
        score("knn", out)
    with pytest.raises(InvalidArgument, match="unknown detector 'odin'"):
        score("odin", out)
    with pytest.raises(InvalidArgument, match="probabilities only"):
        score("energy", Outputs(None, np.full((2, 3), 1 / 3)))


def test_the_metrics_are_sklearn_s_with_ties_and_fpr95_is_counted_by_hand():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(1)
    for _ in range(100):
        n_in, n_out = rng.integers(1, 50, 2)
        digits = int(rng.integers(0, 3))  # rounding makes ties, within and across the two sets
        a, b = np.round(rng.normal(1, 1, n_in), digits), np.round(rng.normal(0, 1, n_out), digits)
        got = separation(a, b)
        y, s = np.r_[np.ones(n_in), np.zeros(n_out)], np.r_[a, b]
        assert got["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert got["aupr_in"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert got["aupr_out"] == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
        kept = sorted(a, reverse=True)[int(np.ceil(0.95 * n_in)) - 1]  # the threshold that lets 95% of `a` pass
        assert got["fpr95"] == sum(x >= kept for x in b) / n_out


def test_the_bootstrap_interval_holds_the_estimate_and_narrows_with_more_images():
    rng = np.random.default_rng(2)
    small = with_intervals(rng.normal(1, 1, 200), rng.normal(0, 1, 200), seed=0)
    large = with_intervals(rng.normal(1, 1, 5000), rng.normal(0, 1, 5000), seed=0)
    for r in (small, large):
        for m in ("auroc", "aupr_in", "aupr_out", "fpr95"):
            low, high = r["interval"][m]
            assert low < r[m] < high
    width = lambda r: r["interval"]["auroc"][1] - r["interval"]["auroc"][0]  # noqa: E731
    assert width(large) < width(small) / 3  # about 1/sqrt(25) = 1/5 of it
    # N(1, 1) against N(0, 1): AUROC = Phi(1 / sqrt 2) = 0.7602
    assert large["interval"]["auroc"][0] < 0.7602 < large["interval"]["auroc"][1]


def test_misclassification_and_risk_coverage_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    right = np.array([1, 1, 1, 0, 1, 1, 0, 1, 0, 0], bool)
    # pairs (right, wrong) where the right one scores higher: 3*4 + 2*3 + 1*2 = 20 of 6*4 = 24
    assert misclassification_auroc(scores, right) == pytest.approx(20 / 24)
    rows = risk_coverage(scores, right, steps=5)
    assert [r["coverage"] for r in rows] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert [r["accuracy"] for r in rows] == [1.0, 3 / 4, 5 / 6, 6 / 8, 6 / 10]
    assert np.isnan(misclassification_auroc(scores, np.ones(10, bool)))


@pytest.mark.parametrize("name", ["msp", "max_logit", "energy", "mahalanobis", "knn", "vim"])
def test_the_export_s_graph_scores_as_the_detector_does(name):
    """ood/graph.py in PyTorch ops against detectors.py in NumPy, on a zoo net's real features."""
    import torch

    from mnistlab.calibration import calibrated
    from mnistlab.models import create_model
    from mnistlab.ood.graph import WithScore

    torch.manual_seed(0)
    net = create_model("mlp", 10).eval()
    x = torch.rand(300, 1, 28, 28)
    with torch.no_grad():
        f = net.forward_features(x).numpy().astype(np.float64)
        logits = net.forward_head(torch.from_numpy(f).float()).numpy().astype(np.float64)
    labels = logits.argmax(1)
    fitted = fit(f[:200], labels[:200], logits[:200], net.head.weight.detach().numpy(), net.head.bias.detach().numpy(), 10)
    expected = score(name, Outputs(logits[200:], softmax(logits[200:] / 1.5, axis=1), f[200:]), fitted)
    with torch.no_grad():
        probs, got = WithScore(calibrated(net, 1.5), net, name, fitted)(x[200:])
    assert np.allclose(probs.numpy(), softmax(logits[200:] / 1.5, axis=1), atol=1e-6)
    assert np.allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4 * np.ptp(expected))
