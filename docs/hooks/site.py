"""MkDocs hooks for mnistlab's site: the front page and the benchmarks are the repository's README.md and
BENCHMARKS.md (one text each, read on GitHub and here), and the command line's reference is written from the CLI
itself at build time, so it cannot drift from the commands."""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
CLI_MARK = "<!-- the commands, from mnistlab.cli -->"


def _site_links(text: str) -> str:
    """Links as the repository writes them (docs/x.md from the top, ../BENCHMARKS.md from docs/) as the site has them."""
    text = re.sub(r"\]\((?:\.\./)?BENCHMARKS\.md", "](benchmarks.md", text)
    text = re.sub(r"\]\((?:\.\./)?README\.md", "](index.md", text)
    return text.replace("](docs/", "](")


def on_files(files, config):
    for name, source in (("index.md", "README.md"), ("benchmarks.md", "BENCHMARKS.md")):
        files.append(File.generated(config, name, content=_site_links((ROOT / source).read_text())))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    # the guide's fences carry a word for tests/test_guide.py (```sh run, ```python file ...): the site shows the language
    markdown = re.sub(r"^```(\w+) (run|norun|file)\b.*$", r"```\1", _site_links(markdown), flags=re.M)
    if CLI_MARK in markdown:
        markdown = markdown.replace(CLI_MARK, cli_reference())
    return markdown


def cli_reference() -> str:
    """Every command of `mnistlab`, its help and its options, from the Typer app itself."""
    import typer

    from mnistlab.cli import app

    root = typer.main.get_command(app)
    out: list[str] = []

    # typer carries its own copy of click: its objects are used by what they do, not by click's classes
    def walk(cmd, path: list[str], parent):
        ctx = cmd.context_class(cmd, info_name=path[-1], parent=parent)
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name], ctx)
            return
        out.append(f"### {' '.join(path)}\n\n")
        usage = " ".join([ctx.command_path, *cmd.collect_usage_pieces(ctx)])
        out.append(f"```text\n{usage}\n```\n\n")
        if cmd.help:
            out.append(cmd.help.strip() + "\n\n")
        rows = [p.get_help_record(ctx) for p in cmd.get_params(ctx)]
        rows = [r for r in rows if r]
        args = [p for p in cmd.get_params(ctx) if p.param_type_name == "argument"]
        if args:
            out.append("Arguments: " + ", ".join(f"`{a.make_metavar(ctx) if hasattr(a, 'make_metavar') else a.name}`" for a in args) + "\n\n")
        if rows:
            out.append("| option | what it does |\n| --- | --- |\n")
            for opt, text in rows:
                cell = text.replace("|", "\\|").replace("\n", " ")
                out.append(f"| `{opt}` | {cell} |\n")
            out.append("\n")

    walk(root, ["mnistlab"], None)
    return "".join(out)
