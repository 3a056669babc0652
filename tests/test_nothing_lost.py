"""Nothing recorded is lost and nothing is mixed: a finished run resumed keeps its
metrics, a job cut between training and its metrics.json is completed with its real
metrics, a sweep rerun under another config or code is refused, a sweep folder in use is
locked, and a config that cannot be built is one paragraph."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.project import (
    CONF,
    folder_overrides,
    make_image_folder,
    run_entry_point,
    start_entry_point,
    tree_digest,
)

from alexnet_lab.errors import ConfigError
from alexnet_lab.sweeps.lock import LOCK_FILE
from alexnet_lab.training.ddp import sweep_safe_strategy
from alexnet_lab.training.lightning_private import SweepSafeDDPStrategy

METRICS = ("val/acc_top1", "val/acc_top5", "val/loss", "train/loss", "train/acc_top1")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A completed one-epoch run on a generated folder, copied fresh for each test."""
    root = tmp_path_factory.mktemp("finished")
    images = make_image_folder(root / "images")
    run_dir = root / "run"
    run_entry_point("train.py", *folder_overrides(images), f"hydra.run.dir={run_dir}", cwd=root)
    return run_dir


@pytest.fixture
def run_dir(finished_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy, symlinks=True)
    return copy


def test_resuming_a_completed_run_keeps_its_metrics_and_says_how_to_train_further(
    run_dir: Path, tmp_path: Path
):
    before = tree_digest(run_dir)
    log_before = (run_dir / "train.log").read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["val/acc_top1"] is not None

    again = run_entry_point("train.py", f"resume={run_dir}", cwd=tmp_path)
    said = again.stdout + again.stderr
    assert "is complete" in said and "trainer.max_epochs=" in said, said[-2000:]
    # Every file it had is as it was; only the log grows (it says what happened) and
    # Hydra keeps this call's config in .hydra-resume/, beside the run's own .hydra/.
    after = tree_digest(run_dir)
    assert {k: v for k, v in after.items() if k in before and k != "train.log"} == {
        k: v for k, v in before.items() if k != "train.log"
    }
    assert {k for k in after if k not in before} <= {
        f".hydra-resume/{name}" for name in ("config.yaml", "hydra.yaml", "overrides.yaml")
    }
    assert (run_dir / "train.log").read_text().startswith(log_before)

    # Asking for more epochs trains on, and the new metrics are real numbers.
    run_entry_point("train.py", f"resume={run_dir}", "trainer.max_epochs=2", cwd=tmp_path)
    longer = json.loads((run_dir / "metrics.json").read_text())
    assert longer["status"] == "completed" and longer["epochs"] == 2
    assert longer["global_step"] == 2 * metrics["global_step"]
    assert all(isinstance(longer[key], float) for key in METRICS), longer


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_trained_further_keeps_the_csv_log_of_its_first_epochs(run_dir: Path, tmp_path: Path):
    """Lightning's CSV writer deletes metrics.csv when a run continues in its folder
    (resume, a sweep job run again, a requeue): the rows of the epochs before the restart,
    and the study's history.csv compacted from them, would be gone."""
    log = run_dir / "csv" / "metrics.csv"
    first = csv_rows(log)
    assert {row["epoch"] for row in first if row.get("val/acc_top1")} == {"0"}

    run_entry_point("train.py", f"resume={run_dir}", "trainer.max_epochs=2", cwd=tmp_path)
    both = csv_rows(log)
    assert {row["epoch"] for row in both if row.get("val/acc_top1")} == {"0", "1"}
    kept = [{k: row[k] for k in first[0]} for row in both[: len(first)]]
    assert kept == first  # the first epoch's rows as they were, the new ones after them


def test_a_job_cut_before_its_metrics_json_is_completed_with_its_real_metrics(
    run_dir: Path, tmp_path: Path
):
    """A kill between the end of fit and the metrics.json write: the rerun finds the final
    checkpoint, trains nothing, and records the metrics that training produced."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (run_dir / "metrics.json").unlink()

    run_entry_point("train.py", f"resume={run_dir}", cwd=tmp_path)
    recovered = json.loads((run_dir / "metrics.json").read_text())
    assert recovered["status"] == "completed"
    assert (recovered["epochs"], recovered["global_step"]) == (
        metrics["epochs"],
        metrics["global_step"],
    )
    for key in METRICS:
        assert recovered[key] == pytest.approx(metrics[key], rel=1e-6), key


# --- sweeps: one config, one process ----------------------------------------------------


def sweep_args(images: Path, sweep_dir: Path, *extra: str) -> list[str]:
    return [
        "-m",
        *folder_overrides(images),
        "model.activation=relu,tanh",
        f"hydra.sweep.dir={sweep_dir}",
        *extra,
    ]


@pytest.fixture
def own_conf(tmp_path: Path) -> Path:
    """A copy of conf/ a test may edit, as a user edits conf/optimizer/sgd.yaml."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    return conf


@pytest.mark.slow
def test_a_sweep_rerun_after_a_config_edit_is_refused_with_the_keys_named(
    own_conf: Path, tmp_path: Path
):
    images = make_image_folder(tmp_path / "images")
    sweep_dir = tmp_path / "sweep"
    args = [f"--config-path={own_conf}", *sweep_args(images, sweep_dir)]
    run_entry_point("train.py", *args, cwd=tmp_path)
    for job in ("0", "1"):
        fingerprint = json.loads((sweep_dir / job / "fingerprint.json").read_text())
        assert fingerprint["config"]["optimizer.momentum"] == 0.9
        assert {"source_sha256", "package_version", "git_commit", "git_dirty"} <= set(
            fingerprint["code"]
        )
        (sweep_dir / job / "metrics.json").unlink()  # as if both were cut short

    sgd = own_conf / "optimizer" / "sgd.yaml"
    sgd.write_text(sgd.read_text().replace("momentum: 0.9", "momentum: 0.8"))
    before = tree_digest(sweep_dir)
    refused = run_entry_point("train.py", *args, cwd=tmp_path, check=False)
    said = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "optimizer.momentum: 0.9 → 0.8" in said, said[-3000:]
    assert "allow_config_change=true" in said
    assert tree_digest(sweep_dir) == before, "a refused rerun must not change the sweep folder"

    run_entry_point("train.py", *args, "allow_config_change=true", cwd=tmp_path)
    summary = (sweep_dir / "summary.md").read_text()
    assert "config changed" in summary and "optimizer.momentum: 0.9 → 0.8" in summary
    for job in ("0", "1"):
        assert json.loads((sweep_dir / job / "metrics.json").read_text())["status"] == ("completed")


@pytest.mark.slow
def test_a_sweep_rerun_under_other_code_is_refused(tmp_path: Path):
    images = make_image_folder(tmp_path / "images")
    sweep_dir = tmp_path / "sweep"
    run_entry_point("train.py", *sweep_args(images, sweep_dir), cwd=tmp_path)
    path = sweep_dir / "1" / "fingerprint.json"
    fingerprint = json.loads(path.read_text())
    # Another commit alone is not other code (a README edit); other sources are.
    fingerprint["code"]["git_commit"] = "0" * 40
    path.write_text(json.dumps(fingerprint))
    run_entry_point("train.py", *sweep_args(images, sweep_dir), cwd=tmp_path)
    fingerprint["code"]["source_sha256"] = "f" * 16
    path.write_text(json.dumps(fingerprint))
    refused = run_entry_point("train.py", *sweep_args(images, sweep_dir), cwd=tmp_path, check=False)
    said = refused.stderr + refused.stdout
    assert refused.returncode != 0
    assert f"job 1: code.source_sha256: {'f' * 16} →" in said, said[-2000:]
    assert f"(git commit {'0' * 40} →" in said


def test_a_sweep_folder_held_by_a_live_process_is_refused_naming_the_holder(tmp_path: Path):
    images = make_image_folder(tmp_path / "images")
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"host": socket.gethostname(), "pid": holder.pid, "started": "earlier"}
        (sweep_dir / LOCK_FILE).write_text(json.dumps(lock))
        before = tree_digest(sweep_dir)
        started = time.monotonic()
        refused = run_entry_point(
            "train.py", *sweep_args(images, sweep_dir), cwd=tmp_path, check=False
        )
        said = refused.stdout + refused.stderr
        assert refused.returncode != 0 and time.monotonic() - started < 60
        assert f"pid {holder.pid}" in said and socket.gethostname() in said, said[-2000:]
        assert tree_digest(sweep_dir) == before
    finally:
        holder.kill()
        holder.wait()
    # The holder is dead now: its lock is stale, taken over, and the sweep runs.
    run_entry_point("train.py", *sweep_args(images, sweep_dir), cwd=tmp_path)
    assert not (sweep_dir / LOCK_FILE).exists(), "the lock is released at the sweep's end"
    assert json.loads((sweep_dir / "1" / "metrics.json").read_text())["status"] == "completed"


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_a_second_process_on_a_running_sweep_is_refused(launcher: str, tmp_path: Path):
    images = make_image_folder(tmp_path / "images", per_class=20)
    sweep_dir = tmp_path / "sweep"
    args = sweep_args(images, sweep_dir, "trainer.max_epochs=40", f"hydra/launcher={launcher}")
    first = start_entry_point("train.py", *args, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (sweep_dir / LOCK_FILE).exists():
            assert first.poll() is None and time.monotonic() < deadline, "no lock appeared"
            time.sleep(0.2)
        second = run_entry_point("train.py", *args, cwd=tmp_path, check=False, timeout=120)
        assert second.returncode != 0
        assert f"pid {first.pid}" in second.stdout + second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


# --- one paragraph for a config that cannot be built --------------------------------------


@pytest.mark.slow  # each case runs a sweep
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.dropout=1.5", "model.dropout=1.5 is out of range"),
        ("+callbacks.extra._target_=no_such_module.Callback", "callbacks.extra"),
    ],
)
def test_a_config_that_cannot_be_built_is_one_paragraph(override, message, tmp_path: Path):
    images = make_image_folder(tmp_path / "images")
    single = run_entry_point(
        "train.py", *folder_overrides(images), override, cwd=tmp_path, check=False
    )
    assert single.returncode == 1
    said = single.stdout + single.stderr
    assert message in said, said[-2000:]
    assert "Traceback" not in said and "InstantiationException" not in said
    assert "Error in call to target" not in said

    sweep_dir = tmp_path / "sweep"
    swept = run_entry_point(
        "train.py", *sweep_args(images, sweep_dir, override), cwd=tmp_path, check=False
    )
    assert swept.returncode == 1  # every job ran and failed; the sweep says so
    row = (sweep_dir / "summary.md").read_text()
    assert message in row and "Error in call to target" not in row
    assert "Traceback" not in swept.stdout + swept.stderr


# --- several devices in a sweep -------------------------------------------------------------


@pytest.mark.parametrize(
    ("trainer", "replaced"),
    [
        ({"strategy": "auto", "devices": 2, "num_nodes": 1}, True),
        ({"strategy": "ddp", "devices": 1, "num_nodes": 2}, True),
        ({"strategy": "auto", "devices": 1, "num_nodes": 1}, False),
        ({"strategy": "auto", "devices": "auto", "num_nodes": 1, "accelerator": "cpu"}, False),
        ({"strategy": "ddp_spawn", "devices": 2, "num_nodes": 1}, False),
    ],
)
def test_several_devices_get_the_sweep_safe_launcher(trainer: dict, replaced: bool):
    chosen = sweep_safe_strategy(trainer, in_sweep=True)
    assert isinstance(chosen.get("strategy"), SweepSafeDDPStrategy) == replaced, chosen


def test_a_strategy_that_relaunches_the_sweep_is_refused_in_a_sweep():
    trainer = {"strategy": "fsdp", "devices": 2, "num_nodes": 1}
    with pytest.raises(ConfigError, match="trainer=ddp"):
        sweep_safe_strategy(trainer, in_sweep=True)
    assert sweep_safe_strategy(trainer, in_sweep=False) == {}


@pytest.mark.slow
def test_a_sweep_with_two_cpu_devices_on_trainer_cpu_runs_each_job_once(tmp_path: Path):
    sweep_dir = tmp_path / "sweep"
    run_entry_point(
        "train.py",
        "-m",
        "trainer=cpu",
        "trainer.devices=2",
        "data=synthetic",
        "data.train_size=32",
        "data.val_size=16",
        "data.batch_size=8",
        "trainer.max_epochs=1",
        "logger=csv",
        "seed=1,2",
        f"hydra.sweep.dir={sweep_dir}",
        cwd=tmp_path,
        timeout=600,
    )
    assert sorted(p.name for p in (tmp_path / "outputs").glob("**/multiruns/*")) == []
    for job in ("0", "1"):
        metrics = json.loads((sweep_dir / job / "metrics.json").read_text())
        assert metrics["status"] == "completed" and metrics["data/world_size"] == 2
