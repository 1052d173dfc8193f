"""mnistlab ood on a real (small) MNIST net: the sets, the table, the detector kept in the run folder, and every
answer of predict carrying it."""

import json

import numpy as np
import pytest

import mnistlab
from mnistlab.cli import invoke
from mnistlab.errors import DatasetNotFound, InvalidArgument
from mnistlab.ood import KEPT, field_name, kept_detector, measure_ood
from mnistlab.ood.detectors import DETECTORS
from mnistlab.ood.sets import BLOCK, choose, generated, scramble

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def cnn_run(real_home, tmp_path_factory):
    return mnistlab.train("cnn", "mnist", out=tmp_path_factory.mktemp("ood") / "cnn", data_dir=real_home, epochs=1,
                          train_subset=3000, device="cpu")


def test_scrambled_digits_keep_each_image_s_blocks_in_a_new_order():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    out = scramble(images, np.random.default_rng(1))
    blocks = lambda a: sorted(a[y:y + BLOCK, x:x + BLOCK].tobytes() for y in range(0, 28, BLOCK)  # noqa: E731
                              for x in range(0, 28, BLOCK))
    for before, after in zip(images, out):
        assert blocks(before) == blocks(after) and not np.array_equal(before, after)
    assert np.array_equal(generated("scrambled", 5, 3, images), generated("scrambled", 5, 3, images))
    noise = generated("gaussian", 2000, 0, images).astype(float) / 255
    assert abs((noise == 0).mean() - 0.3085) < 0.02 and abs((noise == 1).mean() - 0.3085) < 0.02  # N(0.5, 1) clipped


def test_the_sets_are_the_cached_datasets_of_other_classes_and_the_generated_ones(real_home):
    assert choose("mnist", [], real_home) == ["fashion-mnist", "uniform", "gaussian", "scrambled"]
    assert choose("fashion-mnist", [], real_home)[0] == "mnist"  # a clothes model's other kind: digits
    with pytest.raises(DatasetNotFound, match="mnistlab data fetch kmnist"):
        choose("mnist", ["kmnist"], real_home)
    with pytest.raises(InvalidArgument, match="unknown set 'cifar'"):
        choose("mnist", ["cifar"], real_home)
    with pytest.raises(InvalidArgument, match="unknown set 'mnist-c-fog'"):  # digits: no other kind for a digit model
        choose("mnist", ["mnist-c-fog"], real_home)


def test_ood_measures_every_detector_and_keeps_the_chosen_one(cnn_run, real_home, tmp_path):
    r = measure_ood(cnn_run, against=["fashion-mnist", "uniform"], images=600, resamples=20, data_dir=real_home,
                    out=tmp_path)
    assert set(r["detectors"]) == set(DETECTORS) and r["unavailable"] is None
    for row in r["detectors"].values():
        assert set(row) == {"fashion-mnist", "uniform"}
        for m in ("auroc", "aupr_in", "aupr_out", "fpr95"):
            assert 0 <= row["uniform"][m] <= 1
    assert r["detectors"]["msp"]["uniform"]["auroc"] > 0.95 and r["detectors"]["msp"]["fashion-mnist"]["auroc"] > 0.8
    assert r["chosen"] in DETECTORS and r["field"] == "digit_like" == field_name(cnn_run)
    assert abs(r["false_alarm_test"] - 0.05) < 0.04  # the threshold lets 95% of held-out training digits through
    kept = json.loads((cnn_run.path / KEPT).read_text())
    assert kept["detector"] == r["chosen"] and kept["threshold"] == r["threshold"]
    assert set(kept["auroc_held_out"][r["chosen"]]) == {"uniform", "gaussian", "scrambled"}  # never the test sets
    assert (tmp_path / "ood.json").exists() and (cnn_run.path / "ood.png").read_bytes()[:4] == b"\x89PNG"
    # a second reader takes the kept choice from the folder, and scores as the first did
    again = kept_detector(mnistlab.load_run(cnn_run.path))
    x = mnistlab.load_dataset("mnist", "test", data_dir=real_home).images[:50]
    assert again.name == r["chosen"] and np.allclose(again.scores(x), kept_detector(cnn_run).scores(x), rtol=1e-5)


def test_predict_says_whether_a_picture_looks_like_a_digit(cnn_run, real_home, tmp_path, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    digit = mnistlab.load_dataset("mnist", "test", data_dir=real_home).images[0]
    clothes = mnistlab.load_dataset("fashion-mnist", "test", data_dir=real_home).images[:8]
    paths = []
    for k, img in enumerate([digit, *clothes]):
        paths.append(str(tmp_path / f"{k}.png"))
        Image.fromarray(255 - img).save(paths[-1])  # dark on light, as a photo or the pad has it
    invoke(["predict", str(cnn_run.path), *paths, "--json"])  # a garment may be refused (no digit found): exit 1
    answers = [a for a in json.loads(capsys.readouterr().out) if "error" not in a]
    threshold = kept_detector(cnn_run).threshold
    assert answers[0]["digit_like"] and len(answers) > 4
    for answer in answers:
        assert answer["digit_like"] == (answer["ood_score"] >= threshold)
    # the words beside a flagged answer (which of these a one-epoch net flags is its business)
    flags = iter([True, False] * 5)
    monkeypatch.setattr("mnistlab.ood.judged", lambda run, images: [{"ood_score": 0.0, "digit_like": next(flags)}
                                                                     for _ in images])
    invoke(["predict", str(cnn_run.path), *paths[:4]])
    lines = capsys.readouterr().out.strip().splitlines()
    assert ["(does not look like a digit)" in line for line in lines] == [False, True, False, True][:len(lines)]


def test_an_unknown_detector_is_one_line(cnn_run, real_home, capsys):
    assert invoke(["ood", str(cnn_run.path), "--detector", "odin", "--data-dir", str(real_home)]) != 0
    assert "unknown detector 'odin'" in capsys.readouterr().err


def test_the_report_shows_the_ood_table_and_picture(cnn_run, real_home):
    from mnistlab.report import build_report

    measure_ood(cnn_run, against=["uniform"], images=300, resamples=10, data_dir=real_home)
    md = build_report(cnn_run, data_dir=real_home)["md"].read_text()
    assert "## Out-of-distribution detection against uniform" in md and "report_files/ood.png" in md
    assert "| msp |" in md or "| msp (chosen) |" in md


def test_one_run_s_first_choice_does_not_stall_another_s(cnn_run, real_home, tmp_path, monkeypatch):
    """A server's answers for one run go on while another run's detector is being chosen (seconds, the first time)."""
    import shutil
    import threading

    import mnistlab.ood as ood

    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    kept_detector(cnn_run)  # kept in its folder
    other = shutil.copytree(cnn_run.path, tmp_path / "copy", ignore=shutil.ignore_patterns("ood*", ".*lock"))
    started, release = threading.Event(), threading.Event()
    real = ood._choose_and_keep

    def slow(run, data_dir):
        started.set()
        release.wait(120)
        return real(run, data_dir)

    monkeypatch.setattr(ood, "_choose_and_keep", slow)
    choosing = threading.Thread(target=kept_detector, args=(mnistlab.load_run(other),))
    choosing.start()
    try:
        assert started.wait(120)
        answered = []
        reader = threading.Thread(target=lambda: answered.append(kept_detector(mnistlab.load_run(cnn_run.path)).name))
        reader.start()
        reader.join(120)  # with one lock for every run it would wait for the other run's choice, here forever
        assert answered == [kept_detector(cnn_run).name] and choosing.is_alive()
    finally:
        release.set()
        choosing.join(120)
    assert (other / KEPT).exists()


def test_a_classical_run_and_an_ensemble_with_it_get_msp_and_say_why(cnn_run, real_home, tmp_path):
    from mnistlab.training.ensemble import make_ensemble

    logreg = mnistlab.train("logreg", "mnist", out=tmp_path / "logreg", data_dir=real_home, train_subset=1000)
    both = make_ensemble([cnn_run.path, logreg.path], out=tmp_path / "both", data_dir=real_home)
    for run in (logreg, both):
        r = measure_ood(run, against=["uniform"], images=300, resamples=10, data_dir=real_home)
        assert list(r["detectors"]) == ["msp"] and r["chosen"] == "msp" and "classical" in r["unavailable"]
        assert 0.5 <= r["detectors"]["msp"]["uniform"]["auroc"] <= 1
    with pytest.raises(InvalidArgument, match="detector energy cannot run on this run: a classical model"):
        measure_ood(logreg, detectors=["energy"], images=300, data_dir=real_home)
    # the ensemble's msp is of its members' mean probabilities, as it predicts
    x = mnistlab.load_dataset("mnist", "test", data_dir=real_home).images[:30]
    assert np.allclose(kept_detector(both).scores(x), both.predict_proba(x).max(1), atol=1e-5)


def test_an_ensemble_of_nets_scores_the_mean_of_its_members(cnn_run, real_home, tmp_path):
    import shutil

    from mnistlab.training.ensemble import make_ensemble

    twin = shutil.copytree(cnn_run.path, tmp_path / "twin", ignore=shutil.ignore_patterns("ood*", ".*lock"))
    pair = make_ensemble([cnn_run.path, twin], out=tmp_path / "pair", data_dir=real_home)
    detector = kept_detector(pair, real_home)
    x = mnistlab.load_dataset("mnist", "test", data_dir=real_home).images[:30]
    alone = kept_detector(cnn_run)
    if detector.name == alone.name:  # the twin scores as the original: the mean of two equal scores is one of them
        assert np.allclose(detector.scores(x), alone.scores(x), rtol=1e-5, atol=1e-5)
    assert detector.record["held_out_images"] > 0
