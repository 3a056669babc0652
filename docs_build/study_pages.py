"""The study as site pages, from what `make report` writes under experiments/ (one source).

experiments/README.md becomes study/index.md (the claims table), each
experiments/<study>/README.md becomes study/<study>/index.md, and the files beside it
(results*.md, figures, run.sh) are copied next to it, so the figures sit inline beside
their tables. Links are rewritten from repository paths to site paths: a study folder to
its page, the root README's old anchors to the page that now holds the section, and a
link to anything outside the study (conf/, src/) to its path as code.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from pathlib import Path

# The root README's section anchors that study READMEs link to, and where they now live.
README_ANCHORS = {
    "paper-recipe": "paper-recipe.md",
    "sweeps": "sweeps.md",
    "resume": "resume.md",
}
COPIED = (".md", ".png", ".svg", ".sh")
SEARCH_EXCLUDED = "---\nsearch:\n  exclude: true\n---\n\n"
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def site_path(repo_path: str) -> str | None:
    """Where a repository file (posix, relative to the repo root) lands in the site."""
    parts = repo_path.strip("/").split("/")
    if parts == ["README.md"]:
        return "index.md"
    if parts[0] != "experiments":
        return None
    rest = parts[1:]
    if rest in ([], ["README.md"]):
        return "study/index.md"
    if len(rest) == 1 or rest[1:] == ["README.md"]:
        return f"study/{rest[0]}/index.md"
    if len(rest) == 2 and rest[1].endswith(COPIED):
        return f"study/{rest[0]}/{rest[1]}"
    return None


def page_label(site: str) -> str:
    """How a link whose text was its own path (`../README.md`) names the page instead."""
    if site == "index.md":
        return "the manual"
    if site == "study/index.md":
        return "the claims page"
    return f"{site.split('/')[1]}/"


def rewrite_links(text: str, source: str, experiments: Path) -> str:
    """Links of the markdown file `source` (repo path) rewritten for its site page."""
    here = site_path(source)
    assert here is not None, source

    def replace(match: re.Match) -> str:
        bang, label, target = match.groups()
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return match.group(0)
        path, _, anchor = target.partition("#")
        repo = posixpath.normpath(posixpath.join(posixpath.dirname(source), path))
        if repo == "README.md" and anchor in README_ANCHORS:
            new, anchor = README_ANCHORS[anchor], ""
        else:
            new = site_path(repo)
            if new and not new.endswith("index.md") and not (experiments.parent / repo).is_file():
                new = None
        if new is None:
            return f"{label} (`{repo}`)" if label.strip("`") != repo else f"`{repo}`"
        if label.strip("`") in (target, path) and new.endswith("index.md"):  # a bare path
            label = page_label(new)
        relative = posixpath.relpath(new, posixpath.dirname(here))
        return f"{bang}[{label}]({relative}{'#' + anchor if anchor else ''})"

    return LINK.sub(replace, text)


def study_files(experiments: Path) -> Iterator[tuple[str, bytes]]:
    """(site path, content) of every study page and the files it shows or links."""
    root = experiments.parent
    readme = experiments / "README.md"
    yield (
        "study/index.md",
        rewrite_links(readme.read_text(), "experiments/README.md", experiments).encode(),
    )
    for folder in sorted(p for p in experiments.iterdir() if (p / "README.md").is_file()):
        for file in sorted(folder.iterdir()):
            if not file.is_file() or not file.name.endswith(COPIED):
                continue
            repo = file.relative_to(root).as_posix()
            target = site_path(repo)
            if file.suffix == ".md":
                text = rewrite_links(file.read_text(), repo, experiments)
                if file.name != "README.md":  # its tables are in the study's page already
                    text = SEARCH_EXCLUDED + text
                yield target, text.encode()
            else:
                yield target, file.read_bytes()


def study_names(experiments: Path) -> list[str]:
    return sorted(p.name for p in experiments.iterdir() if (p / "README.md").is_file())
