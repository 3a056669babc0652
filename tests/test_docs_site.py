"""The docs site: built with --strict, its generated pages (configuration reference, the
study) complete, and read in headless Chromium as a reader would."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml
from helpers.project import CONF, REPO

sys.path.insert(0, str(REPO / "docs_build"))

import check_site  # noqa: E402
from conf_reference import described, missing_descriptions, render  # noqa: E402
from study_pages import rewrite_links, study_files  # noqa: E402

MKDOCS_ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}


def build_site(site_dir) -> subprocess.CompletedProcess:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed: make install")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=REPO,
        env=MKDOCS_ENV,
        capture_output=True,
        text=True,
    )


def test_every_conf_key_has_a_description():
    assert missing_descriptions(CONF) == [], "add a `# ...` comment above or after each key"


def test_a_key_without_a_description_is_named(tmp_path):
    (tmp_path / "model").mkdir(parents=True)
    (tmp_path / "model" / "net.yaml").write_text(
        "# A net.\nwidth: 1.0  # channel multiplier\n# Its depth.\ndepth: 5\n\nheads: 2\n"
    )
    assert missing_descriptions(tmp_path) == ["conf/model/net.yaml: model.heads"] or (
        missing_descriptions(tmp_path) == [f"{tmp_path.name}/model/net.yaml: model.heads"]
    )
    option = described(tmp_path)[0]
    assert option.description == "A net."
    assert {k.path: k.description for k in option.keys} == {
        "model.width": "channel multiplier",
        "model.depth": "Its depth.",
        "model.heads": None,
    }


def test_a_preset_key_takes_its_groups_description_and_the_group_shares_one():
    options = {f"{o.group}/{o.name}": o for o in described(CONF)}
    no_dropout = {k.path: k for k in options["ablation/no_dropout"].keys}
    assert no_dropout["model.dropout"].default == 0
    assert no_dropout["model.dropout"].description.startswith("dropout probability")
    imagenet = {k.path: k for k in options["data/imagenet"].keys}
    assert imagenet["data.num_workers"].description == "DataLoader worker processes per device"


def test_the_configuration_reference_lists_every_group_option_and_key():
    page = render(CONF)
    for group in ("model", "data", "optimizer", "scheduler", "trainer", "logger", "callbacks"):
        assert f"## `{group}=`" in page
    for option in ("alexnet_owt", "fashion_mnist_mini", "submitit_slurm", "imagenet_paper"):
        assert f"### {option} " in page
    assert "| `model.dropout` | `0.5` | dropout probability on fc6/fc7" in page
    assert "`${model.input_size}`" in page  # interpolations shown as written
    assert "&lt;class&gt;" in page  # comment text escaped: no stray HTML tags


def test_study_links_become_site_links():
    experiments = REPO / "experiments"
    text = (
        "[ref](../baseline/) [rule](../README.md#how-a-verdict-is-reached) "
        "[recipe](../../README.md#paper-recipe) [cmd](run.sh) ![c](curves.png) "
        "[preset](../../conf/experiment/study_small.yaml) [web](https://arxiv.org)"
    )
    assert rewrite_links(
        "[../README.md](../README.md#x)", "experiments/lrn/README.md", experiments
    ) == ("[the claims page](../index.md#x)")
    assert rewrite_links(text, "experiments/dropout/README.md", experiments) == (
        "[ref](../baseline/index.md) [rule](../index.md#how-a-verdict-is-reached) "
        "[recipe](../../paper-recipe.md) [cmd](run.sh) ![c](curves.png) "
        "preset (`conf/experiment/study_small.yaml`) [web](https://arxiv.org)"
    )


def test_the_study_pages_are_what_make_report_wrote():
    pages = dict(study_files(REPO / "experiments"))
    claims = pages["study/index.md"].decode()
    readme = (REPO / "experiments" / "README.md").read_text()
    start = readme.index("<!-- claims:start -->")
    table_row = readme[start:].splitlines()[3]  # the first claim's row, as the report wrote it
    assert table_row.split("|")[4] in claims
    assert (
        pages["study/dropout/curves.png"] == (REPO / "experiments/dropout/curves.png").read_bytes()
    )
    assert (
        "![curves and paired differences](curves.png)" in pages["study/dropout/index.md"].decode()
    )


def test_the_site_builds_with_no_warning(tmp_path):
    built = build_site(tmp_path / "site")
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").is_file()
    assert (tmp_path / "site" / "study" / "dropout" / "curves.png").is_file()
    api = (tmp_path / "site" / "reference" / "api" / "stats" / "index.html").read_text()
    assert "paired" in api  # mkdocstrings rendered the module's docstrings


def test_the_browser_check_says_how_to_get_chromium(monkeypatch, capsys):
    monkeypatch.setenv("CHROMIUM", "/nonexistent/chromium")
    assert check_site.main([]) == 2
    assert "apt-get install chromium" in capsys.readouterr().err


@pytest.mark.browser
def test_the_site_reads_well_in_a_browser(tmp_path):
    why = check_site.missing_requirements()
    if why:
        pytest.skip(f"browser check skipped: {why}")
    built = build_site(tmp_path / "site")
    assert built.returncode == 0, built.stdout + built.stderr
    shots = REPO / "outputs" / "docs-check"
    result = check_site.check_site(tmp_path / "site", shots)
    assert result.errors == [], result.summary()
    assert result.pages >= 30 and result.images >= 10 and result.links >= 100
    assert any(check_site.SWITCHES_PAGE in hit for hit in result.search_hits)
    assert {p.name for p in result.screenshots} == {
        f"{name}-{width}.png" for name in check_site.SHOTS for width in check_site.WIDTHS
    }
    assert all(p.stat().st_size > 10_000 for p in result.screenshots)


def test_the_readme_is_a_landing_page_whose_links_resolve():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert "make install" in readme and "make test" in readme and "src/train.py" in readme
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not re.match(r"^[a-z]+:", link)]
    assert len(local) >= 15
    assert [link for link in local if not (REPO / link).exists()] == []
    nav = (REPO / "mkdocs.yml").read_text()
    pages = {link.removeprefix("docs/") for link in local if link.startswith("docs/")}
    assert all(page in nav for page in pages), "the README links pages the site's nav lacks"


def test_every_page_is_in_the_nav():
    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]

    def leaves(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from leaves(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from leaves(value)

    listed = set(leaves(nav))
    pages = {p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md")}
    assert pages - listed == set(), "add these pages to nav in mkdocs.yml"
    generated = {"reference/configuration.md"} | {
        f"study/{name}/index.md" for name in ("dropout", "lrn", "baseline")
    }
    assert generated <= listed
