"""Metric functions against hand-computed cases and scikit-learn's."""

import numpy as np
import pytest
from sklearn import metrics as skm

from mnistlab.evaluate.metrics import (confident_mistakes, confusion_matrix, expected_calibration_error, per_class,
                                       summarize, top_k_accuracy)


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
