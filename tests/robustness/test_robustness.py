"""`mnistlab robustness` end to end on real MNIST runs: the JSON, robustness.json, the picture, the report and bench
columns; classical runs and ensembles; the official MNIST-C files imported from a generated mnist_c.zip."""

import dataclasses
import io
import json
import zipfile

import numpy as np
import pytest
from scipy.stats import binomtest

from mnistlab.cli import invoke
from mnistlab.data import catalog
from mnistlab.errors import DatasetNotFound
from mnistlab.robustness import measure_robustness
from mnistlab.run import Run
from tests.conftest import md5

pytestmark = pytest.mark.realdata
FEW = {"corruption_images": 300, "attack_images": 60, "steps": 10, "step_size": 0.04}  # small enough for a test


@pytest.fixture(scope="module")
def measured(mnist_run, real_home, tmp_path_factory):
    out = tmp_path_factory.mktemp("robust")
    return measure_robustness(mnist_run, data_dir=real_home, out=out, **FEW), out


def test_the_json_has_clean_the_fifteen_their_mean_and_both_attacks_per_eps(measured, mnist_run, real_home):
    from mnistlab.data import load_dataset

    r, out = measured
    labels = load_dataset("mnist", "test", data_dir=real_home).labels[:300]
    own = float((mnist_run.test_probs()[:300].argmax(1) == labels).mean())
    assert r["clean"] == pytest.approx(own)  # computed the way the run predicts: its own test accuracy on those images
    assert set(r["corruptions"]) == set(catalog.MNIST_C_CORRUPTIONS)
    assert r["mean_corruption_accuracy"] == pytest.approx(np.mean(list(r["corruptions"].values())))
    assert r["corruptions"]["brightness"] < r["clean"] and r["corruption_source"] == "mnistlab (seed 0)"
    adv = r["adversarial"]
    assert adv["images"] == 60 and set(adv["fgsm"]) == set(adv["pgd"]) == {"0.1", "0.2", "0.3"}
    for e in adv["pgd"]:  # each interval is scipy's exact (Clopper-Pearson) one for that count of 60
        correct = round(adv["pgd"][e] * 60)
        expected = binomtest(correct, 60).proportion_ci(0.95, method="exact")
        assert adv["intervals"]["pgd"][e] == pytest.approx([expected.low, expected.high], abs=1e-12)
        assert adv["pgd"][e] <= adv["fgsm"][e]
    written = json.loads((mnist_run.path / "robustness.json").read_text())
    assert written["corruptions"] == r["corruptions"] and (out / "robustness.json").exists()
    assert (mnist_run.path / "robustness.png").read_bytes()[:4] == b"\x89PNG"


def test_the_report_shows_the_corruption_table_picture_and_attack_curve(measured, mnist_run, real_home):
    from mnistlab.report import build_report

    paths = build_report(mnist_run, data_dir=real_home)
    page = paths["html"].read_text()
    assert "Accuracy per corruption" in page and "Under l_inf attack" in page and "canny edges" in page
    assert "How robust is it: accuracy under attack" in page
    assert (mnist_run.path / "report_files" / "attacks.png").exists()


def test_the_cli_prints_the_json_and_a_table(mnist_run, real_home, capsys):
    args = ["robustness", str(mnist_run.path), "--corruption-images", "100", "--attack-images", "20", "--steps", "3",
            "--eps", "0.3", "--data-dir", str(real_home)]
    assert invoke([*args, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert list(r["adversarial"]["pgd"]) == ["0.3"] and r["images"] == 100
    assert invoke([*args, "-q"]) == 0
    shown = capsys.readouterr().out
    assert "zigzag" in shown and "PGD" in shown and "0.3" in shown


def test_bad_settings_are_one_line(mnist_run, real_home, capsys):
    for bad in (["--eps", "1.5"], ["--steps", "0"], ["--corruptions", "theirs"]):
        assert invoke(["robustness", str(mnist_run.path), "--data-dir", str(real_home), *bad]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err


def test_a_classical_run_gets_the_corruptions_and_one_line_about_attacks(real_home, tmp_path):
    from mnistlab.training import train

    run = train("logreg", "mnist", out=tmp_path / "logreg", data_dir=real_home, train_subset=2000)
    r = measure_robustness(run, data_dir=real_home, corruption_images=200, write=False)
    assert len(r["corruptions"]) == 15 and "gradients" in r["adversarial"]["skipped"]


def test_an_ensemble_is_measured_as_it_predicts(mnist_run, real_home, tmp_path):
    from mnistlab.training import train
    from mnistlab.training.ensemble import make_ensemble

    other = train("mlp", "mnist", out=tmp_path / "mlp-1", data_dir=real_home, epochs=1, seed=1)
    ens = make_ensemble([mnist_run.path, other.path], out=tmp_path / "ens", data_dir=real_home)
    r = measure_robustness(ens, data_dir=real_home, corruption_images=200, attack_images=40, steps=5, step_size=0.03,
                           epsilons=[0.1])
    labels = np.asarray(Run(ens.path).test_probs()[:200].argmax(1))
    from mnistlab.data import load_dataset

    truth = load_dataset("mnist", "test", data_dir=real_home).labels[:200]
    assert r["clean"] == pytest.approx(float((labels == truth).mean()))
    assert r["adversarial"]["pgd"]["0.1"] <= r["adversarial"]["fgsm"]["0.1"]


# ------------------------------------------------------------------------- the official files, generated

@pytest.fixture
def official(tmp_path, real_home):
    """A generated mnist_c.zip in the published layout (mnist_c/<corruption>/{train,test}_{images,labels}.npy) holding
    brightness and stripe of MNIST's first 20 test digits, the two specs shrunk to its sizes and its checksum, a data
    home that also holds the real MNIST, and the catalog put back afterwards."""
    from mnistlab.data import load_dataset

    test = load_dataset("mnist", "test", data_dir=real_home)
    images, labels = test.images[:20], np.asarray(test.labels[:20]).astype(np.uint8)
    made = {"brightness": np.clip(images.astype(np.int32) + 128, 0, 255).astype(np.uint8),  # + 0.5, as 8-bit
            "stripe": images.copy()}
    made["stripe"][:, :, :7] = 255 - images[:, :, :7]
    made["stripe"][:, :, 21:] = 255 - images[:, :, 21:]
    path = tmp_path / "mnist_c.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, corrupted in made.items():
            for split, arr, lab in (("train", corrupted[:10], labels[:10]), ("test", corrupted, labels)):
                for kind, a in (("images", arr[..., None]), ("labels", lab)):
                    buf = io.BytesIO()
                    np.save(buf, a)
                    zf.writestr(f"mnist_c/{name}/{split}_{kind}.npy", buf.getvalue())
    archive = dataclasses.replace(catalog.MNIST_C_ARCHIVE, md5=md5(path.read_bytes()), sha256=None)
    originals = {n: catalog.get_spec(catalog.mnist_c_name(n)) for n in made}
    for n, spec in originals.items():
        catalog.register_dataset(dataclasses.replace(spec, sizes={"train": 10, "test": 20}, archive=archive), replace=True)
    home = tmp_path / "home"
    (home / "datasets").mkdir(parents=True)
    (home / "datasets" / "mnist").symlink_to(real_home / "datasets" / "mnist")
    yield path, home, made
    for spec in originals.values():
        catalog.register_dataset(spec, replace=True)


def test_mnist_c_zip_imports_verified_by_its_checksum(official, capsys):
    path, home, _ = official
    assert invoke(["data", "import", "mnist-c-brightness", str(path), "--data-dir", str(home)]) == 0
    assert "verified by md5 of mnist_c.zip" in capsys.readouterr().out
    from mnistlab.data import load_dataset

    ds = load_dataset("mnist-c-brightness", "test", data_dir=home)
    assert ds.images.shape == (20, 28, 28) and int(ds.images.min()) >= 128


def test_a_changed_mnist_c_zip_is_refused(official, capsys, tmp_path):
    path, home, _ = official
    bad = tmp_path / "other.zip"
    bad.write_bytes(path.read_bytes() + b"x")  # still a zip, no longer the published one
    assert invoke(["data", "import", "mnist-c-stripe", str(bad), "--data-dir", str(home)]) == 1
    assert "no published checksum" in capsys.readouterr().err


def test_robustness_uses_the_official_files_where_cached_and_says_how_close_its_own_come(official, mnist_run):
    from mnistlab.data import import_files

    path, home, made = official
    for name in made:
        import_files(catalog.mnist_c_name(name), path, data_dir=home)
    r = measure_robustness(mnist_run, data_dir=home, corruption_images=20, attack_images=0, write=False)
    assert r["corruption_source"]["brightness"] == "official" and r["corruption_source"]["fog"] == "mnistlab (seed 0)"
    close = r["own_vs_official"]
    assert set(close) == {"brightness", "stripe"}
    assert close["stripe"]["mean_abs_pixel_difference"] < 1e-6 and close["stripe"]["own"] == close["stripe"]["official"]
    assert close["brightness"]["mean_abs_pixel_difference"] < 0.5 / 255
    with pytest.raises(DatasetNotFound, match="not in the cache"):
        measure_robustness(mnist_run, data_dir=home, corruption_images=20, attack_images=0, corruptions="official", write=False)


# ---------------------------------------------------------------------- every neural net of the zoo, tiny data

@pytest.mark.parametrize("model", ["mlp", "mlp-300", "cnn", "lenet5", "cnn-bn", "resnet", "simplecnn", "speednet"])
def test_robustness_runs_for_every_neural_net_of_the_zoo(model, tmp_path, register):
    from mnistlab.data import import_files
    from mnistlab.models import list_models
    from mnistlab.training import train
    from tests.conftest import make_tiny

    assert set(list_models(family="neural")) <= {"mlp", "mlp-300", "cnn", "lenet5", "cnn-bn", "resnet", "simplecnn", "speednet",
                                                 "irm-mlp", "domainbed-cnn"}  # the last two: tests/training/test_environments.py
    tiny = make_tiny(tmp_path / "files", catalog.MNIST, n_train=40, n_test=16)
    register(tiny.spec)
    import_files("tiny-mnist", tiny.folder)
    run = train(model, "tiny-mnist", out=tmp_path / model, epochs=1, batch_size=8, calibration_split=0, augment="none",
                tta="shift")  # test-time views: the attacks go through them
    r = measure_robustness(run, attack_images=8, steps=2, step_size=0.2, epsilons=[0.3])
    assert len(r["corruptions"]) == 15 and r["images"] == 16
    assert r["adversarial"]["images"] == 8 and set(r["adversarial"]["pgd"]) == {"0.3"}
    assert (run.path / "robustness.json").exists()


@pytest.mark.realdata
def test_measuring_on_a_device_leaves_the_caller_s_run_where_it_was(mnist_run, real_home):
    """The attacked nets are copies: moving them to the chosen device does not move the caller's run (a later
    predict_proba on the CPU would fail with the net on a GPU)."""
    import torch

    from mnistlab.robustness import _target

    target = _target(mnist_run, torch.device("cpu"))
    served = {id(m) for m in mnist_run.predictor.modules()}
    assert not any(id(m) in served for m in target.modules())
    for ours, theirs in zip(target.nets[0].parameters(), mnist_run.predictor.parameters()):
        assert torch.equal(ours, theirs) and ours.data_ptr() != theirs.data_ptr()
    if torch.cuda.is_available():
        measure_robustness(mnist_run, data_dir=real_home, corruption_images=50, attack_images=10, steps=2,
                           epsilons=[0.1], device="cuda", write=False)
        assert all(p.device.type == "cpu" for p in mnist_run.model.parameters())
        assert mnist_run.predict_proba(np.zeros((1, 28, 28), np.uint8)).shape == (1, 10)
