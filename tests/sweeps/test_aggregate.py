"""A sweep's seeds aggregated per arm (alexnet_lab.sweeps.aggregate), on fake sweep folders
whose numbers are known: the arms, the t-intervals, the paired differences, the files."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from helpers.fakes import fake_sweep

from alexnet_lab.analysis import stats
from alexnet_lab.jobs.naming import arm_name
from alexnet_lab.sweeps.aggregate import aggregate
from alexnet_lab.sweeps.summary import collect_jobs, write_summary

# t(0.975, 2) = 4.302653: the half-width of a 3-seed interval is 4.302653 * sd / sqrt(3).
T_975_2 = 4.302653


def ablation_sweep(tmp_path: Path) -> Path:
    """tanh listed first, baseline second (the reference all the same); one job failed,
    one killed; a common override that every arm shares."""
    accuracy = {("tanh", 1): 0.50, ("tanh", 2): 0.62, ("tanh", 3): 0.71}
    accuracy |= {("baseline", 1): 0.56, ("baseline", 2): 0.67, ("baseline", 3): 0.77}
    jobs = []
    for ablation in ("tanh", "baseline"):
        for seed in (1, 2, 3):
            acc = accuracy[(ablation, seed)]
            metrics = {"val/acc_top1": acc, "val/loss": 2 - acc, "epochs": 2}
            jobs.append(([f"ablation={ablation}", f"seed={seed}", "data=synthetic"], metrics))
    jobs.append((["ablation=no_lrn", "seed=1", "data=synthetic"], None))  # killed
    jobs.append((["ablation=no_lrn", "seed=2", "data=synthetic"], {"status": "failed"}))
    return fake_sweep(tmp_path / "sweep", jobs)


def test_arms_are_the_overrides_but_the_seed_and_where_things_go():
    assert arm_name(["ablation=tanh", "seed=3", "logger=csv", "hydra.sweep.dir=/x"]) == (
        "ablation=tanh"
    )
    # Other data is another arm (data.root is left out of run names, not out of arms).
    assert arm_name(["data.root=/a", "seed=1"]) == "data.root=/a"
    assert arm_name(["+trainer.seed_offset=2", "seed=1"]) == "trainer.seed_offset=2"
    assert arm_name(["seed=1"]) == "defaults"


def test_mean_interval_is_the_textbook_t_interval():
    interval = stats.mean_interval([0.5, 0.6, 0.7, math.nan])
    half = T_975_2 * 0.1 / math.sqrt(3)
    assert interval.n == 3 and interval.mean == pytest.approx(0.6)
    assert (interval.low, interval.high) == pytest.approx((0.6 - half, 0.6 + half), abs=1e-6)
    single = stats.mean_interval([0.4])
    assert single.n == 1 and single.mean == 0.4 and math.isnan(single.low)


def test_aggregate_per_arm_with_paired_differences_to_the_baseline(tmp_path: Path):
    agg = aggregate(collect_jobs(ablation_sweep(tmp_path)))
    assert [a.label for a in agg.arms] == ["ablation=tanh", "ablation=baseline"]
    assert agg.common == ["data=synthetic"] and agg.metrics == ["val/acc_top1", "val/loss"]
    tanh, baseline = agg.arms
    assert baseline.is_reference and not tanh.is_reference
    assert tanh.arm.seeds == [1, 2, 3] and len(baseline.arm.jobs) == 3  # no failed/killed
    assert tanh.means["val/acc_top1"] == stats.mean_interval([0.50, 0.62, 0.71])
    # Paired by seed: differences -0.06, -0.05, -0.06: mean -0.056667, sd 0.0057735.
    diff = tanh.differences["val/acc_top1"]
    mean, half = -0.17 / 3, T_975_2 * 0.0057735 / math.sqrt(3)
    assert diff.n == 3 and diff.seeds == (1, 2, 3) and diff.mean == pytest.approx(mean)
    assert (diff.low, diff.high) == pytest.approx((mean - half, mean + half), abs=1e-5)
    assert diff.high < 0, "tanh is worse on every seed by about as much: 0 is outside"
    assert tanh.differences["val/loss"].mean == pytest.approx(-mean)
    assert baseline.differences["val/acc_top1"] is None


def test_no_baseline_means_the_first_arm_and_unpaired_seeds_say_so(tmp_path: Path):
    jobs = [
        (["model.lrn=true", "seed=1"], {"val/acc_top1": 0.5}),
        (["model.lrn=true", "seed=2"], {"val/acc_top1": 0.6}),
        (["model.lrn=false", "seed=3"], {"val/acc_top1": 0.4}),
        (["model.lrn=false", "seed=4"], {"val/acc_top1": 0.5}),
    ]
    agg = aggregate(collect_jobs(fake_sweep(tmp_path / "sweep", jobs)))
    assert agg.reference.label == "model.lrn=true"
    assert agg.arms[1].differences["val/acc_top1"] is None  # no seed in common


def test_summary_md_and_aggregate_csv_carry_the_table(tmp_path: Path):
    sweep = ablation_sweep(tmp_path)
    write_summary(sweep)
    text = (sweep / "summary.md").read_text()
    assert "## Seeds aggregated" in text and "`data=synthetic`" in text
    (tanh_line,) = [line for line in text.splitlines() if line.startswith("| ablation=tanh |")]
    cells = [c.strip() for c in tanh_line.strip("|").split("|")]
    assert cells[:3] == ["ablation=tanh", "3", "1 2 3"]
    assert cells[3].startswith("0.61 [") and cells[4].startswith("-0.05667 [-0.07")
    assert "| ablation=baseline (reference) | 3 |" in text

    with open(sweep / "aggregate.csv") as f:
        rows = {row["label"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"ablation=tanh", "ablation=baseline"}
    tanh = rows["ablation=tanh"]
    assert tanh["arm"] == "ablation=tanh,data=synthetic"  # = the runs' W&B config `arm`
    assert tanh["n"] == "3" and tanh["val/acc_top1 pairs"] == "3"
    assert float(tanh["val/acc_top1 diff"]) == pytest.approx(-0.05667, abs=1e-4)
    assert rows["ablation=baseline"]["reference"] == "True"
    assert rows["ablation=baseline"]["val/acc_top1 diff"] == ""
    # The per-job table is untouched: one row per job, failed and killed ones included.
    with open(sweep / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == 8


def test_a_sweep_with_no_completed_job_still_gets_its_summary(tmp_path: Path):
    sweep = fake_sweep(tmp_path / "sweep", [(["seed=1"], None)])
    write_summary(sweep)
    assert "No completed job yet." in (sweep / "summary.md").read_text()
