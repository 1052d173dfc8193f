"""Metric functions against hand-computed cases and scikit-learn's."""

import numpy as np
import pytest
from sklearn import metrics as skm

from mnistlab.evaluate.metrics import confident_mistakes, confusion_matrix, expected_calibration_error, per_class, summarize, top_k_accuracy


def test_hand_computed_case():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 2, 0])
    cm = confusion_matrix(y, p, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    pc = per_class(cm)
    np.testing.assert_allclose(pc["precision"], [0.5, 2 / 3, 1.0])
    np.testing.assert_allclose(pc["recall"], [0.5, 1.0, 0.5])
    np.testing.assert_allclose(pc["f1"], [0.5, 0.8, 2 / 3])


def test_agrees_with_scikit_learn():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 7))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, 7, 500)
    pred = probs.argmax(1)
    np.testing.assert_array_equal(confusion_matrix(y, pred, 7), skm.confusion_matrix(y, pred, labels=range(7)))
    pc = per_class(confusion_matrix(y, pred, 7))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=range(7), zero_division=0)
    np.testing.assert_allclose(pc["precision"], p)
    np.testing.assert_allclose(pc["recall"], r)
    np.testing.assert_allclose(pc["f1"], f)
    for k in (1, 2, 3):
        assert top_k_accuracy(probs, y, k) == pytest.approx(skm.top_k_accuracy_score(y, probs, k=k, labels=range(7)))
    s = summarize(probs, y, list("abcdefg"))
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, pred)) and s["errors"] == int((pred != y).sum())
    assert s["loss"] == pytest.approx(skm.log_loss(y, probs, labels=range(7)))
    assert s["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))


def test_calibration():
    # perfectly calibrated: confidence 0.8 and 80% right -> ECE 0
    probs = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, y)[0] == pytest.approx(0.0)
    # always 90% sure, always wrong -> ECE 0.9
    assert expected_calibration_error(np.tile([0.9, 0.1], (4, 1)), np.ones(4, int))[0] == pytest.approx(0.9)


def test_confident_mistakes_order():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.99, 0.01]])
    y = np.array([1, 1, 1, 0])
    got = confident_mistakes(probs, y)
    assert [g["index"] for g in got] == [0, 1]
    assert got[0]["confidence"] == pytest.approx(0.9) and got[0]["true_probability"] == pytest.approx(0.1)


def _before(probs, y, n):
    """The hand-written metrics these functions replaced (commit b9f2e44), as the reference they must equal."""
    pred = probs.argmax(1)
    cm = np.bincount(y * n + pred, minlength=n * n).reshape(n, n)
    tp, predicted, support = np.diag(cm).astype(float), cm.sum(0), cm.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=precision + recall > 0)
    top = {k: float((np.argpartition(-probs, min(k, n) - 1, axis=1)[:, :min(k, n)] == y[:, None]).any(1).mean())
           for k in (1, 2, 3, 5)}
    loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
    return cm, precision, recall, f1, support, top, loss


@pytest.mark.parametrize("n, seed", [(10, 0), (3, 1), (47, 2)])
def test_the_same_numbers_as_the_hand_written_metrics(n, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, size=(2000, n))
    logits[:, n - 1] -= 8  # a class that is never predicted: its precision is 0, not a division by zero
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    y = rng.integers(0, n, 2000)
    cm, precision, recall, f1, support, top, loss = _before(probs, y, n)
    np.testing.assert_array_equal(confusion_matrix(y, probs.argmax(1), n), cm)
    pc = per_class(cm)
    for name, want in (("precision", precision), ("recall", recall), ("f1", f1), ("support", support)):
        np.testing.assert_allclose(pc[name], want, rtol=1e-12, atol=0, err_msg=name)
    assert {k: top_k_accuracy(probs, y, k) for k in top} == top
    assert summarize(probs, y, [str(c) for c in range(n)])["loss"] == pytest.approx(loss, rel=1e-6)
