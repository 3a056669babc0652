"""Each job's fingerprint (the config keys that change results, and the code version), so
that a sweep run again under another config or code is refused before any job starts
(sweeps/lock.py holds the folder for one process; sweeps/guard.py checks both)."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from alexnet_lab.files import atomic_write
from alexnet_lab.redaction import redact_secrets

log = logging.getLogger(__name__)

FINGERPRINT_FILE = "fingerprint.json"
CHANGES_FILE = "config_changes.json"
ALLOW_KEY = "allow_config_change"
# Keys that say where results go and who watches them, not what they are.
NOT_RESULTS = ("hydra", "paths", "logger", "resume", ALLOW_KEY)
PACKAGE_ROOT = Path(__file__).resolve().parent


# --- fingerprints ---------------------------------------------------------------------------


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def source_sha256() -> str:
    """A hash of every Python source of the package: the code a job runs, whatever git
    says (an edit to a notebook or README does not change it)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def code_version() -> dict[str, Any]:
    """The code a job ran: the package's source hash and version (compared between runs),
    and for the record the git commit and whether tracked files differed from it."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    try:
        version = metadata.version("alexnet-lab")
    except metadata.PackageNotFoundError:
        version = None
    return {
        "source_sha256": source_sha256(),
        "package_version": version,
        "git_commit": commit.strip() if commit else None,
        "git_dirty": bool(status.strip()) if status is not None else None,
    }


# What decides "other code": a new commit that changed only docs or notebooks does not.
COMPARED_CODE = ("source_sha256", "package_version")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def config_fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """The job's composed config as dotted keys, unresolved (a `${...}` is compared as
    written, so output paths and clocks do not differ), without the keys in NOT_RESULTS
    and with credentials redacted (the file is kept with the run's results)."""
    tree = OmegaConf.to_container(cfg, resolve=False)
    kept = {k: v for k, v in tree.items() if k not in NOT_RESULTS}
    return _flatten(redact_secrets(kept))


def fingerprint(cfg: DictConfig) -> dict[str, Any]:
    return {"config": config_fingerprint(cfg), "code": code_version()}


def write_fingerprint(job_dir: Path, cfg: DictConfig) -> None:
    """A job's fingerprint, written when it first starts; a job that continues keeps the
    one it started with (a change allowed on purpose is logged in the sweep folder)."""
    path = job_dir / FINGERPRINT_FILE
    if not path.exists():
        with atomic_write(path) as f:
            json.dump(fingerprint(cfg), f, indent=1, sort_keys=True, default=str)


def read_fingerprint(job_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((job_dir / FINGERPRINT_FILE).read_text())
    except (OSError, ValueError):
        return None


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """`section.key: old → new` for every config key and compared code key that differs."""
    lines = []
    for section in ("config", "code"):
        old, new = before.get(section, {}), now.get(section, {})
        keys = sorted(set(old) | set(new)) if section == "config" else COMPARED_CODE
        for key in keys:
            if old.get(key, "(absent)") != new.get(key, "(absent)"):
                name = key if section == "config" else f"code.{key}"
                shown_old = _shown(old[key]) if key in old else "(absent)"
                shown_new = _shown(new[key]) if key in new else "(absent)"
                lines.append(f"{name}: {shown_old} → {shown_new}")
    if any(line.startswith("code.") for line in lines):
        commits = [d.get("code", {}).get("git_commit") for d in (before, now)]
        lines.append(f"(git commit {commits[0]} → {commits[1]})")
    return lines


def record_allowed_change(sweep_dir: Path, changed: dict[str, list[str]]) -> None:
    """Append to config_changes.json: the sweep continued under another config on purpose."""
    path = sweep_dir / CHANGES_FILE
    try:
        history = json.loads(path.read_text())
    except (OSError, ValueError):
        history = []
    history.append({"time": datetime.now().isoformat(timespec="seconds"), "jobs": changed})
    with atomic_write(path) as f:
        json.dump(history, f, indent=1)


def changes_section(sweep_dir: Path) -> list[str]:
    """Lines for summary.md: each time the sweep continued under a changed config."""
    try:
        history = json.loads((sweep_dir / CHANGES_FILE).read_text())
    except (OSError, ValueError):
        return []
    lines = ["", "## The config changed during this sweep", ""]
    for entry in history:
        lines.append(
            f"Continued with {ALLOW_KEY}=true on {entry['time']}: its arms mix runs of two "
            f"configs or code versions."
        )
        for job, diff in sorted(entry["jobs"].items()):
            lines.append(f"- job {job}: {'; '.join(diff)}")
    return lines


# --- the lock -------------------------------------------------------------------------------
