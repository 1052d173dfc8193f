"""A class on one pad: explanations and predictions asked at one instant of a real uvicorn, with a convolutional net
(so Grad-CAM's hook is there), answer what each request gets alone. Hooks that one request put on the served net
used to fire on another's forward pass: a 500, or one user's layers in another's answer."""

import base64
import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

import mnistlab
from mnistlab.explain import inside
from mnistlab.serve import app as app_mod
from mnistlab.serve.requests import Preprocessings
from tests.serve.conftest import serving

pytestmark = pytest.mark.realdata
pytest.importorskip("captum")

AT_ONCE = 16  # explanations in flight together, and as many predictions beside them


@pytest.fixture(scope="module")
def cnn_run(real_home, tmp_path_factory):
    return mnistlab.train("cnn", "mnist", out=tmp_path_factory.mktemp("classroom") / "cnn", data_dir=real_home, epochs=1,
                          train_subset=3000, device="cpu")


def _pngs(real_home, n: int) -> list[bytes]:
    import io

    from PIL import Image

    (_, _), (x, _) = mnistlab.load_data("mnist", data_dir=real_home)
    out = []
    for img in x[:n]:
        buf = io.BytesIO()
        Image.fromarray(255 - img).save(buf, format="PNG")  # dark ink on white, as the pad draws
        out.append(buf.getvalue())
    return out


def _post(url: str, path: str, png: bytes) -> tuple[int, dict | str]:
    body = json.dumps({"image": base64.b64encode(png).decode()}).encode()
    req = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _seen(answer: dict) -> dict:
    """What a user sees of an answer, less its timing."""
    return {k: v for k, v in answer.items() if k != "milliseconds"}


def test_sixteen_explanations_at_once_answer_what_each_gets_alone(cnn_run, real_home):
    """Alone: answered by a server that preprocesses in its threads; at once: by one with worker processes, as
    `mnistlab serve` runs, so the two ways of preprocessing are held to one answer too."""
    pngs = _pngs(real_home, AT_ONCE)
    with serving(app_mod.create_app(cnn_run, workers=1)) as url:
        alone = [_post(url, "/api/explain?methods=saliency,grad_cam", png) for png in pngs]
    with serving(app_mod.create_app(cnn_run, workers=4, processes=2)) as url:
        assert all(status == 200 for status, _ in alone)
        assert all(answer["attributions"]["grad_cam"] for _, answer in alone)  # Grad-CAM's hook is in play
        for round_ in range(3):  # one green round proves little; later rounds meet the preprocessing's table
            start = threading.Barrier(2 * AT_ONCE)
            got: list = [None] * (2 * AT_ONCE)

            def one(k: int):
                start.wait()
                path = "/api/explain?methods=saliency,grad_cam" if k < AT_ONCE else "/api/predict"
                got[k] = _post(url, path, pngs[k % AT_ONCE])

            threads = [threading.Thread(target=one, args=(k,)) for k in range(2 * AT_ONCE)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            assert [status for status, _ in got] == [200] * (2 * AT_ONCE), [a for s, a in got if s != 200][:1]
            for k in range(AT_ONCE):
                assert _seen(got[k][1]) == _seen(alone[k][1]), f"drawing {k} explained differently under load"
                assert got[AT_ONCE + k][1]["prediction"] == alone[k][1]["prediction"]


def test_the_served_net_never_carries_a_hook_and_copies_are_handed_out_one_at_a_time(cnn_run):
    net = cnn_run.model
    with inside.private_copy(net) as a, inside.private_copy(net) as b:
        assert a is not net and b is not net and a is not b  # two callers at once: two copies
        inside.attributions(a, torch.rand(1, 1, 28, 28), 3, ("grad_cam",))
        assert not net._forward_hooks and not any(m._forward_hooks for m in net.modules())
        for p, q in zip(net.parameters(), a.parameters()):
            assert torch.equal(p, q)
    with inside.private_copy(net) as again:
        assert again is a or again is b  # kept for the next caller, not copied anew
    assert np.isfinite(cnn_run.predict_proba(np.zeros((1, 28, 28), np.uint8))).all()


def test_the_layers_colours_are_matplotlib_s_viridis():
    import base64
    import io

    import matplotlib
    from PIL import Image

    from mnistlab.serve.inside import _colour_url

    values = np.random.default_rng(0).random((40, 40))
    values[0, :3] = (0.0, 1.0, 0.5)
    values[1, 1] = np.nan  # a gap between maps: white
    url = _colour_url(values)
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert image.mode == "P"  # a palette: one byte a pixel
    expected = (matplotlib.colormaps["viridis"].resampled(255)(np.nan_to_num(values, nan=1.0))[..., :3] * 255).astype(np.uint8)
    expected[1, 1] = 255
    assert np.array_equal(np.asarray(image.convert("RGB")), expected)


def test_the_preprocessing_table_keeps_the_last_pictures_and_refuses_what_it_refused(real_home):
    from mnistlab.preprocess import NoDigitFound, to_mnist

    table = Preprocessings(size=2)
    a, b, c = _pngs(real_home, 3)
    first = table(a)
    assert table(a) is first and np.array_equal(first.image, to_mnist(a).image) and not first.image.flags.writeable
    table(b), table(c)  # a falls out: only the last two are kept
    assert table(a) is not first
    import io

    from PIL import Image

    blank = io.BytesIO()
    Image.new("L", (50, 50), 255).save(blank, format="PNG")
    for _ in range(2):  # a refusal is not kept: each time the same one line
        with pytest.raises(NoDigitFound):
            table(blank.getvalue())
