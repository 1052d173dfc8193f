"""`mnistlab bench`: train and evaluate a grid of models x datasets, one row per pair, with the
published reference beside it, and each row tested against its dataset's best (mnistlab/evaluate/stats.py).
A failing row is recorded and the sweep goes on. Any model goes in, your own too: --model FILE.py:NAME."""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
import traceback
from pathlib import Path

from mnistlab.bench.references import references
from mnistlab.data import get_spec
from mnistlab.errors import InvalidArgument, MnistlabError
from mnistlab.fileio import atomic_write_bytes, atomic_write_json, ensure_dir
from mnistlab.models import get_model_info
from mnistlab.models.reference import label
from mnistlab.run import versions

CLASSIC = ["logreg", "linear-svm", "rbf-svm-approx", "knn", "random-forest", "mlp", "mlp-300", "cnn", "lenet5"]
SUITES: dict[str, list[tuple[str, dict]]] = {
    # quick: a smoke test of the whole pipeline in about a minute
    "quick": [("logreg", {"train_subset": 10000}), ("mlp", {"epochs": 2}), ("cnn", {"epochs": 1})],
    "classic": [(m, {}) for m in CLASSIC],
    "full": [(m, {}) for m in CLASSIC] + [("rbf-svm", {}), ("cnn-bn", {}), ("resnet", {})],
    # speed: the default model (the speedrun recipe) and the guides' CNN, with Run.predict timed on the test set
    "speed": [("speednet", {"preset": "speedrun"}), ("cnn", {})],
}
COLUMNS = ["dataset", "model", "settings", "seeds", "accuracy_mean", "accuracy_std", "accuracy_low", "accuracy_high", "vs_best",
           "train_seconds", "images_per_second", "params", "macs", "reference", "reference_accuracy", "status"]


def plan(suite: str, datasets: list[str] | None, models: list[str] | None) -> list[tuple[str, str, dict]]:
    """The (dataset, model, settings) cells of a sweep, checked by name before anything runs."""
    if suite not in SUITES:
        raise InvalidArgument(f"unknown suite {suite!r}; use {', '.join(SUITES)}")
    datasets = [get_spec(d).name for d in (datasets or ["mnist"])]
    cells = SUITES[suite]
    if models:
        for m in models:
            get_model_info(m)
        given = {m: s for m, s in cells}
        cells = [(m, given.get(m, {})) for m in models]
    return [(d, m, s) for d in datasets for m, s in cells]


ROBUST = ["mean_corruption_accuracy", "pgd_0.1", "pgd_0.2", "pgd_0.3"]  # the columns `--robustness` adds
OOD = ["ood_auroc"]  # the column `--ood` adds: the chosen detector's AUROC against the other kind of images
EXTRA_HEADS = {"mean_corruption_accuracy": "MNIST-C mean", "pgd_0.1": "PGD eps 0.1", "pgd_0.2": "PGD eps 0.2",
               "pgd_0.3": "PGD eps 0.3", "ood_auroc": "OOD AUROC"}


def run_bench(suite: str = "quick", datasets: list[str] | None = None, models: list[str] | None = None, seeds: int = 1,
              out: str | Path | None = None, progress: bool = False, data_dir=None, settings: dict | None = None,
              robustness: bool = False, attack_images: int = 1000, ood: bool = False) -> dict:
    """Train every cell `seeds` times; write bench.json, bench.csv and bench.md into `out`; return the result.
    `robustness`: each run measured by `mnistlab robustness` too (MNIST-C mean, PGD-40 at eps 0.1, 0.2, 0.3 on the
    first `attack_images` test images), averaged over seeds into the row. `ood`: each run measured by `mnistlab ood`
    too, its chosen detector's AUROC against the other kind of images (Fashion-MNIST for digits, MNIST for clothes)."""
    if seeds < 1:
        raise InvalidArgument(f"seeds must be >= 1, got {seeds}")
    cells = plan(suite, datasets, models)
    out = ensure_dir(Path(out or Path("bench") / time.strftime("%Y%m%d-%H%M%S")))
    rows = []
    bar = _bar(progress)
    with bar or _Null():
        task = bar.add_task("bench", total=len(cells) * seeds) if bar else None
        for dataset, model, cell_settings in cells:
            rows.append(_bench_cell(suite, dataset, model, {**cell_settings, **(settings or {})}, seeds, out, data_dir,
                                    bar, task, attack_images if robustness else None, ood))
    mark_differences(rows, data_dir)
    result = {"suite": suite, "seeds": seeds, "date": time.strftime("%Y-%m-%d %H:%M"), "rows": rows,
              "versions": versions()}
    atomic_write_json(out / "bench.json", result)
    atomic_write_bytes(out / "bench.csv", _csv(rows).encode())
    atomic_write_bytes(out / "bench.md", markdown(rows).encode())
    if any(r["accuracy_mean"] is not None for r in rows):
        from mnistlab.evaluate import plots

        atomic_write_bytes(out / "bench.png", plots.to_png(plots.accuracy_vs_time(rows)))
    result["out"] = str(out)
    return result


def _bench_cell(suite, dataset, model, kw, seeds, out, data_dir, bar, task, attack_images, ood=False) -> dict:
    """One row: the cell trained `seeds` times (a failing seed recorded, the rest go on), with its references and,
    when `attack_images` is given, its robustness columns."""
    from mnistlab.training import train

    accs, secs, ips, errors, last, paths, robust, detected = [], [], [], [], None, [], [], []
    for seed in range(seeds):
        if bar:
            bar.update(task, description=f"{model} on {dataset} (seed {seed})")
        try:
            last = train(model, dataset, out=out / "runs" / f"{dataset}-{label(model)}-s{seed}", seed=seed,
                         data_dir=data_dir, **kw)
            paths.append(str(last.path))
            m = last.metrics
            accs.append(m["test_accuracy"])
            secs.append(m["train_seconds"])
            ips.append(_predict_speed(last, data_dir) if suite == "speed" else m.get("test_images_per_second") or 0)
            if attack_images is not None:
                robust.append(_robust_numbers(last, attack_images, data_dir))
            if ood:
                detected.append(_ood_numbers(last, data_dir))
        except MnistlabError as exc:
            errors.append(str(exc))
        except Exception as exc:  # a bug in one cell must not lose the sweep; keep the evidence
            errors.append(f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=2).splitlines()[-1]}")
        if bar:
            bar.advance(task)
    refs = references(dataset, model)
    return {
        "dataset": dataset, "model": model, "settings": kw, "seeds": len(accs),
        "accuracy_mean": statistics.fmean(accs) if accs else None,
        "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0 if accs else None,
        "accuracy_all": accs, "runs": paths, "train_seconds": statistics.fmean(secs) if secs else None,
        "images_per_second": statistics.fmean(ips) if ips else None,
        "params": last.metrics.get("params") if last else None, "macs": last.metrics.get("macs") if last else None,
        "references": refs, "reference": "; ".join(r["description"] for r in refs),
        "reference_accuracy": max((r["accuracy"] for r in refs), default=None),
        "status": "ok" if not errors else ("failed: " + errors[0])[:300],
        **({k: _mean_of(robust, k) for k in ROBUST} if attack_images is not None else {}),
        **({"ood_auroc": _mean_of(detected, "ood_auroc"), "ood_set": detected[0]["ood_set"] if detected else None}
           if ood else {}),
    }


def _robust_numbers(run, attack_images: int, data_dir) -> dict:
    """The bench's robustness columns for one run (`mnistlab robustness`, its defaults; written into the run too)."""
    from mnistlab.robustness import measure_robustness

    r = measure_robustness(run, attack_images=attack_images, data_dir=data_dir)
    pgd = r["adversarial"].get("pgd", {})
    return {"mean_corruption_accuracy": r["mean_corruption_accuracy"], **{f"pgd_{e}": pgd.get(e) for e in ("0.1", "0.2", "0.3")}}


def _ood_numbers(run, data_dir) -> dict:
    """The bench's OOD column for one run: `mnistlab ood` against the other kind of images (written into the run)."""
    from mnistlab.ood import measure_ood
    from mnistlab.ood.sets import catalog_sets

    other = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}.get(run.config["dataset"])
    cached = catalog_sets(run.config["dataset"], data_dir)[0]
    name = other if other in cached else (cached or ["uniform"])[0]
    r = measure_ood(run, against=[name], data_dir=data_dir)
    return {"ood_auroc": r["detectors"][r["chosen"]][name]["auroc"], "ood_set": name}


def _mean_of(numbers: list[dict], key: str):
    values = [n[key] for n in numbers if n.get(key) is not None]
    return statistics.fmean(values) if values else None


def mark_differences(rows: list[dict], data_dir=None) -> None:
    """Each row's interval, and its difference from its dataset's best row tested: Welch's test over seeds where both
    have two or more, else the exact McNemar test on their first runs' test predictions; Holm-adjusted per dataset."""
    from mnistlab.data import load_dataset
    from mnistlab.evaluate import stats
    from mnistlab.run import Run

    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        done = [r for r in rows if r["dataset"] == dataset and r["accuracy_mean"] is not None]
        if not done:
            continue
        labels = load_dataset(dataset, "test", data_dir=data_dir).labels
        right = {id(r): Run(r["runs"][0]).test_probs().argmax(1) == labels for r in done}
        for r in done:
            low, high = (stats.over_seeds(r["accuracy_all"])["interval"] if len(r["accuracy_all"]) > 1
                         else stats.accuracy_interval(int(right[id(r)].sum()), len(labels)))
            r["accuracy_low"], r["accuracy_high"] = low, high
        best = max(done, key=lambda r: r["accuracy_mean"])
        tests = []
        for r in done:
            if r is best:
                r["vs_best"] = {"best": True}
                continue
            if len(r["accuracy_all"]) > 1 and len(best["accuracy_all"]) > 1:
                test = {"test": "welch", "p_value": stats.welch(best["accuracy_all"], r["accuracy_all"])}
            else:
                test = {"test": "mcnemar", **stats.mcnemar(right[id(best)], right[id(r)])}
            r["vs_best"] = {"best": False, "against": best["model"], **test}
            tests.append(r["vs_best"])
        for test, p in zip(tests, stats.holm([t["p_value"] for t in tests])):
            test["p_holm"], test["verdict"] = p, stats.verdict(p)


def _predict_speed(run, data_dir, repeats: int = 3) -> float:
    """Test-set images per second through `Run.predict_proba` (model loaded once), best of `repeats`."""
    from mnistlab.data import load_dataset

    images = load_dataset(run.config["dataset"], "test", data_dir=data_dir).images
    run.predict_proba(images[:100])  # load the model and warm the kernels
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run.predict_proba(images)
        best = min(best, time.perf_counter() - t0)
    return len(images) / best


def _csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS + _extra_columns(rows), extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "settings": json.dumps(r["settings"], sort_keys=True), "vs_best": _against(r.get("vs_best"))})
    return buf.getvalue()


def markdown(rows: list[dict]) -> str:
    extras = _extra_columns(rows)
    extra_head = "".join(f" {EXTRA_HEADS[k]}{_ood_against(rows) if k == 'ood_auroc' else ''} |" for k in extras)
    lines = ["| dataset | model | test accuracy | 95% interval | against the best | train s | predict img/s | params | published reference |"
             + extra_head, "| --- | --- | ---: | --- | --- | ---: | ---: | ---: | --- |" + " ---: |" * len(extras)]
    for r in rows:
        if r["accuracy_mean"] is None:
            acc = r["status"]
        else:
            acc = f"{r['accuracy_mean']:.2%}" + (f" ± {r['accuracy_std']:.2%}" if r["seeds"] > 1 else "")
            if r["status"] != "ok":
                acc += f" (some runs {r['status'][:80]})"
        refs = "; ".join(f"{x['description']} ({x['accuracy']:.2%})" for x in r["references"]) or "-"
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        model = label(r["model"]) + (f" ({settings})" if settings else "")
        interval = f"{r['accuracy_low']:.2%} - {r['accuracy_high']:.2%}" if r.get("accuracy_low") is not None else "-"
        lines.append(f"| {r['dataset']} | {model} | {acc} | {interval} | {_against(r.get('vs_best'))} | {_n(r['train_seconds'], 1)} | "
                     f"{_n(r['images_per_second'], 0)} | {_n(r['params'], 0)} | {refs} |"
                     + "".join(f" {_n(r.get(k), 4) if k == 'ood_auroc' else _pct(r.get(k))} |" for k in extras))
    return "\n".join(lines) + "\n"


def _against(vs: dict | None) -> str:
    """best; or the test's verdict on the difference from the best row: real, or not shown (a tie by the test)."""
    if not vs:
        return "-"
    if vs["best"]:
        return "best"
    p = f"{vs['test']} p {vs['p_holm']:.2g}"
    return f"worse, real ({p})" if vs["verdict"] == "real" else f"tie ({p})"


def _extra_columns(rows: list[dict]) -> list[str]:
    """The columns the sweep measured beyond accuracy and speed: robustness (`--robustness`), OOD (`--ood`)."""
    return [k for group in (ROBUST, OOD) if any(group[0] in r for r in rows) for k in group]


def _ood_against(rows: list[dict]) -> str:
    names = sorted({r["ood_set"] for r in rows if r.get("ood_set")})
    return f" (vs {', '.join(names)})" if names else ""


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2%}"


def _n(v, digits: int) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


def _bar(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
