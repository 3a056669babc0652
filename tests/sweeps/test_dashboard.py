"""What W&B and TensorBoard show of a run and of a sweep: summaries and x-axes read back
from offline runs, checkpoint and dataset artifacts, TensorBoard's images and confusion
matrix, the sweep's summary run, and the report spec of src/dashboard.py. Offline: nothing
here reaches the network (a saved report is mocked)."""

from __future__ import annotations

import csv
import importlib.util
import json
import socket
from pathlib import Path

import pytest
from helpers.fakes import fake_sweep
from helpers.project import (
    TINY,
    compose_config,
    folder_overrides,
    make_image_folder,
    run_entry_point,
)
from helpers.wandb_offline import leet_inspect, read_wandb_run
from omegaconf import OmegaConf

from alexnet_lab.errors import ConfigError
from alexnet_lab.jobs.naming import IDENTITY_FILE
from alexnet_lab.runs import run_task
from alexnet_lab.sweeps import report as sweep_report
from alexnet_lab.tasks import train
from alexnet_lab.tracking.wandb_run import dataset_identity

needs_workspaces = pytest.mark.skipif(
    importlib.util.find_spec("wandb_workspaces") is None,
    reason="the dashboards extra: pip install -e '.[dashboards]'",
)


def wandb_records(job_dir: Path) -> list[dict]:
    (run_file,) = job_dir.glob("wandb/offline-run-*/run-*.wandb")
    return [json.loads(line) for line in leet_inspect(run_file).splitlines() if line]


def test_wandb_run_summaries_axes_model_aliases_and_dataset(tmp_path: Path):
    root = make_image_folder(tmp_path / "photos", per_class=4)
    overrides = folder_overrides(root, epochs=2)
    overrides = [o for o in overrides if not o.startswith("logger=")] + [
        "logger=wandb",
        "logger.wandb.log_model=true",
        "logger.wandb.log_dataset=true",
        "callbacks.step_checkpoint.every_n_train_steps=1",  # rolling checkpoints, many
    ]
    job = tmp_path / "run"
    assert run_task(train, compose_config(overrides, job))["status"] == "completed"
    summary = read_wandb_run(job)["summary"]
    for key in ("val/acc_top1", "val/acc_top5"):
        assert set(summary[key]) == {"max"}  # W&B's summary of the key: its best epoch
        assert summary[key]["max"] == summary[f"best/{key}"] >= summary[f"final/{key}"]
    assert summary["val/loss"] == {"min": summary["best/val/loss"]}
    assert summary["best/val/loss"] <= summary["final/val/loss"]
    assert summary["best/val/acc_top1"] == pytest.approx(
        json.loads((job / "metrics.json").read_text())["best/val/acc_top1"]
    )

    records = wandb_records(job)
    metrics = [r["metric"] for r in records if r["type"] == "metric"]
    axes = {m["name"]: m for m in metrics if "name" in m}  # not Lightning's glob "*"
    for key in ("val/acc_top1", "val/loss", "train/loss_epoch", "train/acc_top1", "lr-SGD"):
        assert axes[key]["step_metric"] == "epoch", key
    assert axes["val/acc_top1"]["summary"] == {"max": True}
    assert axes["val/loss"]["summary"] == {"min": True}
    assert "train/loss_step" not in axes  # Lightning's default: trainer/global_step

    artifacts = [r["artifact"] for r in records if r["type"] == "artifact"]
    models = [a for a in artifacts if a["type"] == "model"]
    files = [json.loads(a["metadata"])["original_filename"] for a in models]
    aliases = {name: set(a["aliases"]) for name, a in zip(files, models, strict=True)}
    best = Path(json.loads((job / "metrics.json").read_text())["best_checkpoint"]).name
    assert aliases == {best: {"latest", "best"}, "last.ckpt": {"latest"}}  # no step checkpoint
    assert files[-1] == "last.ckpt"  # logged last: `latest` ends on it
    (dataset,) = [a for a in artifacts if a["type"] == "dataset"]
    identity = json.loads(dataset["metadata"])
    assert identity["root"] == str(root) and dataset["name"] == "dataset-photos"
    assert identity["classes"] == ["n01440764", "n01443537", "n01484850"]
    assert identity["file_count"] == 24  # 3 classes x 4 images x train and val
    assert (
        read_wandb_run(job)["config"]["dataset"]["file_list_sha256"]
        == (identity["file_list_sha256"])
    )


def test_dataset_identity_changes_with_the_files(tmp_path: Path):
    from alexnet_lab.data import ImageFolderDataModule

    root = make_image_folder(tmp_path / "photos", per_class=2)

    def identity() -> dict:
        datamodule = ImageFolderDataModule(str(root), crop_size=24)
        datamodule.setup("fit")
        return dataset_identity(datamodule)

    before = identity()
    assert before["file_count"] == 12 and before == identity()
    (root / "val" / "n01440764" / "n01440764_0000.JPEG").rename(root / "val" / "extra.JPEG")
    after = identity()
    assert after["file_count"] == 11 and after["file_list_sha256"] != before["file_list_sha256"]


def test_tensorboard_gets_the_same_names_images_and_confusion_matrix(tmp_path: Path):
    pytest.importorskip("tensorboard", reason="the dashboards extra: tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = compose_config([*TINY, "logger=tensorboard"], tmp_path)
    assert run_task(train, cfg)["status"] == "completed"
    events = EventAccumulator(str(tmp_path / "tensorboard"), {"images": 0, "tensors": 0})
    tags = events.Reload().Tags()
    wandb_names = {"val/acc_top1", "val/acc_top5", "val/loss", "train/loss_epoch", "lr-SGD"}
    assert wandb_names | {"train/loss_step", "train/images_per_sec"} <= set(tags["scalars"])
    assert "hp_metric" not in tags["scalars"]
    assert set(tags["images"]) == {"val/predictions", "val/confusion_matrix"}
    grid = events.Images("val/predictions")[-1]
    assert grid.width == grid.height == 4 * (32 + 2) + 2  # 4 x 4 images of 32 px, padded
    text = events.Tensors("val/confusion_matrix/text_summary")[-1].tensor_proto.string_val[0]
    table = text.decode().splitlines()
    assert len(table) == 2 + 10 and table[2].startswith("| class_0000 | ")
    counts = [int(c) for line in table[2:] for c in line.strip("|").split("|")[1:]]
    assert sum(counts) == 32  # every validation image once (data.val_size=32)
    captions = events.Tensors("val/predictions/text_summary")[-1].tensor_proto.string_val[0]
    assert captions.decode().count("/ true class_") == 16


# ------------------------------------------------------------ the report


def wandb_sweep(sweep: Path, group: str = "quick/2026-01-01_00-00-00-000000") -> Path:
    """A sweep folder as a W&B sweep leaves it (no training): two arms, two seeds."""
    jobs = [
        ([f"ablation={arm}", f"seed={seed}", "model.dropout=0.3"], {"val/acc_top1": acc})
        for arm, seed, acc in [("baseline", 1, 0.5), ("baseline", 2, 0.6), ("tanh", 1, 0.4)]
    ]
    fake_sweep(sweep, [*jobs, (["ablation=tanh", "seed=2", "model.dropout=0.3"], None)])
    for num, (overrides, _) in enumerate(jobs):
        job = sweep / str(num)
        identity = {"id": f"run{num}", "name": ",".join(overrides), "group": group}
        (job / IDENTITY_FILE).write_text(json.dumps(identity))
        config = {
            "seed": int(overrides[1][5:]),
            "ablation_name": overrides[0][9:],
            "model": {"dropout": 0.3, "arch": "alexnet_small"},
            "logger": {"wandb": {"project": "my-lab", "entity": None}},
        }
        OmegaConf.save(config, job / ".hydra" / "config.yaml")
        (job / "wandb" / f"offline-run-20260101_000000-run{num}").mkdir(parents=True)
    (sweep / "summary.md").write_text("# Sweep x\n\n## Seeds aggregated\n\n| arm |\n")
    return sweep


def test_the_summary_run_holds_the_aggregate_once_per_sweep(tmp_path: Path):
    from alexnet_lab.sweeps.summary import collect_jobs

    sweep = wandb_sweep(tmp_path / "sweep")
    for _ in range(2):  # a sweep finished later: the same summary run, updated
        sweep_report.log_summary_run(sweep, collect_jobs(sweep))
    folder = sweep / sweep_report.SUMMARY_RUN_DIR
    run_id = json.loads((folder / IDENTITY_FILE).read_text())["id"]
    segments = sorted(folder.glob("wandb/offline-run-*"))
    assert len(segments) == 2 and all(run_id in s.name for s in segments)
    (run_file,) = segments[-1].glob("run-*.wandb")
    summary = json.loads(leet_inspect(run_file, "--summary"))["summary"]
    table = summary["sweep/aggregate"]  # baseline and tanh: 5 columns + 7 for val/acc_top1
    assert (table["nrows"], table["ncols"]) == (2, 12)
    records = [json.loads(line) for line in leet_inspect(run_file).splitlines() if line]
    run = next(r["run"] for r in records if r["type"] == "run")
    assert run["run_group"] == "quick/2026-01-01_00-00-00-000000" and run["job_type"] == "summary"


def panels_and_runsets(spec: dict) -> tuple[list[dict], list[dict]]:
    grids = [b["metadata"] for b in spec["spec"]["blocks"] if b["type"] == "panel-grid"]
    panels = [p for grid in grids for p in grid["panelBankSectionConfig"]["panels"]]
    return panels, [rs for grid in grids for rs in grid["runSets"]]


@needs_workspaces
def test_report_spec_groups_by_arm_and_filters_the_sweep(tmp_path: Path):
    group = "quick/2026-01-01_00-00-00-000000"
    view = sweep_report.describe_sweep(wandb_sweep(tmp_path / "sweep", group))
    assert view.swept == {"ablation": "ablation_name", "seed": "seed"}  # dropout: not swept
    spec = sweep_report.report_spec(sweep_report.build_report(view, entity="me"))
    assert spec["project"] == {"name": "my-lab", "entityName": "me"}
    panels, runsets = panels_and_runsets(spec)
    assert [p["viewType"] for p in panels] == [
        "Run History Line Plot",
        "Run History Line Plot",
        "Bar Chart",
        "Parallel Coordinates Plot",
        "Weave",
    ]
    curves, bars, parallel = panels[:2], panels[2], panels[3]
    assert [(c["config"]["xAxis"], c["config"]["metrics"]) for c in curves] == [
        ("epoch", ["val/acc_top1"]),
        ("epoch", ["train/loss_epoch"]),
    ]
    for panel in (*curves, bars):  # per arm, mean with a band of 1 SD over seeds
        config = panel["config"]
        assert (config["groupBy"], config["groupAgg"], config["groupArea"]) == (
            "arm.value",
            "mean",
            "stddev",
        )
    assert bars["config"]["metrics"] == ["summary_metrics.best/val/acc_top1"]
    assert [c["accessor"] for c in parallel["config"]["columns"]] == [
        "config:ablation_name.value",
        "config:seed.value",
        "summary:best/val/acc_top1",
        "summary:final/val/acc_top1",
    ]
    assert '"sweep/aggregate"' in json.dumps(panels[4])
    jobs, summary = runsets
    assert jobs["grouping"] == [{"section": "config", "name": "arm.value"}]
    for runset, job_type in ((jobs, "train"), (summary, "summary")):
        filters = {f["key"]["name"]: (f["op"], f["value"]) for f in runset["filters"]["filters"]}
        assert filters == {"group": ("=", group), "jobType": ("=", job_type)}
    (markdown,) = [b for b in spec["spec"]["blocks"] if b["type"] == "markdown-block"]
    assert markdown["content"] == (tmp_path / "sweep" / "summary.md").read_text()


def publish_config(**keys) -> OmegaConf:
    return OmegaConf.create({"sweep_dir": None, "group": None, "entity": None, **keys})


@needs_workspaces
def test_offline_writes_the_spec_beside_the_sweep_and_sends_nothing(tmp_path, monkeypatch):
    import wandb_workspaces.reports.v2 as wr

    sweep = wandb_sweep(tmp_path / "sweep")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(wr.Report, "save", lambda *a, **k: pytest.fail("sent offline"))
    result = sweep_report.publish(publish_config(sweep_dir=str(sweep), entity="me"))
    assert result["offline"] == "WANDB_MODE=offline" and "url" not in result
    spec = json.loads((sweep / "dashboard.json").read_text())
    assert spec["project"] == {"name": "my-lab", "entityName": "me"}
    panels, runsets = panels_and_runsets(spec)
    assert len(panels) == 5 and all("project" not in rs for rs in runsets)  # no look-up


def no_network(*args, **kwargs):
    raise AssertionError("a test tried to reach the network")


@needs_workspaces
def test_online_with_wandbs_report_api_mocked_saves_and_a_failure_leaves_the_spec(
    tmp_path, monkeypatch
):
    """W&B's report API is mocked entirely (the project look-up of the run sets, save, the
    report's URL): what is checked is this project's code around it, not W&B's."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.reports.v2.interface as wr_interface

    sweep = wandb_sweep(tmp_path / "sweep")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr(wr_interface, "_get_api", lambda: None)
    lookups = []

    def project_lookup(api, query, variables):
        lookups.append(variables)
        return {"project": {"internalId": "P1"}}

    monkeypatch.setattr(wr_interface, "execute_graphql", project_lookup)
    saved = []
    monkeypatch.setattr(wr.Report, "save", lambda self, **k: saved.append(self) or self)
    monkeypatch.setattr(wr.Report, "url", property(lambda self: f"https://w.example/{self.title}"))
    result = sweep_report.publish(publish_config(sweep_dir=str(sweep), entity="me"))
    assert result["url"] == "https://w.example/Sweep quick/2026-01-01_00-00-00-000000"
    assert len(saved) == 1 and "offline" not in result
    assert lookups == [{"entityName": "me", "projectName": "my-lab"}] * 2  # the two run sets
    runsets = panels_and_runsets(json.loads((sweep / "dashboard.json").read_text()))[1]
    assert [rs["project"]["id"] for rs in runsets] == ["P1", "P1"]

    def refused(self, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(wr.Report, "save", refused)
    result = sweep_report.publish(publish_config(sweep_dir=str(sweep), entity="me"))
    assert result["offline"] == "W&B not reached: ConnectionError: no route to host"
    assert (sweep / "dashboard.json").is_file()


def test_a_group_finds_its_sweep_and_bad_input_says_what_to_do(tmp_path: Path):
    group = "quick/2026-01-01_00-00-00-000000"
    sweep = wandb_sweep(tmp_path / "outputs" / "train" / "multiruns" / Path(group).name)
    paths = {"log_dir": str(tmp_path / "outputs")}
    assert sweep_report.find_sweep(publish_config(group=group, paths=paths)) == sweep
    with pytest.raises(ConfigError, match="no sweep folder"):
        sweep_report.find_sweep(publish_config(group="quick/other", paths=paths))
    with pytest.raises(ConfigError, match="Pass sweep_dir=DIR"):
        sweep_report.find_sweep(publish_config(paths=paths))
    with pytest.raises(ConfigError, match="does not exist"):
        sweep_report.find_sweep(publish_config(sweep_dir=str(tmp_path / "nope")))
    no_wandb = fake_sweep(tmp_path / "csv_sweep", [(["seed=1"], {"val/acc_top1": 0.5})])
    with pytest.raises(ConfigError, match="logger=wandb"):
        sweep_report.describe_sweep(no_wandb)


# ------------------------------------------------------------ a real sweep


@needs_workspaces
@pytest.mark.slow
def test_a_real_sweep_gets_its_aggregate_summary_run_and_report(tmp_path: Path):
    """2 arms x 2 seeds, W&B offline: the aggregate in summary.md, aggregate.csv and a W&B
    summary run of the group; then src/dashboard.py: one line, exit 0, the spec."""
    run_entry_point("train.py", "-m", "ablation=baseline,tanh", "seed=1,2", *TINY, cwd=tmp_path)
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    with open(sweep / "aggregate.csv") as f:
        arms = {row["label"]: row for row in csv.DictReader(f)}
    assert set(arms) == {"ablation=baseline", "ablation=tanh"}
    assert [arms[a]["n"] for a in sorted(arms)] == ["2", "2"]
    assert arms["ablation=tanh"]["val/acc_top1 pairs"] == "2"
    assert "| ablation=baseline (reference) | 2 | 1 2 |" in (sweep / "summary.md").read_text()

    runs = {
        job.name: read_wandb_run(job) for job in sweep.iterdir() if (job / "metrics.json").is_file()
    }
    for run in runs.values():
        assert {"best/val/acc_top1", "final/val/acc_top1", "best/val/loss"} <= set(run["summary"])
        assert run["config"]["arm"] in {row["arm"] for row in arms.values()}
    summary_run = read_wandb_run(sweep / sweep_report.SUMMARY_RUN_DIR)
    assert summary_run["job_type"] == "summary"
    assert summary_run["group"] == runs["0"]["group"] == f"quick/{sweep.name}"
    table = summary_run["summary"]["sweep/aggregate"]
    assert (table["nrows"], table["ncols"]) == (2, len(next(iter(arms.values()))))

    result = run_entry_point("dashboard.py", f"sweep_dir={sweep}", cwd=tmp_path)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "Offline (WANDB_MODE=offline)" in lines[0], lines
    spec = json.loads((sweep / "dashboard.json").read_text())
    panels, runsets = panels_and_runsets(spec)
    assert len(panels) == 5 and len(runsets) == 2
    assert runsets[0]["filters"]["filters"][0]["value"] == f"quick/{sweep.name}"
    assert "## Seeds aggregated" in json.dumps(spec)
