"""Temperature scaling: the fit recovers a known temperature, never changes a prediction, and a real run
stores a temperature that its predictions, exports and ensembles use."""

import json

import numpy as np
import pytest

from mnistlab.calibration import calibrated, expected_calibration_error, fit_temperature, nll, probabilities


def synthetic(temperature: float, n: int = 20000, classes: int = 10, seed: int = 0):
    """Labels drawn from softmax(logits); the logits reported at another temperature."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, classes))
    true = np.exp(logits - logits.max(1, keepdims=True))
    true /= true.sum(1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in true])
    return logits * temperature, labels  # logits / (1 / temperature)


@pytest.mark.parametrize("shown_at", [0.5, 2.0])
def test_fit_recovers_the_temperature_and_keeps_every_prediction(shown_at):
    logits, labels = synthetic(shown_at)
    t = fit_temperature(logits, labels)
    assert abs(t - shown_at) / shown_at < 0.05  # the logits were sharpened / softened by exactly this
    probs, fixed = probabilities(logits), probabilities(logits, t)
    assert (fixed.argmax(1) == probs.argmax(1)).all()
    assert expected_calibration_error(fixed, labels)[0] < 0.5 * expected_calibration_error(probs, labels)[0]
    assert nll(fixed, labels) < nll(probs, labels)
    np.testing.assert_allclose(fixed.sum(1), 1, atol=1e-5)


def test_one_formula_for_numpy_and_torch():
    """The trainer's test probabilities (NumPy) and Run.predict_proba / the exports (the torch module) both divide
    the logits by T: the same numbers, whatever T."""
    import torch

    logits, _ = synthetic(1.0, n=100)
    by_hand = np.exp(logits / 0.7) / np.exp(logits / 0.7).sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities(logits, 0.7), by_hand, rtol=1e-6)
    module = calibrated(torch.nn.Identity(), 0.7)
    np.testing.assert_allclose(module(torch.from_numpy(logits).float()).numpy(), by_hand, atol=1e-6)


@pytest.mark.realdata
def test_a_run_is_calibrated_on_held_out_training_images(real_home, tmp_path):
    import mnistlab
    from mnistlab.export import export_run, load_exported
    from mnistlab.training import train

    run = train("speednet", "mnist", out=tmp_path / "r", data_dir=real_home, train_subset=12000, device="cpu")
    m = run.metrics
    cal = m["calibration"]
    assert m["temperature"] == cal["temperature"] == run.temperature and cal["images"] == 5000
    assert cal["temperature"] < 1  # label smoothing makes the net too unsure: the temperature sharpens it
    assert cal["held_out"]["ece_after"] < cal["held_out"]["ece_before"]
    assert cal["test"]["ece_after"] < cal["test"]["ece_before"] and cal["test"]["nll_after"] < cal["test"]["nll_before"]
    config = json.loads((run.path / "config.json").read_text())
    assert config["calibration_split"] == 5000
    # the stored test probabilities, the run's predictions and an export all use the temperature
    test = mnistlab.load_dataset("mnist", "test", data_dir=real_home)
    probs = run.test_probs()
    assert float((probs.argmax(1) == test.labels).mean()) == m["test_accuracy"] == cal["test"]["accuracy"]  # calibration changes no prediction
    assert abs(expected_calibration_error(probs, test.labels)[0] - cal["test"]["ece_after"]) < 1e-6
    np.testing.assert_allclose(run.predict_proba(test.images[:64]), probs[:64], atol=2e-5)
    export_run(run, "onnx", tmp_path / "m.onnx", check=False)
    x = np.asarray(test.images[:64], np.float32)[:, None] / 255
    np.testing.assert_allclose(load_exported(tmp_path / "m.onnx", "onnx")(x), probs[:64], atol=2e-5)


@pytest.mark.realdata
def test_with_a_val_split_the_validation_images_serve_and_nothing_more_is_held_out(real_home, tmp_path):
    from mnistlab.training import train

    run = train("mlp", "mnist", out=tmp_path / "r", data_dir=real_home, epochs=1, val_split=3000, device="cpu")
    assert run.metrics["calibration"]["images"] == 3000 and run.metrics["train_images"] == 57000
    off = train("mlp", "mnist", out=tmp_path / "off", data_dir=real_home, epochs=1, calibration_split=0, device="cpu")
    assert off.metrics["temperature"] == 1.0 and off.metrics["train_images"] == 60000
