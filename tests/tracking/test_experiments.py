"""Experiment management: ablation presets, W&B runs read back from their offline files,
sweep summaries with a failing job, the SLURM preset's mapping, resume's config rules."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from helpers.project import CONF, TINY, compose_config, run_entry_point
from helpers.wandb_offline import read_wandb_run
from omegaconf import OmegaConf

from alexnet_lab.errors import ConfigError
from alexnet_lab.jobs.resume import restore_config
from alexnet_lab.sweeps.summary import write_summary

ABLATIONS = {
    "baseline": {},
    "tanh": {"model.activation": "tanh"},
    "no_lrn": {"model.lrn": False},
    "no_dropout": {"model.dropout": 0.0},
    "no_augment": {"data.augment": False},
    "no_overlap_pool": {"model.overlap_pool": False},
    "one_tower": {"model.groups": 1},
}


def test_every_paper_ablation_has_a_preset():
    assert {p.stem for p in (CONF / "ablation").glob("*.yaml")} == set(ABLATIONS)


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_ablation_presets_change_only_their_switch(name: str, tmp_path: Path):
    base = compose_config([], tmp_path)
    cfg = compose_config([f"ablation={name}"], tmp_path)
    assert cfg.ablation_name == name
    for key in ("model.activation", "model.lrn", "model.dropout", "model.overlap_pool"):
        want = ABLATIONS[name].get(key, OmegaConf.select(base, key))
        assert OmegaConf.select(cfg, key) == want, key
    assert cfg.model.groups == ABLATIONS[name].get("model.groups", base.model.groups)
    assert cfg.data.augment == ABLATIONS[name].get("data.augment", base.data.augment)


def test_ablation_presets_compose_with_plain_keys_and_presets(tmp_path: Path):
    cfg = compose_config(
        ["ablation=tanh", "model.lrn=false", "experiment=imagenet_paper", "data.root=/x"],
        tmp_path,
    )
    assert cfg.model.activation == "tanh" and cfg.model.lrn is False
    assert cfg.model.arch == "alexnet"  # the experiment preset still applies


def test_slurm_preset_maps_trainer_to_tasks_gpus_and_nodes(tmp_path: Path):
    cfg = compose_config(
        [
            "hydra/launcher=submitit_slurm",
            "trainer=ddp",
            "trainer.devices=4",
            "trainer.num_nodes=3",
            "+slurm.partition=gpu",
            "hydra.launcher.timeout_min=30",
        ],
        tmp_path,
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes) == (4, 4, 3)
    assert launcher.partition == "gpu" and launcher.timeout_min == 30
    cpu = compose_config(["hydra/launcher=submitit_slurm"], tmp_path).hydra.launcher
    assert (cpu.tasks_per_node, cpu.gpus_per_node, cpu.nodes) == (1, 0, 1)


def test_local_cluster_config_is_optional_and_git_ignored():
    assert "- optional local: default" in (CONF / "train.yaml").read_text()
    if not (CONF.parent / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "conf/local/default.yaml"], cwd=CONF.parent
    )
    assert ignored.returncode == 0, "conf/local/default.yaml must be git-ignored"


def test_resume_restores_saved_config_and_applies_plain_overrides(tmp_path: Path):
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(
        {"model": {"activation": "tanh"}, "trainer": {"max_epochs": 3}, "seed": 1},
        tmp_path / ".hydra" / "config.yaml",
    )
    cfg = restore_config(tmp_path, ["trainer.max_epochs=5"])
    assert cfg.model.activation == "tanh" and cfg.trainer.max_epochs == 5 and cfg.seed == 1
    with pytest.raises(ConfigError, match="config groups"):
        restore_config(tmp_path, ["trainer=ddp"])
    with pytest.raises(ConfigError, match="no saved config"):
        restore_config(tmp_path / "nowhere", [])


def test_summary_lists_every_job_including_killed_ones(tmp_path: Path):
    for num, metrics in enumerate(
        [
            {"status": "completed", "val/acc_top1": 0.5, "epochs": 2},
            {"status": "failed", "error": "ValueError: bad\nmore lines"},
            None,  # killed before writing metrics.json
        ]
    ):
        job = tmp_path / str(num)
        (job / ".hydra").mkdir(parents=True)
        OmegaConf.save([f"seed={num}"], job / ".hydra" / "overrides.yaml")
        if metrics is not None:
            (job / "metrics.json").write_text(json.dumps(metrics))
    rows = write_summary(tmp_path)
    assert [r["status"] for r in rows] == ["completed", "failed", rows[2]["status"]]
    assert "killed" in rows[2]["status"]
    with open(tmp_path / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["overrides"] for r in table] == ["seed=0", "seed=1", "seed=2"]
    assert table[0]["val/acc_top1"] == "0.5" and table[1]["error"] == "ValueError: bad more lines"
    assert "| 1 | failed | seed=1 |" in (tmp_path / "summary.md").read_text()


def test_summary_finds_jobs_that_sweep_subdir_nests(tmp_path):
    # hydra.sweep.subdir=${arm}/seed_${seed}, as the studies run: two levels down.
    for arm, seed in (("reference", 1), ("reference", 0), ("no_lrn", 0)):
        job = tmp_path / arm / f"seed_{seed}"
        (job / ".hydra").mkdir(parents=True)
        (job / "csv").mkdir()  # a job's own subfolders are not jobs
        OmegaConf.save([f"seed={seed}"], job / ".hydra" / "overrides.yaml")
        (job / "metrics.json").write_text(json.dumps({"status": "completed", "epochs": 2}))
    rows = write_summary(tmp_path)
    assert [r["job"] for r in rows] == ["no_lrn/seed_0", "reference/seed_0", "reference/seed_1"]
    assert "3 jobs, 3 completed" in (tmp_path / "summary.md").read_text()


def flat_keys(tree: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            keys |= flat_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


def test_sweep_gives_one_named_grouped_wandb_run_per_job_and_survives_a_failure(
    tmp_path: Path,
):
    """2 ablations x 2 clipping algorithms; "bogus" makes Lightning's Trainer raise (an
    error from the code, not a UserError)."""
    result = run_entry_point(
        "train.py",
        "-m",
        "ablation=tanh,no_lrn",
        "+trainer.gradient_clip_algorithm=norm,bogus",
        *TINY,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1, "every job ran, but the sweep reports its failures"
    assert "Jobs not completed: 1, 3" in result.stdout + result.stderr
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    # Job folders only (the sweep's W&B summary run is in .summary_run/).
    jobs = sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    metrics = {j.name: json.loads((j / "metrics.json").read_text()) for j in jobs}

    with open(sweep / "summary.csv") as f:
        summary = {row["job"]: row for row in csv.DictReader(f)}
    assert (sweep / "summary.md").is_file()
    ids = set()
    for job in jobs:
        row, m = summary[job.name], metrics[job.name]
        assert row["overrides"] == " ".join(m["overrides"])
        if "+trainer.gradient_clip_algorithm=bogus" in m["overrides"]:
            assert m["status"] == row["status"] == "failed"
            assert "bogus" in m["error"] and "bogus" in row["error"]
            continue
        assert m["status"] == row["status"] == "completed" and m["epochs"] == 2
        assert float(row["val/acc_top1"]) == pytest.approx(m["val/acc_top1"], abs=1e-4)

        run = read_wandb_run(job)
        ids.add(run["run_id"])
        ablation = next(o.split("=")[1] for o in m["overrides"] if o.startswith("ablation="))
        assert run["name"].startswith(f"ablation={ablation},trainer.gradient_clip_algorithm=norm")
        assert run["state"] == "finished"
        assert run["group"] == f"quick/{sweep.name}" and run["job_type"] == "train"
        # Every key of the job's resolved config is in the W&B config.
        saved = OmegaConf.load(job / ".hydra" / "config.yaml")
        saved.paths.output_dir = str(job)  # ${hydra:...} needs a Hydra runtime
        resolved = OmegaConf.to_container(saved, resolve=True)
        assert flat_keys(resolved) <= flat_keys(run["config"])
        assert run["config"]["ablation_name"] == ablation
        assert run["config"]["paths"]["output_dir"] == str(job)
        assert f"ablation:{ablation}" in run["tags"] and "arch:alexnet_small" in run["tags"]
        assert ("activation:tanh" in run["tags"]) == (ablation == "tanh")
        assert ("no_lrn" in run["tags"]) == (ablation == "no_lrn")
        logged = set(run["summary"])
        for key in (
            "train/loss_step",
            "train/loss_epoch",
            "train/acc_top1",
            "val/loss",
            "val/acc_top1",
            "val/acc_top5",
            "lr-SGD",
            "epoch",
            "train/images_per_sec",
            "val/predictions",
            "val/confusion_matrix_table",
        ):
            assert key in logged, key
        assert run["summary"]["train/images_per_sec"] > 0
        assert len(run["summary"]["val/predictions"]["captions"]) == 16
        identity = json.loads((job / "wandb_run.json").read_text())
        assert identity["group"] == f"quick/{sweep.name}" and identity["id"] == run["run_id"]
    assert len(ids) == 2, "one W&B run per job"


@pytest.mark.parametrize("logger", ["none", "[csv,tensorboard]"])
def test_runs_without_wandb_and_with_logger_combinations(logger: str, tmp_path: Path):
    from alexnet_lab.runs import run_task
    from alexnet_lab.tasks import train

    # Not debug=fast_dev_run: under it Lightning's loggers write nothing.
    steps = ["debug=limit", "trainer.max_epochs=1", "trainer.limit_train_batches=2"]
    cfg = compose_config([*TINY, f"logger={logger}", *steps], tmp_path)
    assert run_task(train, cfg)["status"] == "completed"
    assert not (tmp_path / "wandb").exists()
    wrote = {
        "csv": (tmp_path / "csv" / "metrics.csv").is_file(),
        "tensorboard": bool(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))),
    }
    expected = {"none": set(), "[csv,tensorboard]": {"csv", "tensorboard"}}[logger]
    assert {name for name, found in wrote.items() if found} == expected
    if "csv" in expected:
        with open(tmp_path / "csv" / "metrics.csv") as f:
            assert any(row.get("train/loss_step") for row in csv.DictReader(f))


@pytest.mark.slow
def test_all_ablations_run_as_one_sweep(tmp_path: Path):
    run_entry_point(
        "train.py",
        "-m",
        "ablation=glob(*)",
        "debug=fast_dev_run",
        "logger=none",
        *TINY,
        cwd=tmp_path,
    )
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["completed"] * len(ABLATIONS)
    ran = {o.split("=")[1] for r in rows for o in r["overrides"].split() if "ablation=" in o}
    assert ran == set(ABLATIONS)
