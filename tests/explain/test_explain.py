"""mnistlab explain: every neural zoo net's layers and attributions, the sheet and the JSON of a real run, ensembles,
and Adebayo et al.'s model-randomisation check (attributions that depend on what the net learnt)."""

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

import mnistlab
from mnistlab.cli import invoke as cli
from mnistlab.explain import explain_images, inside
from mnistlab.models import create_model, list_models

pytest.importorskip("captum")


@pytest.mark.parametrize("name", list_models(family="neural"))
def test_every_zoo_net_shows_its_layers_and_attributions(name):
    torch.manual_seed(0)
    net = create_model(name).eval()
    x = torch.rand(1, 1, 28, 28)
    logits, layers = inside.activations(net, x)
    assert logits.shape == (1, 10) and layers and layers[-1]["shape"] == [10]  # the head comes last
    assert all(np.isfinite(layer["values"]).all() for layer in layers)
    maps = inside.attributions(net, x, int(logits.argmax()))
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    for kind in inside.ATTRIBUTIONS:
        if kind == "grad_cam" and not has_conv:
            assert maps[kind] is None
        else:
            assert maps[kind].shape == (28, 28) and np.isfinite(maps[kind]).all()
    assert (inside.first_filters(net) is None) == (not has_conv)


@pytest.fixture(scope="module")
def cnn_run(real_home, tmp_path_factory):
    return mnistlab.train("cnn", "mnist", out=tmp_path_factory.mktemp("explain") / "cnn", data_dir=real_home, epochs=1,
                          train_subset=5000, device="cpu")


def _digits(real_home, n):
    (_, _), (x, y) = mnistlab.load_data("mnist", data_dir=real_home)
    return x[:n], y[:n]


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0  # a constant map shares no ranking with another (and spearmanr would warn)
    return float(spearmanr(a, b)[0])


@pytest.mark.realdata
def test_attributions_change_when_the_weights_are_randomised(cnn_run, real_home):
    """Adebayo et al. 2018: a map that is the same for a trained net and for that net with re-initialised weights
    shows the image, not the net. Bound: over 20 test digits, the mean Spearman correlation, on the ink pixels, of
    the trained net's signed map with the randomised net's is below 0.3 for each method (measured on this net: about
    0.0 to 0.1), while the trained net against itself is 1."""
    net = cnn_run.model
    randomised = copy.deepcopy(net)
    torch.manual_seed(0)
    for m in randomised.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    x, y = _digits(real_home, 20)
    rho = {kind: [] for kind in inside.ATTRIBUTIONS}
    for img, label in zip(x, y):
        xi = torch.from_numpy(img.astype(np.float32) / 255)[None, None]
        trained, again, random = (inside.attributions(n, xi, int(label)) for n in (net, net, randomised))
        ink = img > 0
        for kind in inside.ATTRIBUTIONS:
            rho[kind].append(_spearman(trained[kind][ink], random[kind][ink]))
            if kind != "integrated_gradients":  # its sum over 32 steps is deterministic too, but reordered sums differ in the last bit
                assert np.array_equal(trained[kind], again[kind])
    means = {kind: float(np.mean(v)) for kind, v in rho.items()}
    assert all(m < 0.3 for m in means.values()), means


@pytest.mark.realdata
def test_explain_a_real_run_sheet_html_and_json(cnn_run, real_home, tmp_path, capsys):
    x, y = _digits(real_home, 2)
    paths = []
    for k, img in enumerate(x):
        paths.append(tmp_path / f"digit{k}.png")
        Image.fromarray(img).save(paths[-1])
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    assert cli(["explain", str(cnn_run.path), *map(str, paths), str(tmp_path / "broken.png"), "--json", "--out", str(tmp_path / "out")]) == 1
    results = json.loads(capsys.readouterr().out)
    assert "error" in results[2] and len(results) == 3
    for r, label in zip(results[:2], y):
        assert np.asarray(r["input"]).shape == (28, 28) and len(r["probabilities"]) == 10
        assert r["prediction"] == str(label) and r["class_index"] == int(np.argmax(r["probabilities"]))
        assert [layer["name"] for layer in r["layers"]][:3] == ["features.0", "features.1", "features.2"]
        assert r["layers"][0]["shape"] == [32, 26, 26] and r["layers"][-1] == {"name": "head", "type": "Linear", "shape": [10]}
        assert {k: np.asarray(v).shape for k, v in r["attributions"].items()} == {k: (28, 28) for k in inside.ATTRIBUTIONS}
        sheet = Image.open(r["sheet"])
        assert sheet.width > 800 and np.asarray(sheet.convert("L")).std() > 20
    page = (tmp_path / "out" / "explain.html").read_text()
    assert page.count("<section>") == 2 and page.count("data:image/png;base64,") == 2
    # the same probabilities as predict
    np.testing.assert_allclose(results[0]["probabilities"], cnn_run.predict_proba(np.asarray(results[0]["input"])[None])[0], atol=1e-4)


@pytest.mark.realdata
@pytest.mark.realdata
def test_a_nets_report_shows_its_first_filters(cnn_run, real_home):
    from mnistlab.report import build_report

    page = build_report(cnn_run, data_dir=real_home)["html"].read_text()
    assert "The first layer&#x27;s filters" in page or "The first layer's filters" in page
    assert (cnn_run.path / "report_files" / "filters.png").stat().st_size > 5_000


@pytest.mark.realdata
def test_an_ensemble_is_explained_by_its_members(cnn_run, mnist_run, real_home, tmp_path):
    from mnistlab.training.ensemble import make_ensemble

    ens = make_ensemble([cnn_run.path, mnist_run.path], out=tmp_path / "ens", data_dir=real_home)
    x, _ = _digits(real_home, 1)
    Image.fromarray(x[0]).save(tmp_path / "d.png")
    mean = explain_images(ens, [tmp_path / "d.png"], write=False)[0]
    one = explain_images(ens, [tmp_path / "d.png"], member=0, write=False)[0]
    alone = explain_images(cnn_run, [tmp_path / "d.png"], write=False)[0]
    assert mean["explained"].startswith("the mean of its 2 members") and one["explained"].startswith("member 0")
    assert one["attributions"]["saliency"] == alone["attributions"]["saliency"]
    assert mean["attributions"]["grad_cam"] == alone["attributions"]["grad_cam"]  # the mlp has no convolution
    both = [alone["attributions"]["saliency"], explain_images(mnist_run, [tmp_path / "d.png"], write=False)[0]["attributions"]["saliency"]]
    assert mean["attributions"]["saliency"] == pytest.approx(np.mean(both, 0), abs=2e-5)
    with pytest.raises(mnistlab.MnistlabError, match="has members 0 to 1"):
        explain_images(ens, [tmp_path / "d.png"], member=5, write=False)


@pytest.mark.realdata
def test_an_ensemble_with_a_classical_or_nested_member_is_one_line_or_explained(cnn_run, mnist_run, real_home, tmp_path):
    """explain and robustness look inside an ensemble through one helper (run.leaf_runs): a nested ensemble is
    flattened into its nets; a member with no layers (logreg) is refused in one line, by the pad as a 422."""
    from fastapi.testclient import TestClient

    from mnistlab.serve.app import create_app
    from mnistlab.training import train
    from mnistlab.training.ensemble import make_ensemble
    from tests.serve.test_api import digit_png

    inner = make_ensemble([cnn_run.path, mnist_run.path], out=tmp_path / "inner", data_dir=real_home)
    nested = make_ensemble([inner.path, cnn_run.path], out=tmp_path / "nested", data_dir=real_home)
    x, _ = _digits(real_home, 1)
    Image.fromarray(x[0]).save(tmp_path / "d.png")
    seen = explain_images(nested, [tmp_path / "d.png"], write=False)[0]
    assert seen["explained"].startswith("the mean of its 3 members")
    alone = explain_images(cnn_run, [tmp_path / "d.png"], write=False)[0]
    assert np.allclose(seen["attributions"]["grad_cam"], alone["attributions"]["grad_cam"], atol=2e-5)  # the two cnns' maps
    logreg = train("logreg", "mnist", out=tmp_path / "logreg", data_dir=real_home, train_subset=1000)
    mixed = make_ensemble([cnn_run.path, logreg.path], out=tmp_path / "mixed", data_dir=real_home)
    with pytest.raises(mnistlab.MnistlabError, match=r"has a classical member .*logreg.*pick a neural member with --member K"):
        explain_images(mixed, [tmp_path / "d.png"], write=False)
    assert explain_images(mixed, [tmp_path / "d.png"], member=0, write=False)[0]["explained"].startswith("member 0")
    r = TestClient(create_app(mixed)).post("/api/explain", files={"file": ("one.png", digit_png(), "image/png")})
    assert r.status_code == 422 and "classical member" in r.json()["detail"]
