"""A run's report: `report.html` (one self-contained file, images embedded, opens offline) and
`report.md` (with its pictures in `report_files/`), built from the run folder and its evaluation."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from mnistlab.data import get_spec
from mnistlab.errors import RunError
from mnistlab.evaluate import plots
from mnistlab.evaluate.evaluate import evaluate_with_probs
from mnistlab.fileio import atomic_write_bytes
from mnistlab.run import Run

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em}.sub{color:#666;margin-top:0}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{background:#f6f8fa;border-radius:8px;padding:.7em 1.1em}
.card b{display:block;font-size:1.5em}img{max-width:100%}code{background:#f4f4f4;padding:0 .2em}"""


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def build_report(run: Run | str | Path, *, data_dir=None, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Write report.html and report.md for a finished run; return their paths."""
    run = run if isinstance(run, Run) else Run(run)
    if not run.complete:
        raise RunError(f"{run.path} did not finish (no metrics.json): resume it with mnistlab train --resume {run.path}")
    out = Path(out_dir) if out_dir else run.path
    ev, test, probs = evaluate_with_probs(run, data_dir=data_dir)
    from mnistlab.ood import read_ood
    from mnistlab.robustness import read_robustness

    spec = get_spec(run.config["dataset"])
    m = run.metrics
    robust = read_robustness(run)
    ood = read_ood(run)
    figures = {**_figures(run, ev, test, probs, spec), **_robustness_figures(run, robust), **_ood_figures(run, ood)}

    summary = [("test accuracy", ev["accuracy"]), ("errors", f"{ev['errors']:,} of {ev['n']:,}"), ("test loss", ev["loss"]),
               ("top-3 accuracy", ev["top_k_accuracy"].get("3")), ("macro F1", ev["macro_f1"]), ("ECE", ev["ece"]),
               *_calibration_rows(m), *_environment_summary(m),
               ("train seconds", m.get("train_seconds")), ("parameters", m.get("params")),
               ("multiply-adds / image", m.get("macs")), ("test images / second", m.get("test_images_per_second"))]
    summary = [(k, v) for k, v in summary if v is not None]
    cfg_rows = [(k, json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in run.config.items()
                if k not in ("classes", "dataset_sha256", "augment_resolved")]
    env_rows = [("device", m.get("device")), ("threads", m.get("threads")),
                *[(k, v) for k, v in (m.get("hardware") or {}).items()], *[(k, v) for k, v in (m.get("versions") or {}).items()]]
    env_rows = [(k, v) for k, v in env_rows if v not in (None, "")]
    title = f"{run.config['model']} on {spec.title}"

    tables = {"confusion": ("Per-class metrics", ["class", "precision", "recall", "F1", "support"], _per_class_rows(ev)),
              **_environment_table(m), **_robustness_tables(robust), **_ood_tables(ood)}
    atomic_write_bytes(out / "report.html", _html(title, run, summary, cfg_rows, env_rows, tables, figures).encode(),
                       hint="the run folder must be writable", error=RunError)
    files = out / "report_files"
    for key, (_, png) in figures.items():
        atomic_write_bytes(files / f"{key}.png", png, hint="the run folder must be writable", error=RunError)
    atomic_write_bytes(out / "report.md", _markdown(title, run, summary, cfg_rows, env_rows, tables, figures).encode(),
                       hint="the run folder must be writable", error=RunError)
    return {"html": out / "report.html", "md": out / "report.md"}


def _figures(run: Run, ev: dict, test, probs: np.ndarray, spec) -> dict[str, tuple[str, bytes]]:
    """The report's pictures of the run itself, by key: (caption, PNG)."""
    classes, history = run.classes, run.history
    figures: dict[str, tuple[str, bytes]] = {}
    if run.config.get("test_environment") is not None:
        m = run.metrics
        selected = {k: v["step"] for k, v in (m.get("selection") or {}).items()}
        roles = {n: v["role"] for n, v in m["environments"].items()}
        figures["curves"] = ("Each environment as training went", plots.to_png(plots.environment_curves(
            history, roles, selected, f"{run.config['model']}, {m['algorithm']}, tested on {', '.join(m['tested_on'])}")))
    elif history:
        figures["curves"] = ("Learning curves", plots.to_png(plots.learning_curves(history, f"{run.config['model']} on {spec.name}",
                                                                                   curve=run.curve)))
    if any("pseudo_labels_used" in r for r in history):
        figures["pseudo"] = ("Pseudo-labels: the share of unlabelled images used, and how many were right",
                             plots.to_png(plots.pseudo_labels(history)))
    figures["confusion"] = ("Confusion matrix", plots.to_png(plots.confusion_heatmap(np.array(ev["confusion_matrix"]), classes)))
    worst = ev["confident_mistakes"]
    if worst:
        figures["mistakes"] = ("The most confident mistakes", plots.to_png(plots.image_gallery(
            np.asarray(test.images)[[w["index"] for w in worst]],
            [f"#{w['index']}: {classes[w['true']]} → {classes[w['predicted']]}\n{w['confidence']:.0%} sure" for w in worst],
            colors=["firebrick"] * len(worst))))
    pred = probs.argmax(1)
    sample = np.arange(min(24, len(test)))
    figures["samples"] = ("Sample predictions (first test images)", plots.to_png(plots.image_gallery(
        np.asarray(test.images)[sample],
        [f"{classes[pred[i]]} ({probs[i, pred[i]]:.0%})" + ("" if pred[i] == test.labels[i] else f"\ntrue {classes[test.labels[i]]}")
         for i in sample],
        colors=["darkgreen" if pred[i] == test.labels[i] else "firebrick" for i in sample])))
    figures["calibration"] = ("Calibration", plots.to_png(plots.reliability_diagram(ev["calibration_bins"], ev["ece"])))
    figures.update(_confused_pairs(ev, test, pred, classes))
    if run.kind == "neural":
        figures.update(_inside(run, test, pred))
    return figures


MAP_IMAGES = 2000  # test images on the map: enough to see the clusters, t-SNE in seconds on a CPU
CONFUSED_PAIRS, EXAMPLES = 3, 8


def _confused_pairs(ev: dict, test, pred: np.ndarray, classes: list[str]) -> dict:
    """The pairs the run confuses most (true -> predicted, from the confusion matrix) with examples of each."""
    cm = np.array(ev["confusion_matrix"])
    np.fill_diagonal(cm, 0)
    pairs = [divmod(int(i), len(classes)) for i in np.argsort(-cm, axis=None)[:CONFUSED_PAIRS] if cm.flat[i] > 0]
    if not pairs:
        return {}
    labels, images, picked, captions = np.asarray(test.labels), np.asarray(test.images), [], []
    for t, p in pairs:
        where = np.flatnonzero((labels == t) & (pred == p))[:EXAMPLES]
        picked += list(where)
        captions += [f"#{i}: {classes[t]} → {classes[p]}" for i in where]
    title = "; ".join(f"{classes[t]} read as {classes[p]}: {cm[t, p]}" for t, p in pairs)
    fig = plots.image_gallery(images[picked], captions, colors=["firebrick"] * len(picked), title=title)
    return {"confused": ("The most confused pairs", plots.to_png(fig))}


def _inside(run: Run, test, pred: np.ndarray) -> dict:
    """The first layer's filters, and a map of the test set by the net's penultimate features."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from mnistlab.explain import inside

    net, figures = run.model, {}
    kernels = inside.first_filters(net)
    if kernels is not None:
        figures["filters"] = ("The first layer's filters", plots.to_png(plots.filters_picture(
            kernels, f"the {len(kernels)} kernels of the first convolution (red: positive weights, blue: negative)")))
    n = min(MAP_IMAGES, len(test))
    features = inside.penultimate(net, np.asarray(test.images[:n]))
    reduced = PCA(n_components=min(50, features.shape[1], n), random_state=0).fit_transform(features)
    points = TSNE(n_components=2, random_state=0, init="pca", perplexity=min(30, n - 1)).fit_transform(reduced)
    labels = np.asarray(test.labels[:n])
    figures["map"] = ("A map of the test set", plots.to_png(plots.test_set_map(points, labels, pred[:n] != labels, run.classes)))
    return figures


def _robustness_figures(run: Run, robust: dict | None) -> dict:
    """`mnistlab robustness`'s picture of the corruptions and the accuracy against eps, when it has been run."""
    if robust is None:
        return {}
    from mnistlab.robustness import PICTURE

    figures = {}
    if (run.path / PICTURE).exists():
        figures["robustness"] = ("How robust is it: MNIST-C corruptions", (run.path / PICTURE).read_bytes())
    adv = robust.get("adversarial") or {}
    if adv.get("pgd"):
        figures["attacks"] = ("How robust is it: accuracy under attack", plots.to_png(plots.robustness_curve(adv)))
    return figures


def _robustness_tables(robust: dict | None) -> dict:
    """The corruption table (beside mnistlab's own where the official files were used) and the attack table."""
    if robust is None:
        return {}
    from mnistlab.robustness import source_words

    own = robust.get("own_vs_official", {})
    source = robust.get("corruption_source")
    rows = [(name.replace("_", " "), acc, *([own[name]["own"]] if own else [])) for name, acc in robust["corruptions"].items()]
    rows += [("clean (the same prediction, no corruption)", robust["clean"], *([robust["clean"]] if own else [])),
             ("mean over the 15", robust["mean_corruption_accuracy"],
              *([float(np.mean([o["own"] for o in own.values()]))] if own else []))]
    tables = {"robustness": (f"Accuracy per corruption ({source_words(source)})", ["corruption", "accuracy",
                                                                    *(["mnistlab's own corruptions"] if own else [])], rows)}
    adv = robust.get("adversarial") or {}
    if adv.get("pgd"):
        tables["attacks"] = (f"Under l_inf attack: first {adv['images']:,} test images, PGD {adv['pgd_steps']} steps of "
                             f"{adv['pgd_step_size']:g}, {adv['pgd_restarts']} random start(s)",
                             ["eps", "FGSM", "PGD", "PGD 95% interval"],
                             [(e, adv["fgsm"][e], adv["pgd"][e], "{:.3f} - {:.3f}".format(*adv["intervals"]["pgd"][e])) for e in adv["pgd"]])
    return tables


def _ood_figures(run: Run, ood: dict | None) -> dict:
    """`mnistlab ood`'s picture: the chosen detector's scores on the test set and the other sets, and the
    risk-coverage curve, when it has been run."""
    from mnistlab.ood import PICTURE

    if ood is None or not (run.path / PICTURE).exists():
        return {}
    return {"ood": (f"Is it a digit at all: {ood['chosen']} scores, and accuracy when the model may abstain",
                    (run.path / PICTURE).read_bytes())}


def _ood_tables(ood: dict | None) -> dict:
    """AUROC and FPR at 95% TPR of each detector against each set, and how well each tells right from wrong."""
    if ood is None:
        return {}
    sets = ood["sets"]
    rows = [(name + (" (chosen)" if name == ood["chosen"] else ""),
             *(f"{row[s]['auroc']:.4f} / {row[s]['fpr95']:.1%}" for s in sets), ood["misclassification"][name])
            for name, row in ood["detectors"].items()]
    title = (f"Out-of-distribution detection against {', '.join(sets)} (AUROC / FPR at 95% TPR; {ood['in_distribution']}); "
             f"answers carry {ood['field']} by {ood['chosen']}, {ood['false_alarm_test']:.1%} of test images flagged")
    return {"ood": (title, ["detector", *sets, "right-vs-wrong AUROC"], rows)}


def _environment_summary(m: dict) -> list[tuple[str, object]]:
    """A run across environments: what it trained and was tested on, and DomainBed's selections within the run."""
    if "trained_on" not in m:
        return []
    rows = [("algorithm", m["algorithm"]), ("trained on", ", ".join(m["trained_on"])), ("tested on", ", ".join(m["tested_on"])),
            ("training environments' accuracy", m.get("train_accuracy")), ("steps", m.get("steps"))]
    words = {"training_domain": "training-domain validation", "oracle": "oracle (test-domain validation: not a fair choice)"}
    for kind, chosen in (m.get("selection") or {}).items():
        rows.append((f"selected by {words.get(kind, kind)}",
                     f"step {chosen['step']:,}: validation {chosen['val_accuracy']:.4f}, test {chosen['test_accuracy']:.4f}"))
    return [(k, v) for k, v in rows if v is not None]


def _environment_table(m: dict) -> dict:
    """Each environment's role, size and accuracy at the end (the whole and its held-out part)."""
    if "environments" not in m:
        return {}
    rows = [(name, e["role"], m["environment_sizes"][name]["in"] + m["environment_sizes"][name]["out"],
             e.get("in", "-"), e.get("out", "-")) for name, e in m["environments"].items()]
    return {"curves": ("Each environment at the end", ["environment", "role", "images", "accuracy (trained or tested part)",
                                                       "accuracy (held-out part)"], rows)}


def _calibration_rows(m: dict) -> list[tuple[str, object]]:
    """The temperature and what it did: ECE and NLL on the test set before and after (fitted on held-out
    training images, never on the test set)."""
    cal = m.get("calibration") or {}
    if "temperature" not in cal or "images" not in cal:
        return []
    rows = [("temperature (fitted on held-out training images)", f"{cal['temperature']:.3f} on {cal['images']:,} images")]
    if "test" in cal:
        rows += [("ECE before calibration", cal["test"]["ece_before"]), ("test loss before / after calibration",
                 f"{cal['test']['nll_before']:.4f} / {cal['test']['nll_after']:.4f}")]
    return rows


def _table_html(header: list[str], rows: list) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _per_class_rows(ev: dict) -> list:
    return [(p["class"], p["precision"], p["recall"], p["f1"], p["support"]) for p in ev["per_class"]]


def _html(title, run, summary, cfg_rows, env_rows, tables, figures) -> str:
    cards = "".join(f'<div class="card">{html.escape(k)}<b>{html.escape(_fmt(v))}</b></div>' for k, v in summary[:4])
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f'<p class=sub>run <code>{html.escape(str(run.path))}</code></p><div class=cards>{cards}</div>',
             "<h2>Summary</h2>", _table_html(["metric", "value"], summary)]
    for key, (caption, png) in figures.items():
        parts.append(f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' src='data:image/png;base64,"
                     f"{base64.b64encode(png).decode()}'>")
        if key in tables:
            caption, header, rows = tables[key]
            parts += [f"<h2>{html.escape(caption)}</h2>", _table_html(header, rows)]
    parts += ["<h2>Configuration</h2>", _table_html(["setting", "value"], cfg_rows),
              "<h2>Timing, hardware and versions</h2>", _table_html(["", ""], env_rows), "</body></html>"]
    return "\n".join(parts)


def _table_md(header: list[str], rows: list) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _markdown(title, run, summary, cfg_rows, env_rows, tables, figures) -> str:
    parts = [f"# {title}", f"Run `{run.path}`", "## Summary", _table_md(["metric", "value"], summary)]
    for key, (caption, _) in figures.items():
        parts.append(f"## {caption}\n![{caption}](report_files/{key}.png)")
        if key in tables:
            caption, header, rows = tables[key]
            parts += [f"## {caption}", _table_md(header, rows)]
    parts += ["## Configuration", _table_md(["setting", "value"], cfg_rows), "## Timing, hardware and versions",
              _table_md(["", ""], env_rows)]
    return "\n\n".join(parts) + "\n"
