"""What the docs say is tested names its test, and every test they name exists.

The docs: README.md, the site's pages (docs/) and the study's READMEs under experiments/,
which the site shows as pages."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from helpers.project import REPO

SITE_PAGES = sorted((REPO / "docs").rglob("*.md"))
STUDY_PAGES = sorted((REPO / "experiments").glob("**/README.md"))
DOCS = [REPO / "README.md", *SITE_PAGES, *STUDY_PAGES]
TEST_REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
# "tested", "Tested here", "is tested", "What was tested", but not "not tested"/"untested".
TESTED_CLAIM = re.compile(r"(?<!not )(?<!un)\btested\b", re.IGNORECASE)


def references() -> list[tuple[str, str, str]]:
    found = []
    for doc in DOCS:
        for path, name in TEST_REFERENCE.findall(doc.read_text()):
            found.append((doc.relative_to(REPO).as_posix(), path, name))
    return sorted(set(found))


def sentences(text: str) -> list[str]:
    """Prose sentences, code blocks left out; a sentence ends at '. ' before a capital, a
    backtick, a parenthesis or a bold mark (not at `.py` or `e.g.` inside one)."""
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    flat = " ".join(prose.split())
    return re.split(r"(?<=[.!?])\s+(?=[A-Z`(*])", flat)


def defined_names(test_file: Path) -> set[str]:
    tree = ast.parse(test_file.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


def test_the_docs_name_tests():
    assert len(references()) >= 10  # the pattern still finds the docs' references


def test_the_site_pages_are_among_the_docs_checked():
    names = {p.relative_to(REPO).as_posix() for p in DOCS}
    assert {"docs/index.md", "docs/models-and-switches.md", "docs/resume.md"} <= names
    assert "experiments/dropout/README.md" in names
    # the references moved out of README.md into the pages are still checked there
    assert {doc for doc, _, _ in references()} - {"README.md"}


@pytest.mark.parametrize(("doc", "path", "name"), references())
def test_every_test_the_docs_name_exists(doc: str, path: str, name: str):
    test_file = REPO / path
    assert test_file.is_file(), f"{doc} names {path}::{name}, but there is no {path}"
    assert name in defined_names(test_file), f"{doc} names {path}::{name}: no such test"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_sentence_that_says_tested_names_the_test(doc: Path):
    unnamed = [s for s in sentences(doc.read_text()) if TESTED_CLAIM.search(s) and "::" not in s]
    assert not unnamed, "say which test (tests/x.py::name), or 'tried by hand':\n" + "\n".join(
        unnamed
    )


def test_the_claim_finder_tells_claims_from_denials():
    text = "It is tested here. Not tested: AWS. S3 untested here. A (tests/a.py::b) is tested."
    claims = [s for s in sentences(text) if TESTED_CLAIM.search(s)]
    assert claims == ["It is tested here.", "A (tests/a.py::b) is tested."]
