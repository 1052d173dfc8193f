"""The manual's site: the command-line page is written from the CLI itself (every command, every option), the
front page stays a front page, and every page the README links to exists. `make docs` builds it with --strict."""

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hooks():
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("mnistlab_site_hooks", REPO / "docs" / "hooks" / "site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_command_line_page_holds_every_command_and_option(hooks):
    import typer

    from mnistlab.cli import app

    page = hooks.cli_reference()
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="mnistlab")
    expected = []
    for name in root.list_commands(ctx):
        cmd = root.get_command(ctx, name)
        if hasattr(cmd, "list_commands"):
            sub = cmd.context_class(cmd, info_name=name, parent=ctx)
            expected += [(f"mnistlab {name} {n}", cmd.get_command(sub, n)) for n in cmd.list_commands(sub)]
        else:
            expected.append((f"mnistlab {name}", cmd))
    assert len(expected) > 20
    for path, cmd in expected:
        assert f"### {path}\n" in page, path
        section = page.split(f"### {path}\n", 1)[1].split("\n### ", 1)[0]
        for param in (p for p in cmd.params if not getattr(p, "hidden", False)):  # hidden ones are in no --help either
            for opt in getattr(param, "opts", []):
                if opt.startswith("--"):
                    assert f"`{opt}" in section or f", {opt}" in section or f"/{opt}" in section, (path, opt)


def test_links_as_the_repository_writes_them_become_the_site_s(hooks):
    text = "[b](../BENCHMARKS.md#x) [r](README.md) ![p](docs/drawing-pad.png) [g](guide.md)"
    assert hooks._site_links(text) == "[b](benchmarks.md#x) [r](index.md) ![p](drawing-pad.png) [g](guide.md)"


def test_the_readme_is_a_front_page_whose_links_all_exist():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert "make demo" in readme and "make test" in readme
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert len(local) >= 12
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing
