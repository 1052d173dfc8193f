"""`mnistlab explain RUN IMAGE...`: for each picture, what the net saw, what it answered, what each layer computed
and where it looked (mnistlab/explain/inside.py), as a sheet (PNG, and a section of explain.html) and as JSON.

For a net the attributions and layers are those of the net itself (test-time views and the temperature change the
probabilities, not where the net looks); for an ensemble they are the mean over its members (layers: the first
member's; Grad-CAM: the mean over the members with a convolution) unless `member=K` picks one."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from mnistlab.errors import InvalidArgument, MnistlabError
from mnistlab.fileio import atomic_write_bytes
from mnistlab.run import ENSEMBLE, Run, leaf_runs


def explain_images(run: Run | str | Path, images: list[str | Path | bytes], *, out: str | Path | None = None,
                   member: int | None = None, write: bool = True) -> list[dict]:
    """One result per picture (see the module docstring; {"image", "error"} for one that cannot be read); with
    `write`, a sheet per picture and explain.html in `out` (default RUN/explain)."""
    from mnistlab.explain import inside
    from mnistlab.preprocess import to_mnist

    run = run if isinstance(run, Run) else Run(run)
    run.refuse_across_environments("explain", grey_ok=True)
    inside.captum()  # the extra is there, or one line now
    predictor, nets, which = what_to_explain(run, member)
    out = Path(out) if out is not None else run.path / "explain"
    results, sections = [], []
    for k, src in enumerate(images):
        name = f"image-{k}" if isinstance(src, bytes) else str(src)
        try:
            pre = to_mnist(src, keep_steps=True)
        except MnistlabError as exc:
            results.append({"image": name, "error": str(exc)})
            continue
        result, layers = explain_digit(pre.image, predictor, nets, which, run.classes)
        result = {"image": name, **result}
        if write:
            result["sheet"] = str(_write_sheet(result, pre.steps, layers, inside.first_filters(nets[0]), run.classes, out, k))
            sections.append(result)
        results.append(result)
    if write and sections:
        atomic_write_bytes(out / "explain.html", _html(run, sections).encode())
    return results


def explain_digit(image: np.ndarray, predictor: Run, nets: list, which: str, classes: list[str],
                  methods=None) -> tuple[dict, list[dict]]:
    """One digit in MNIST's form (uint8 28x28): the JSON result, and the layers with their values (for pictures).
    Safe to call from many threads at once with the same nets: the hooks go on private copies of them."""
    import contextlib

    import torch

    from mnistlab.explain import inside

    methods = inside.ATTRIBUTIONS if methods is None else methods
    x = torch.from_numpy(image.astype(np.float32) / 255.0)[None, None]
    probs = predictor.predict_proba(image[None])[0]
    target = int(probs.argmax())
    with contextlib.ExitStack() as held:
        nets = [held.enter_context(inside.private_copy(net)) for net in nets]
        _, layers = inside.activations(nets[0], x)
        maps = [inside.attributions(net, x, target, methods) for net in nets]
    result = {"input": _rounded(x[0, 0].numpy()), "prediction": classes[target], "class_index": target,
              "probabilities": [round(float(p), 6) for p in probs], "explained": which,
              "layers": [{k: v for k, v in layer.items() if k != "values"} for layer in layers],
              "attributions": {a: _mean([m[a] for m in maps]) for a in methods}}
    return result, layers


def what_to_explain(run: Run, member: int | None = None):
    """The Run whose probabilities are shown, the nets whose insides are, and the words that say which: an
    ensemble's nets are its members', nested ensembles flattened (run.leaf_runs, as robustness attacks them); one
    that holds a model with no layers or gradients is refused in one line, as a classical run is."""
    if run.kind == ENSEMBLE:
        members = run.model
        if member is not None:
            if not 0 <= member < len(members):
                raise InvalidArgument(f"--member {member}: {run.path} has members 0 to {len(members) - 1}")
            _, nets, _ = what_to_explain(members[member])
            return members[member], nets, f"member {member} ({members[member].path})"
        leaves = leaf_runs(run)
        other = next((leaf for leaf in leaves if leaf.kind != "neural"), None)
        if other is not None:
            raise InvalidArgument(f"{run.path} has a {other.kind} member ({other.path}): explain shows the layers and "
                                  "gradients of neural nets; pick a neural member with --member K")
        return run, [leaf.model for leaf in leaves], f"the mean of its {len(leaves)} members (layers: the first's)"
    if member is not None:
        raise InvalidArgument(f"--member is for ensembles; {run.path} is one {run.kind} run")
    if run.kind != "neural":
        raise InvalidArgument(f"{run.path} is a {run.kind} model: explain shows the layers and gradients of neural nets")
    return run, [run.model], "the net (its test-time views and temperature change the probabilities, not where it looks)"


def _mean(maps: list) -> list | None:
    """The mean of the members' maps that exist (Grad-CAM: of those with a convolution); None if none has one."""
    have = [m for m in maps if m is not None]
    return _rounded(np.mean(have, 0)) if have else None


def _rounded(a: np.ndarray) -> list:
    return np.round(np.asarray(a, dtype=np.float64), 5).tolist()


def _write_sheet(result, steps, layers, filters, classes, out: Path, k: int) -> Path:
    from mnistlab.evaluate import plots
    from mnistlab.explain.sheet import sheet

    stem = Path(result["image"]).stem if not result["image"].startswith("image-") else result["image"]
    fig = sheet(result, steps, layers, filters, classes)
    return atomic_write_bytes(out / f"{k:02d}-{stem}.png", plots.to_png(fig, dpi=90))


def _html(run: Run, sections: list[dict]) -> str:
    parts = [f"<!doctype html><meta charset='utf-8'><title>inside {html.escape(str(run.path))}</title>",
             "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}img{width:100%}td{padding:0 8px}</style>",
             f"<h1>Inside {html.escape(run.config['model'])} ({html.escape(str(run.path))})</h1>"]
    for r in sections:
        png = base64.b64encode(Path(r["sheet"]).read_bytes()).decode()
        rows = "".join(f"<tr><td>{html.escape(x['name'])}</td><td>{x['type']}</td><td>{'x'.join(map(str, x['shape']))}</td></tr>"
                       for x in r["layers"])
        parts.append(f"<section><h2>{html.escape(r['image'])}: {html.escape(r['prediction'])} "
                     f"({max(r['probabilities']):.1%})</h2><p>explained: {html.escape(r['explained'])}</p>"
                     f"<img alt='sheet' src='data:image/png;base64,{png}'><table>{rows}</table></section>")
    return "\n".join(parts)
