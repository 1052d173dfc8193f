"""The training step and its engine: the eager step is exactly a plain PyTorch loop, the engine's
choices (bf16 where the CPU has it, a CUDA graph on CUDA) and its one-line refusals, what a run
records of them, the learning curves of short runs; the CUDA-graph step where a GPU is present."""

import json

import pytest
import torch
import torch.nn.functional as F

from mnistlab.cli import invoke as cli
from mnistlab.errors import InvalidArgument
from mnistlab.models import create_model
from mnistlab.training import engine as eng
from mnistlab.training import train
from mnistlab.training.augment import Augment
from mnistlab.training.engine import Engine, resolve_engine
from mnistlab.training.step import EagerStep, GraphStep, make_optimizer, make_step

CPU = torch.device("cpu")


def batches(n_batches=6, bs=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(bs, 1, 28, 28, generator=g), torch.randint(0, 10, (bs,), generator=g)) for _ in range(n_batches)]


def test_eager_step_is_a_plain_loop():
    data = batches()
    torch.manual_seed(0)
    plain = create_model("speednet", 10).to(memory_format=torch.channels_last)
    torch.manual_seed(0)
    net = create_model("speednet", 10).to(memory_format=torch.channels_last)
    opt_plain = torch.optim.Adam(plain.parameters(), lr=1e-3, fused=True)  # as mnistlab makes it on a CPU
    engine = Engine(CPU, "fp32", "eager")
    step = make_step(net, make_optimizer("adam", net.parameters(), 1e-3, 0.0, engine), engine, batch_size=32,
                     label_smoothing=0.1, augment=Augment())
    assert type(step) is EagerStep
    total, correct = 0.0, 0
    for i, (x, y) in enumerate(data):
        lr = 1e-3 * (i + 1)
        for g in opt_plain.param_groups:
            g["lr"] = lr
        logits = plain(x.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(logits, y, label_smoothing=0.1)
        opt_plain.zero_grad()
        loss.backward()
        opt_plain.step()
        total += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        step(x, y, lr)
    for a, b in zip(plain.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)
    seen, loss_sum, right = step.totals()
    assert seen == 6 * 32 and right == correct and abs(loss_sum - total) < 1e-3
    step.reset()
    assert step.totals() == (0, 0.0, 0)
    assert all(isinstance(g["lr"], float) for g in step.optimizer_state()["param_groups"])


def test_logit_norm_is_the_cross_entropy_of_unit_logits_over_its_temperature():
    """Wei et al. 2022, eq. 7, written out by hand: the step trains exactly on it, and its loss is what it reports."""
    data = batches(3)
    torch.manual_seed(0)
    plain = create_model("speednet", 10).to(memory_format=torch.channels_last)
    torch.manual_seed(0)
    net = create_model("speednet", 10).to(memory_format=torch.channels_last)
    opt_plain = torch.optim.Adam(plain.parameters(), lr=1e-3, fused=True)
    engine = Engine(CPU, "fp32", "eager")
    step = make_step(net, make_optimizer("adam", net.parameters(), 1e-3, 0.0, engine), engine, batch_size=32,
                     label_smoothing=0.0, augment=Augment(), logit_norm=0.04)
    total = 0.0
    for x, y in data:
        logits = plain(x.contiguous(memory_format=torch.channels_last))
        norms = torch.sqrt((logits ** 2).sum(1, keepdim=True)) + 1e-7
        loss = -torch.log_softmax(logits / norms / 0.04, 1)[torch.arange(len(y)), y].mean()
        opt_plain.zero_grad()
        loss.backward()
        opt_plain.step()
        total += float(loss.detach()) * len(y)
        step(x, y, 1e-3)
    for a, b in zip(plain.state_dict().values(), net.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)
    assert abs(step.totals()[1] - total) < 1e-3
    with pytest.raises(InvalidArgument, match="logit norm's temperature must be > 0"):
        train("speednet", "mnist", logit_norm=0.0)


@pytest.mark.skipif(not eng.cpu_has_bf16(), reason="this CPU has neither AMX nor AVX512-BF16")
def test_bf16_step_computes_in_bf16_and_keeps_fp32_weights():
    net = create_model("speednet", 10).to(memory_format=torch.channels_last)
    seen = []
    net.features[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    engine = resolve_engine("cpu", "bf16", "auto", optimizer="adam")
    step = make_step(net, make_optimizer("adam", net.parameters(), 1e-3, 0.0, engine), engine, batch_size=32,
                     label_smoothing=0.0, augment=Augment())
    for x, y in batches(2):
        step(x, y, 1e-3)
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_bf16_detection_follows_the_cpu_flags(monkeypatch):
    for caps, expected in (({"amx_bf16": True}, True), ({"avx512_bf16": True}, True), ({"avx2": True}, False)):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda caps=caps: caps)
        eng.cpu_has_bf16.cache_clear()
        assert eng.cpu_has_bf16() is expected
        assert resolve_engine("cpu", "auto", "auto", optimizer="adam").precision == ("bf16" if expected else "fp32")
    eng.cpu_has_bf16.cache_clear()


def test_engine_choices_and_refusals(monkeypatch):
    monkeypatch.setattr(eng, "cpu_has_bf16", lambda: False)
    with pytest.raises(InvalidArgument) as caught:
        resolve_engine("cpu", "bf16", "auto", optimizer="adam")
    assert str(caught.value) == ("precision bf16 requested but this CPU has neither AMX nor AVX512-BF16; "
                                 "use --precision fp32 or auto")
    with pytest.raises(InvalidArgument, match="--step cuda-graph needs a CUDA device, not cpu; use --step eager or --device cuda"):
        resolve_engine("cpu", "fp32", "cuda-graph", optimizer="adam")
    cuda = torch.device("cuda")  # the choices only: nothing runs on it
    assert resolve_engine("cuda", "fp32", "auto", optimizer="adam", device=cuda).step == "cuda-graph"
    assert resolve_engine("cuda", "fp32", "auto", optimizer="sgd", device=cuda).step == "eager"
    assert resolve_engine("cuda", "fp32", "auto", optimizer="adam", distributed=True, device=cuda).step == "eager"
    with pytest.raises(InvalidArgument, match="works with the optimizers adam, adamw, not sgd"):
        resolve_engine("cuda", "fp32", "cuda-graph", optimizer="sgd", device=cuda)
    with pytest.raises(InvalidArgument, match="does not run under --distributed"):
        resolve_engine("cuda", "fp32", "cuda-graph", optimizer="adam", distributed=True, device=cuda)


@pytest.mark.realdata
def test_a_run_records_its_engine_and_plain_forces_eager_fp32(real_home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MNISTLAB_HOME", str(real_home))
    assert cli(["train", "--model", "speednet", "--train-subset", "2000", "--plain", "--device", "cpu", "--quiet",
                "--out", str(tmp_path / "plain")]) == 0
    m = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert (m["precision"], m["step"], m["device"]) == ("fp32", "eager", "cpu") and m["hardware"]["name"]
    assert cli(["train", "--model", "mlp", "--plain", "--precision", "bf16", "--quiet", "--out", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err.strip()
    assert err == "error: --plain means --step eager --precision fp32; drop --step/--precision or --plain"
    assert cli(["train", "--model", "mlp", "--step", "cuda-graph", "--device", "cpu", "--quiet", "--out", str(tmp_path / "y")]) != 0
    assert capsys.readouterr().err.strip().startswith("error: --step cuda-graph needs a CUDA device, not cpu")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.realdata
def test_a_one_epoch_run_has_a_learning_curve(real_home, tmp_path):
    run = train("speednet", "mnist", out=tmp_path / "r", data_dir=real_home, train_subset=6000, device="cpu")
    points = [json.loads(line) for line in (run.path / "curve.jsonl").read_text().splitlines()]
    assert len(points) >= 40  # 47 steps: a point every step here, about 64 a run in general
    assert [p["step"] for p in points] == sorted({p["step"] for p in points}) and points[-1]["epoch"] == 1.0
    first, last = points[:5], points[-5:]
    mean = lambda ps, k: sum(p[k] for p in ps) / len(ps)  # noqa: E731
    assert mean(last, "train_loss") < mean(first, "train_loss") and mean(last, "train_accuracy") > mean(first, "train_accuracy")
    # the points cover the epoch: weighted by the images each covers, their mean is the epoch's training loss
    n, bs = run.metrics["train_images"], run.config["batch_size"]
    batch = [min(bs, n - s * bs) for s in range(-(-n // bs))]
    edges = [0] + [p["step"] for p in points]
    weights = [sum(batch[a:b]) for a, b in zip(edges, edges[1:])]
    assert sum(weights) == n
    weighted = sum(w * p["train_loss"] for w, p in zip(weights, points)) / n
    assert weighted == pytest.approx(run.history[0]["train_loss"], rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_step_trains_like_the_eager_step(monkeypatch):
    gpu = torch.device("cuda")
    # the same kernels for both (cuDNN's backward otherwise varies from run to run, and Adam turns the tiniest
    # difference in a near-zero gradient into a whole step)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    data = [(x.to(gpu), y.to(gpu)) for x, y in batches(40, bs=64)] + [tuple(t.to(gpu) for t in batches(1, bs=17)[0])]
    results = {}
    for kind in ("eager", "cuda-graph"):
        torch.manual_seed(0)
        net = create_model("speednet", 10).to(gpu, memory_format=torch.channels_last)
        start = [p.detach().clone() for p in net.parameters()]
        engine = Engine(gpu, "fp32", kind)
        step = make_step(net, make_optimizer("adam", net.parameters(), 1e-3, 0.0, engine), engine, batch_size=64,
                         label_smoothing=0.0, augment=Augment())
        assert type(step) is (GraphStep if kind == "cuda-graph" else EagerStep)
        for i, (x, y) in enumerate(data):
            step(x, y, 1e-3 * (1 + i % 3))
        results[kind] = (step.totals(), [p.detach().clone() for p in net.parameters()])
    (seen_e, loss_e, right_e), params_e = results["eager"]
    (seen_g, loss_g, right_g), params_g = results["cuda-graph"]
    assert seen_e == seen_g == 40 * 64 + 17
    assert abs(loss_e - loss_g) / loss_e < 1e-3
    # the graph's replays train the weights as the eager steps do: both moved far from the start, and to within a
    # few percent of the distance travelled from each other
    moved = torch.cat([(a - s).flatten() for a, s in zip(params_e, start)]).norm()
    apart = torch.cat([(a - b).flatten() for a, b in zip(params_e, params_g)]).norm()
    assert float(moved) > 0.5 and float(apart) < 0.05 * float(moved), (float(moved), float(apart))


class _SyncsWithTheHost(torch.nn.Module):
    """A net no CUDA graph can capture: its forward asks the host for a value (a sync, refused while capturing)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(784, 10)

    def forward(self, x):
        scale = 1.0 + 0.0 * float(x.abs().max())  # .item() under the hood
        return self.fc(x.flatten(1)) * scale


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_net_the_graph_cannot_capture_trains_on_eagerly(caplog):
    gpu = torch.device("cuda")
    torch.manual_seed(0)
    net = _SyncsWithTheHost().to(gpu)
    engine = Engine(gpu, "fp32", "cuda-graph")
    step = make_step(net, make_optimizer("adam", net.parameters(), 1e-2, 0.0, engine), engine, batch_size=64,
                     label_smoothing=0.0, augment=Augment())
    for x, y in batches(10, bs=64):
        step(x.to(gpu), y.to(gpu), 1e-2)
    seen, loss, _ = step.totals()
    assert step.eager and step.graph is None and seen == 640 and loss == loss  # every batch trained, the loss a number
    assert [r.getMessage() for r in caplog.records if "cannot be captured" in r.getMessage()][:1]
