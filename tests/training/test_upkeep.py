"""Small things that cost a day: files a failed write must not leave half-written (the
W&B identity, the redacted saved config), and the Lightning private APIs the package
relies on, checked against the installed Lightning so an upgrade fails here, loudly."""

from __future__ import annotations

import ast
import importlib
import inspect
import io
import os
import re
from importlib.metadata import version
from pathlib import Path

import lightning as L
import pytest
from helpers.project import REPO, compose_config
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from lightning.pytorch.trainer.connectors.signal_connector import _SignalConnector
from omegaconf import OmegaConf
from packaging.requirements import Requirement
from packaging.version import Version

from alexnet_lab.jobs.naming import IDENTITY_FILE
from alexnet_lab.sweeps.guard import RunDirGuard
from alexnet_lab.tracking.wandb_run import wandb_identity
from alexnet_lab.training.lightning_private import LIGHTNING_PRIVATE_API

# --- atomic writes --------------------------------------------------------------------


class DiskFull(OSError):
    pass


@pytest.fixture
def writes_fail_midway(monkeypatch):
    """Every file opened for writing takes half of what it is given, then the disk is full
    (the same as a kill mid-write: what is on disk is a truncated file)."""
    real_open = io.open

    class HalfWritten:
        def __init__(self, file):
            self.file = file

        def write(self, text):
            self.file.write(text[: len(text) // 2])
            self.file.flush()
            raise DiskFull(28, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def __getattr__(self, name):
            return getattr(self.file, name)

    def failing_open(file, mode="r", *args, **kwargs):
        opened = real_open(file, mode, *args, **kwargs)
        return HalfWritten(opened) if "w" in mode else opened

    # pathlib's write_text and os.fdopen (atomic_write's temporary file) both open via io.
    monkeypatch.setattr(io, "open", failing_open)


def test_a_failed_write_leaves_no_half_wandb_identity(tmp_path: Path, writes_fail_midway):
    cfg = compose_config(["logger=wandb"], tmp_path / "run")
    with pytest.raises(DiskFull):
        wandb_identity(cfg, cfg.logger.wandb, [])
    # A half file would be read back as the identity of every later segment of the run.
    assert not (tmp_path / "run" / IDENTITY_FILE).exists()
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_a_failed_redaction_keeps_the_saved_config_whole(tmp_path: Path, writes_fail_midway):
    saved = tmp_path / ".hydra"
    saved.mkdir()
    original = "model: alexnet\nnotify:\n  slack_token: xoxb-1234\n"
    with open(saved / "config.yaml", "x") as f:  # mode x: written whole, before the failure
        f.write(original)
    config = OmegaConf.create(
        {"hydra": {"output_subdir": ".hydra", "runtime": {"output_dir": str(tmp_path)}}}
    )
    with pytest.raises(DiskFull):
        RunDirGuard().on_job_start(config=config, task_function=None)
    assert (saved / "config.yaml").read_text() == original  # old file intact, not half
    assert sorted(p.name for p in saved.iterdir()) == ["config.yaml"]


# --- Lightning ------------------------------------------------------------------------


def test_lightning_is_pinned_below_its_next_minor_release():
    # (tomllib is Python 3.11+; the package supports 3.10.)
    lines = re.findall(r'^\s*"(lightning\b[^"]*)"', (REPO / "pyproject.toml").read_text(), re.M)
    (pin,) = [Requirement(line) for line in lines if Requirement(line).name == "lightning"]
    installed = Version(version("lightning"))
    assert installed in pin.specifier, f"lightning {installed} is outside {pin}"
    next_minor = Version(f"{installed.major}.{installed.minor + 1}")
    assert next_minor not in pin.specifier, f"{pin} lets lightning {next_minor} in untested"


def instances(tmp_path: Path) -> dict[str, object]:
    """One instance of each class whose private attributes the package reads."""
    trainer = L.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu", devices=1)
    return {
        "_ChildProcessObserver": _ChildProcessObserver(main_pid=os.getpid(), child_processes=[]),
        "_SubprocessScriptLauncher": _SubprocessScriptLauncher(LightningEnvironment(), 1, 1),
        "DDPStrategy": DDPStrategy(),
        "_SignalConnector": _SignalConnector(trainer),
        "Trainer": trainer,
        "WandbLogger": WandbLogger(offline=True, save_dir=str(tmp_path)),
        "CSVLogger": CSVLogger(save_dir=str(tmp_path), name="csv", version=""),
    }


@pytest.mark.parametrize("name", sorted(LIGHTNING_PRIVATE_API))
def test_each_lightning_private_api_exists_as_used(name: str, tmp_path: Path):
    module_name, path = name.split(":")
    owner, *rest = path.split(".")
    expected = LIGHTNING_PRIVATE_API[name]
    if owner.endswith("()"):  # an attribute of every instance
        (attribute,) = rest
        instance = instances(tmp_path)[owner[:-2]]
        assert hasattr(instance, attribute), f"{name}: gone from lightning {version('lightning')}"
        return
    target = importlib.import_module(module_name)
    for part in path.split("."):
        assert hasattr(target, part), f"{name}: gone from lightning {version('lightning')}"
        target = getattr(target, part)
    parameters = [p for p in inspect.signature(target).parameters if p != "self"]
    assert tuple(parameters) == expected, f"{name}: now takes {parameters}"


def test_the_list_names_every_private_lightning_import():
    """A private Lightning name imported anywhere in src/ must be on the list."""
    listed = {name.split(":")[1].split(".")[0].removesuffix("()") for name in LIGHTNING_PRIVATE_API}
    imported = set()
    for source in (REPO / "src").rglob("*.py"):
        for line in source.read_text().splitlines():
            words = line.replace(",", " ").replace("(", " ").split()
            if words[:1] == ["from"] and words[1].startswith("lightning") and "import" in words:
                imported |= {w for w in words[words.index("import") + 1 :] if w.startswith("_")}
    assert imported and imported <= listed, imported - listed


def test_lightning_private_apis_are_used_in_one_module_only():
    """Every private Lightning import and every use of a listed private attribute sits in
    training/lightning_private.py, so a Lightning upgrade is checked in one place."""
    private_attributes = {
        name.split(":")[1].split(".")[-1] for name in LIGHTNING_PRIVATE_API if "." in name
    } - {"procs", "cluster_environment", "received_sigterm"}  # public names on private classes
    home = REPO / "src" / "alexnet_lab" / "training" / "lightning_private.py"
    elsewhere = []
    for source in (REPO / "src").rglob("*.py"):
        if source == home:
            continue
        for node in ast.walk(ast.parse(source.read_text())):
            private_import = (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("lightning")
                and any(alias.name.startswith("_") for alias in node.names)
            )
            private_use = isinstance(node, ast.Attribute) and node.attr in private_attributes
            if private_import or private_use:
                elsewhere.append(f"{source.relative_to(REPO)}:{node.lineno}")
    assert private_attributes and not elsewhere, elsewhere
