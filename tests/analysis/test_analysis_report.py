"""The report on fake study records: tables with known numbers, reproducible files, nothing
touched without runs, claim 1's lr search, and prose that may not contradict the rule."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.analysis_fakes import CLAIMS_README, fake_experiments, fake_job

from alexnet_lab.analysis import ablation, cli, fig1, lr_search, runs
from alexnet_lab.analysis.build import pending_table, report_all
from alexnet_lab.analysis.specs import FIG1_CONDITIONS, LR_LADDER, MAX_GRID
from alexnet_lab.errors import DataError


@pytest.fixture
def experiments(tmp_path: Path) -> Path:
    return fake_experiments(tmp_path)


def generated_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.glob("**/*"))
        if p.is_file() and "runs" not in p.parts
    }


def test_report_tables_carry_the_rules_verdicts(experiments: Path):
    table = report_all(experiments)
    dropout = (experiments / "dropout" / "results.md").read_text()
    # Val error at the held-out best epoch: 20% with dropout (epoch 3), 25% without (2).
    assert "| dropout 0 | 5 | 1,000 | 5000 | 25.0 ± 0.1 | 2 ± 0 |" in dropout
    # The noise is shared by each seed's pair, so every paired difference is 5 points.
    assert "| +5.00 [+5.00, +5.00], n=5 points | 0.00 |" in dropout
    assert dropout.count("reproduced") == 1
    assert "25.0 ± 0.1" in (experiments / "dropout" / "README.md").read_text()
    fig1 = (experiments / "relu_vs_tanh" / "results.md").read_text()
    # Each epoch's running mean sits at its middle: ReLU reaches 10% at epoch 1.5, tanh at
    # 3.5, 7/3x for every seed: log(7/3) / log 6 = 0.47 of the paper's effect, short of half.
    assert "| default-init_unit-scale | relu | 0.03 | 5 | 4 | 0.8 ± 0.0 | 1.5 ± 0.0 |" in fig1
    assert "2.33× [2.33, 2.33], n=5 — smaller than the paper's" in fig1
    assert "0 of 5 reached it (> 3.5)" in fig1  # tanh never reaches 5%: censored, counted
    for png in (
        "dropout/curves.png",
        "relu_vs_tanh/fig1_train_error.png",
        "relu_vs_tanh/lr_grid.png",
        "relu_vs_tanh/speedup.png",
    ):
        assert (experiments / png).stat().st_size > 5000
    claims = (experiments / "README.md").read_text()
    assert "OLD" not in claims and claims.endswith("kept\n")
    verdicts = {row[3]: row[8] for row in table}
    assert verdicts["small net (the paper gives no number: 1 point assumed)"] == "reproduced"
    assert verdicts["init default, unit-scale inputs"] == "smaller than the paper's"
    assert verdicts["small net, paper-scale inputs, default init"] == "runs pending"
    # A study without runs keeps what it had.
    assert (experiments / "lrn" / "results.md").read_text() == "an earlier study's results\n"


def test_report_is_byte_for_byte_reproducible(experiments: Path, tmp_path: Path):
    report_all(experiments)
    first = generated_files(experiments)
    clone = tmp_path / "clone"
    shutil.copytree(experiments, clone)
    report_all(clone)  # over its own output, as make report on a fresh clone
    assert generated_files(clone) == first


def test_report_without_runs_changes_nothing(tmp_path: Path, capsys):
    root = tmp_path / "experiments"
    (root / "dropout").mkdir(parents=True)
    (root / "README.md").write_text(CLAIMS_README)
    (root / "dropout" / "results.md").write_text("committed results\n")
    before = generated_files(root)
    cli.main(["--experiments", str(root), "report"])
    assert "nothing regenerated" in capsys.readouterr().out
    assert generated_files(root) == before


def test_a_kept_first_pass_lists_only_what_it_ran(experiments: Path):
    # The ablation's runs moved to the first pass's folder, as claims 2-6's 24-epoch runs did.
    for study in ("baseline", "dropout"):
        (experiments / study / "runs").rename(experiments / study / "runs-24ep")
    table = report_all(experiments, "cpu-24ep")
    # No claim-1 or pending rows: dropout's comparison, whose effect the paper gives no number.
    assert [row[3] for row in table] == ["small net (the paper gives no number: 1 point assumed)"]
    assert table[0][8] == "reproduced" and table[0][0].startswith("[4. Dropout]")
    first_pass = (experiments / "dropout" / "results-24ep.md").read_text()
    assert "first pass: 24 epochs" in first_pass and "curves-24ep.png" in first_pass
    # It never writes over today's claims table.
    assert (experiments / "README.md").read_text() == CLAIMS_README
    # Today's protocol has no claim-4 runs yet: its row says so.
    dropout = next(row for row in report_all(experiments, "cpu") if "Dropout" in row[0])
    assert dropout[4] == dropout[8] == "runs pending"


def test_late_change_says_whether_an_arm_has_stopped_improving(tmp_path: Path):
    # Validated every 3 epochs of 12: 30% at epoch 3, 24% at 6, 21% at 9, 20.5% at 12.
    val = [np.nan, np.nan, 0.30, np.nan, np.nan, 0.24, np.nan, np.nan, 0.21, np.nan, np.nan, 0.205]
    folder = fake_job(tmp_path / "seed_0", [0.3] * 12, val, ["seed=0"])
    m = ablation.measure(runs.load_runs(folder)[0][0])
    # Epoch 12 against the last validation at least 6 epochs before (epoch 6): -3.5 points.
    assert m.late_change == pytest.approx(0.205 - 0.24)
    short = fake_job(tmp_path / "seed_1", [0.3] * 3, val[:3], ["seed=1"])
    assert math.isnan(ablation.measure(runs.load_runs(short)[0][0]).late_change)  # nothing earlier


def test_hand_written_verdict_may_not_contradict_the_rule(experiments: Path):
    (experiments / "dropout" / "README.md").write_text(
        "**Verdict:** no difference resolved, whatever the interval says\n"
    )
    with pytest.raises(DataError, match="names none of the verdicts"):
        report_all(experiments)


def test_pending_table_lists_every_comparison():
    table = pending_table()
    assert table.count("runs pending") == 2 * 10  # ours and verdict, ten comparisons
    assert "Mishkin" in table and "Simonyan" in table


def test_compact_history_keeps_one_row_per_epoch(tmp_path: Path):
    job = tmp_path / "job"
    (job / "csv").mkdir(parents=True)
    rows = [
        {"epoch": 0, "step": 4, "train/loss_step": 2.0},
        {"epoch": 0, "step": 9, "val/acc_top1": 0.5, "val/loss": 1.5, "holdout/acc_top1": 0.6},
        {"epoch": 0, "step": 9, "train/acc_top1": 0.4, "train/loss_epoch": 1.8},
        {"epoch": 1, "step": 19, "train/acc_top1": 0.7, "train/loss_epoch": 1.0},
    ]
    pd.DataFrame(rows).to_csv(job / "csv" / "metrics.csv", index=False)
    (job / "metrics.json").write_text('{"status": "completed", "overrides": ["seed=3"]}')
    assert runs.compact_all(tmp_path) == 1 and runs.compact_all(tmp_path) == 0
    history = pd.read_csv(job / "history.csv")
    assert history.columns.tolist() == runs.HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2]
    assert history["train_acc"].tolist() == [0.4, 0.7]
    assert history["holdout_acc"].iloc[0] == 0.6 and math.isnan(history["val_acc"].iloc[1])
    (loaded,), _ = runs.load_runs(tmp_path)
    assert loaded.seed == 3


def grid_job(root: Path, condition, activation: str, lr: float, level: float) -> None:
    overrides = [*condition.overrides.split(), f"optimizer.lr={lr:g}", "seed=0"]
    fake_job(
        root / lr_search.arm_folder("grid", condition, activation, lr) / "seed_0",
        [level] * 2,
        [math.nan] * 2,
        overrides,
    )


def test_lr_search_extends_the_grid_until_the_best_lr_is_bracketed(tmp_path: Path):
    condition = FIG1_CONDITIONS[-1]  # kaiming init, unit scale
    start = condition.start_grid
    plan = lr_search.plan_grid(tmp_path)
    assert len(plan) == 2 * sum(len(c.start_grid) for c in FIG1_CONDITIONS)
    assert plan[0].split()[0] == "grid/paper-init_paper-scale/relu/lr0.0003"
    # The fastest lr at the top edge: one step further up is planned.
    for i, lr in enumerate(start):
        grid_job(tmp_path, condition, "relu", lr, level=0.5 - 0.05 * i)
    extension = [line for line in lr_search.plan_grid(tmp_path) if condition.name in line]
    assert [line.split()[0] for line in extension if "/relu/" in line] == [
        f"grid/{condition.name}/relu/lr0.3"
    ]
    assert "optimizer.lr=0.3" in extension[0] and "model.activation=relu" in extension[0]
    # A diverged job at 0.3 (recorded as failed) is worse than any: now bracketed.
    fake_job(
        tmp_path / f"grid/{condition.name}/relu/lr0.3/seed_0",
        [0.9],
        [math.nan],
        ["optimizer.lr=0.3", "seed=0"],
        status="failed",
    )
    assert not [line for line in lr_search.plan_grid(tmp_path) if f"{condition.name}/relu" in line]
    assert lr_search.tuned_lrs(tmp_path)[(condition.name, "relu")] == (0.1, True)
    assert lr_search.tuned_overrides(tmp_path, condition.name, "relu") == "optimizer.lr=0.1"
    tuned = [line for line in lr_search.plan_tuned(tmp_path) if "/relu/" in line]
    assert tuned == [
        f"tuned/{condition.name}/relu/lr0.1 {condition.overrides} model.activation=relu "
        "optimizer.lr=0.1"
    ]


def test_lr_search_stops_at_the_cap_and_marks_the_edge(tmp_path: Path):
    condition = FIG1_CONDITIONS[-1]
    lrs = [lr for lr in LR_LADDER if lr <= 0.1][-MAX_GRID:]
    # Faster at every larger lr: the best sits at the top edge of a full grid.
    for i, lr in enumerate(lrs):
        grid_job(tmp_path, condition, "tanh", lr, level=0.9 - 0.05 * i)
    assert not [line for line in lr_search.plan_grid(tmp_path) if f"{condition.name}/tanh" in line]
    assert lr_search.tuned_lrs(tmp_path)[(condition.name, "tanh")] == (0.1, False)


def test_speedup_says_when_neither_arm_reached_the_level(tmp_path: Path):
    def arm(activation: str, errors: list[float]) -> list:
        for seed in range(3):
            fake_job(
                tmp_path / activation / f"seed_{seed}",
                errors,
                [math.nan] * len(errors),
                [f"model.activation={activation}", f"seed={seed}"],
            )
        return runs.load_runs(tmp_path / activation)[0]

    relu, tanh = arm("relu", [0.3, 0.2, 0.15]), arm("tanh", [0.4, 0.3, 0.2])
    text, judged, _, _ = fig1.speedup_cell(relu, tanh, 0.10)
    # Not "1.00x [1.00, 1.00]": both arms censored at the run length say nothing.
    assert text == "neither reached it (ReLU 0 of 3 in 3 epochs, tanh 0 of 3 in 3)"
    assert judged.verdict == "inconclusive" and judged.paired.n == 0
    # Mid-epoch points: ReLU reaches 25% at epoch 1.0, tanh at 2.0: 2x for every seed.
    text, judged, _, _ = fig1.speedup_cell(relu, tanh, 0.25)
    assert text == "2.00× [2.00, 2.00], n=3" and judged.paired.n == 3


def test_continued_runs_show_whether_the_reference_kept_improving(tmp_path: Path):
    experiments = tmp_path / "experiments"
    readme = experiments / "baseline" / "README.md"
    val = [np.nan, np.nan, 0.30, np.nan, np.nan, 0.24, np.nan, np.nan, 0.21, np.nan, np.nan, 0.20]
    more = [np.nan, np.nan, 0.195, np.nan, np.nan, 0.19]  # epochs 13-18: one point off in all
    for seed in range(5):
        fake_job(
            experiments / f"baseline/runs/reference/seed_{seed}", [0.3] * 12, val, [f"seed={seed}"]
        )
        start = val if seed < 4 else [v + 0.01 for v in val]  # seed 4 is not the same job
        fake_job(
            experiments / f"baseline/runs-48ep/reference/seed_{seed}",
            [0.3] * 18,
            start + more,
            [f"seed={seed}", "trainer.max_epochs=18"],
        )
    readme.write_text("kept\n<!-- continued:start -->\nOLD\n<!-- continued:end -->\nkept\n")
    report_all(experiments)
    text = readme.read_text()
    assert "seeds 0, 1, 2, 3, 4 run to epoch 18" in text
    assert "for 4 of 5 seeds (differing: 4)" in text
    # From the protocol's last 6 epochs on; the change is paired against epoch 12.
    assert "| 6 | 24.2 ± 0.4 | — |" in text  # seed 4 starts a point higher
    assert "| 12 | 20.2 ± 0.4 | — |" in text
    assert "| 15 | 19.5 ± 0.0 | -0.70 [-1.26, -0.14], n=5 |" in text
    assert "| 18 | 19.0 ± 0.0 | -1.20 [-1.76, -0.64], n=5 |" in text
    assert "| 3 |" not in text and text.startswith("kept\n") and text.endswith("kept\n")
    # Without continued runs the block is left as it is.
    shutil.rmtree(experiments / "baseline" / "runs-48ep")
    report_all(experiments)
    assert readme.read_text() == text
