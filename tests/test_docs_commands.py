"""The commands the manual shows still work, so it cannot drift from the code.

Every shell line in a ```bash block of README.md and docs/*.md is collected. Each Hydra
command (`python src/<entry>.py ...`) is composed in process with its overrides (a sweep
by its first job), which fails on a group, option or key the configs no longer have;
every `make` target shown must exist; the commands shown with `--cfg` or `--help` run as
shown; and (slow) every entry point shown answers `--help`.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.project import CONF, REPO
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Glob

from alexnet_lab.runs import folder_data_for_given_root

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
HYDRA_ENTRY_POINTS = {
    "train": "train",
    "tune": "tune",
    "eval": "eval",
    "predict": "predict",
    "export": "export",
    "prepare": "prepare",
    "dashboard": "dashboard",
}
SHELL_BLOCK = re.compile(r"```(?:bash|sh|shell)\n(.*?)```", re.DOTALL)
PYTHON = re.compile(r"^(?:\.venv/bin/)?python (src/(\w+)\.py)(.*)$")


def shown_commands() -> list[tuple[str, str]]:
    """(page, command line) of every shell line shown, continuations joined, comments cut."""
    found = []
    for page in PAGES:
        for block in SHELL_BLOCK.findall(page.read_text()):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                words = shlex.split(line, comments=True)
                if words:
                    found.append((page.name, shlex.join(words)))
    return found


def python_commands() -> list[tuple[str, str, list[str]]]:
    """(page, entry point, arguments) of every `python src/<entry>.py` line shown."""
    found = []
    for page, line in shown_commands():
        match = PYTHON.match(line)
        if match:
            found.append((page, match[2], shlex.split(match[3])))
    return sorted(set((p, e, tuple(a)) for p, e, a in found))


def first_job(overrides: list[str]) -> list[str]:
    """A sweep's overrides as its first job runs them: `a,b` -> a, `glob(*)` -> the first
    option of the group, `range(4)` -> 0."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    job = []
    for override, text in zip(parsed, overrides, strict=True):
        if not override.is_sweep_override():
            job.append(text)
            continue
        key = override.get_key_element()
        if isinstance(override.value(), Glob):
            options = sorted(p.stem for p in (CONF / override.key_or_group).glob("*.yaml"))
            value = override.value().filter(options)[0]
        else:
            value = next(override.sweep_string_iterator())
        job.append(f"{key}={value}")
    return job


def test_the_manual_shows_commands():
    entries = {entry for _, entry, _ in python_commands()}
    assert {"train", "tune", "eval", "predict", "export", "prepare", "dashboard"} <= entries
    assert len(python_commands()) >= 40


@pytest.mark.parametrize(
    ("page", "entry", "args"),
    [c for c in python_commands() if c[1] in HYDRA_ENTRY_POINTS],
    ids=lambda value: value if isinstance(value, str) else " ".join(value)[:80],
)
def test_every_hydra_command_shown_composes(page, entry, args):
    # <placeholders> are the reader's to fill; [key=value] is an optional override
    words = [re.sub(r"<[^>]+>", "X", w) for w in args if w not in ("-m", "--multirun")]
    words = [w[1:-1] if w.startswith("[") and w.endswith("]") else w for w in words]
    flags = [w for w in words if w.startswith("-")]
    overrides = [w for w in words if not w.startswith("-")]
    assert all(f in ("--cfg", "job", "--resolve", "--help") for f in flags), flags
    overrides = [w for w in overrides if w != "job"]
    if entry == "train":
        overrides = folder_data_for_given_root(["train.py", *overrides])[1:]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=HYDRA_ENTRY_POINTS[entry], overrides=first_job(overrides))
    assert cfg.task_name == entry, f"{page}: {entry} {args}"


def make_targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.MULTILINE))


def test_every_make_target_shown_exists():
    shown = {line.split()[1] for _, line in shown_commands() if line.startswith("make ")}
    assert shown, "no make command found on the pages"
    assert shown <= make_targets(), shown - make_targets()


def run_shown(entry: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, f"src/{entry}.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_config_commands_shown_run_as_shown():
    shown = [(p, e, a) for p, e, a in python_commands() if "--cfg" in a or "--help" in a]
    assert shown, "the pages show no --cfg or --help command"
    for page, entry, args in shown:
        done = run_shown(entry, list(args))
        assert done.returncode == 0, (
            f"{page}: python src/{entry}.py {shlex.join(args)}\n" + (done.stderr[-2000:])
        )
        assert "task_name" in done.stdout or "Powered by Hydra" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("entry", sorted({e for _, e, _ in python_commands()}))
def test_every_entry_point_shown_answers_help(entry):
    assert Path(REPO / "src" / f"{entry}.py").is_file()
    done = run_shown(entry, ["--help"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip()


def test_a_command_the_configs_no_longer_fit_fails_to_compose():
    with (
        pytest.raises(Exception, match="model.dropoutt"),
        initialize_config_dir(config_dir=str(CONF), version_base="1.3"),
    ):
        compose(config_name="train", overrides=first_job(["model.dropoutt=0,0.5"]))
