"""The claims table under the v3 rule, on fake records with known answers: censored arms
as one-sided bounds, arms run on, arms still improving, collapsed seeds, sizes, Holm, the
notes on what a comparison measures, compute counted once, and prose that may quote only
what the report generated."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers.analysis_fakes import fake_experiments, fake_job, write_ablation
from helpers.project import REPO

from alexnet_lab.analysis import fig1, runs, stats, tables
from alexnet_lab.analysis.build import generated_text, report_all
from alexnet_lab.errors import DataError


@pytest.fixture
def experiments(tmp_path: Path) -> Path:
    return fake_experiments(tmp_path)


def claims_row(table, comparison: str, claim: str = "") -> list[str]:
    """The claims-table row of one comparison (its label, maybe followed by a note), under
    the claim whose name starts with `claim`."""
    current = ""
    for row in table:
        current = row[0] or current
        label = row[3] == comparison or row[3].startswith(comparison + " (")
        if label and current.startswith(f"[{claim}"):
            return row
    raise AssertionError(f"no row {comparison!r} under {claim!r}")


def test_training_error_sits_at_the_middle_of_its_epoch(tmp_path: Path):
    # Each epoch's running mean: 50% over epoch 1, 30% over epoch 2. At the epochs' middles
    # (0.5, 1.5) the curve crosses 40% at epoch 1.0; at their ends it would be 1.5.
    folder = fake_job(tmp_path / "seed_0", [0.5, 0.3], [math.nan] * 2, ["seed=0"])
    run = runs.load_runs(folder)[0][0]
    assert fig1.epochs_to(run, 0.40) == pytest.approx(1.0)
    assert fig1.observed(run) == 1.5  # a censored seed needed more than this


def censored_tanh(experiments: Path, folder: str = "runs", errors=None) -> None:
    """Claim 1's tanh arm replaced by one that never reaches 10% in its 4 epochs."""
    condition = "default-init_unit-scale"
    tuned = experiments / f"relu_vs_tanh/{folder}/tuned/{condition}/tanh/lr0.03"
    if folder == "runs":
        shutil.rmtree(tuned)
    for seed in range(5):
        fake_job(
            tuned / f"seed_{seed}",
            errors or [0.5, 0.3, 0.2, 0.15 + 0.001 * seed],
            [np.nan] * (len(errors or [0] * 4) - 1) + [0.12],
            [
                "model.init=default",
                "data.input_scale=unit",
                "model.activation=tanh",
                "optimizer.lr=0.03",
                f"seed={seed}",
            ],
        )


def test_a_censored_arm_is_printed_as_a_one_sided_bound(experiments: Path):
    censored_tanh(experiments)
    table = report_all(experiments)
    row = claims_row(table, "init default, unit-scale inputs")
    # Every tanh seed entered at the 3.5 epochs its run observed: 3.5 / 1.5 = 2.33x is only a
    # lower bound, with no upper limit and no resolution.
    assert row[4].startswith("tanh/ReLU epochs to 10%: ≥ 2.33× (95% lower limit 2.33×), n=5")
    assert "censored: ReLU 0 of 5 in 4 epochs, tanh 5 of 5 in 4" in row[4]
    assert row[5].startswith("≥ +0.47") and row[7] == "—"
    # Exact, 0.47 of the paper's effect would be "smaller than the paper's"; a lower bound
    # can only say the effect is on the paper's side.
    assert row[8] == "reproduced"
    assert "both arms censored" not in row[3]


def test_an_arm_run_on_stands_for_its_censored_runs(experiments: Path):
    censored_tanh(experiments)
    # Run on to 6 epochs: the first 4 repeat the protocol runs, then 10% is reached at 4.5.
    censored_tanh(experiments, "runs-continued", [0.5, 0.3, 0.2, 0.15, 0.1, 0.05])
    table = report_all(experiments)
    row = claims_row(table, "init default, unit-scale inputs")
    assert row[4] == "tanh/ReLU epochs to 10%: 3.00× [3.00, 3.00], n=5"
    assert row[3].endswith("(tanh run on to 6 epochs (same lr, constant))")
    results = (experiments / "relu_vs_tanh" / "results.md").read_text()
    assert "## Arms run on" in results
    # Seeds 1-4 of the protocol ran slightly different last epochs (0.15 + 0.001 seed).
    assert "| default-init_unit-scale, tanh | 0, 1, 2, 3, 4 | 4 → 6 | 1 of 5 | 0.40 |" in results
    assert "Compute: 23 runs (5 of them run on)" in results


def write_arm(experiments: Path, folder: str, train, val, overrides, seeds=range(5)) -> None:
    for seed in seeds:
        fake_job(
            experiments / folder / f"seed_{seed}",
            train(seed),
            val(seed),
            [*overrides, f"seed={seed}"],
        )


def test_an_arm_still_improving_is_marked_and_not_judged(tmp_path: Path):
    experiments = tmp_path / "experiments"
    flat = [0.3] * 3 + [0.25] * 9
    falling = [0.3, 0.29, 0.28, 0.27, 0.26, 0.25, 0.24, 0.23, 0.22, 0.21, 0.2, 0.19]
    write_arm(experiments, "baseline/runs/reference", lambda s: [0.2] * 12, lambda s: flat, [])
    # Val error still falling 1 point an epoch: 6 points over the last 6 epochs.
    write_arm(
        experiments,
        "dropout/runs/no_dropout",
        lambda s: [0.1] * 12,
        lambda s: [v + 0.01 * s for v in falling],
        ["model.dropout=0"],
    )
    row = claims_row(report_all(experiments), "small net", "4. Dropout")
    assert row[8] == "inconclusive (still improving)"
    assert "still improving: dropout 0 (-6.00 points over its last 6 epochs)" in row[4]
    assert "still improving: reference" not in row[4]


def test_collapsed_seeds_are_counted_and_read_by_the_sign_test(tmp_path: Path):
    experiments = tmp_path / "experiments"
    write_arm(
        experiments,
        "baseline/runs/reference",
        lambda s: [0.2] * 4,
        lambda s: [0.3, 0.25, 0.2, 0.2],
        [],
    )
    # Four seeds 2-5 points worse without dropout; seed 4 collapses to chance (90%).
    write_arm(
        experiments,
        "dropout/runs/no_dropout",
        lambda s: [0.9] * 4 if s == 4 else [0.1] * 4,
        lambda s: [0.9] * 4 if s == 4 else [0.3, 0.25, 0.22 + 0.01 * s, 0.23],
        ["model.dropout=0"],
    )
    row = claims_row(report_all(experiments), "small net", "4. Dropout")
    assert "collapsed: reference (every paper switch on) 0, dropout 0 1 of 5" in row[4]
    assert "sign test 5 of 5 positive, median +3.00 points" in row[4]
    assert row[5] == "+3.00 (median)" and row[6].startswith("0.062 (")
    assert row[6].endswith("sign-test") and row[8] == "inconclusive"
    assert row[7] == "—"  # no t-test resolution where the t-interval is not read
    results = (experiments / "dropout" / "results.md").read_text()
    assert "| 1 of 5 |" in results and "| 0 of 5 |" in results  # per arm


def test_claims_table_gives_sizes_holm_and_what_a_comparison_measures(experiments: Path):
    # LRN at unit scale: 2 points worse without it, every seed.
    write_arm(
        experiments,
        "lrn/runs/small_unit/no_lrn",
        lambda s: [0.5, 0.3, 0.2, 0.15],
        lambda s: [0.42, 0.27, 0.22, 0.23],
        ["model.lrn=false"],
    )
    table = report_all(experiments)
    lrn = claims_row(table, "small net, unit-scale inputs")
    assert "(measures a fixed gain: at unit scale LRN is nearly a multiply by 0.59" in lrn[3]
    assert lrn[5].startswith("+1.4")  # about 2 points over the paper's 1.4
    dropout = claims_row(table, "small net", "4. Dropout")
    assert dropout[3] == "small net (the paper gives no number: 1 point assumed)"
    text = (experiments / "README.md").read_text()
    assert "| size vs the paper (1 = the paper's effect) | p (Holm-adjusted) |" in text
    assert "10 comparisons, 3 with a p-value" in text and "adjustment over those 3" in text
    ps = [row[6] for row in table if row[6] != "—"]
    assert len(ps) == 3 and all(p.endswith("t-test") for p in ps)


def test_compute_counts_a_shared_reference_once(tmp_path: Path):
    experiments = tmp_path / "experiments"
    write_ablation(experiments)  # 5 reference jobs of 60 s
    for arm in ("no_augment", "no_pca"):
        write_arm(
            experiments,
            f"augmentation/runs/{arm}",
            lambda s: [0.3, 0.2, 0.15, 0.1],
            lambda s: [0.35, 0.25, 0.22, 0.23],
            ["data.pca_std=0"],
        )
    row = claims_row(report_all(experiments), "small net, no crops/flips/PCA noise")
    assert row[9] == "15 min"  # 15 jobs of a minute, the reference counted once, not 20


PROSE = (
    "# Study\n\nIt measured {quote} (the rule's {verdict}).\n\n"
    "<!-- results:start -->\n{generated}\n<!-- results:end -->\n\n"
    "## v1 verdict (superseded)\n\nOld: +9.9 [+1.0, +2.0] and 3.0 ± 1.0.\n"
)


def test_prose_may_quote_only_generated_numbers(tmp_path: Path):
    generated = "| +1.39 [+0.39, +2.39], n=5 | 19.4 ± 0.9 | 1.40× |"
    readme = tmp_path / "README.md"

    def prose(quote: str, verdict: str = '"reproduced"') -> Path:
        readme.write_text(PROSE.format(quote=quote, verdict=verdict, generated=generated))
        return readme

    # What the generated block shows may be quoted, minus signs typographic or not; the
    # v1 section is history and is not checked.
    tables.check_numbers(
        prose("+1.39 [+0.39, +2.39] and 19.4 ± 0.9, 1.40×"), generated, ["reproduced"]
    )
    tables.check_numbers(prose("[+0.39, +2.39]"), generated.replace("-", "−"), ["reproduced"])
    for stale in ("+1.94 [+0.66, +3.23]", "19.5 ± 0.9", "1.41×"):
        with pytest.raises(DataError, match="quotes what no generated table shows"):
            tables.check_numbers(prose(stale), generated, ["reproduced"])
    with pytest.raises(DataError, match="the verdict 'no effect at this resolution'"):
        tables.check_numbers(
            prose("[+0.39, +2.39]", '"no effect at this resolution"'), generated, ["reproduced"]
        )
    # The generated block itself is not prose: it cannot contradict itself.
    assert tables.unsupported_quotes(generated, "", []) == [
        "line 1: [+0.39, +2.39]",
        "line 1: 19.4 ± 0.9",
        "line 1: 1.40×",
    ]
    assert (
        tables.unsupported_quotes(PROSE.format(quote="", verdict="", generated=generated), "", [])
        == []
    )


def test_report_refuses_a_readme_that_quotes_a_stale_number(experiments: Path):
    (experiments / "dropout" / "README.md").write_text(
        "intro: +4.00 [+3.00, +5.00]\n<!-- results:start -->\n<!-- results:end -->\n"
    )
    with pytest.raises(DataError, match=r"dropout/README.md: the prose quotes .*\+3.00, \+5.00"):
        report_all(experiments)
    (experiments / "dropout" / "README.md").write_text(
        "intro: +5.00 [+5.00, +5.00]\n<!-- results:start -->\n<!-- results:end -->\n"
    )
    report_all(experiments)


def test_the_committed_readmes_quote_only_generated_numbers():
    """Every number and quoted verdict in the study READMEs' prose is one `make report`
    generated from the committed records."""
    root = REPO / "experiments"
    corpus = generated_text(root)
    verdicts = [v for v in stats.VERDICTS if v in corpus]
    problems = {
        str(readme.relative_to(root)): tables.unsupported_quotes(
            readme.read_text(), corpus, verdicts
        )
        for readme in [root / "README.md", *sorted(root.glob("*/README.md"))]
    }
    assert {k: v for k, v in problems.items() if v} == {}


def test_four_layer_lrn_arms_run_on_stand_for_the_arms_once_every_seed_is_in(tmp_path):
    experiments = tmp_path / "experiments"
    every_2 = [np.nan, 0.30, np.nan, 0.28, np.nan, 0.26, np.nan, 0.24, np.nan, 0.22, np.nan, 0.2]
    # Run on to 18 epochs: the same first 12, then 0.3 points lower after the lr steps.
    settled = every_2 + [np.nan, 0.198, np.nan, 0.197, np.nan, 0.197]
    for folder, val in (("runs", every_2), ("runs-continued", settled)):
        for arm, offset in (("lrn", 0.0), ("no_lrn", 0.01)):
            seeds = range(5) if folder == "runs" else range(2)
            write_arm(
                experiments,
                f"lrn/{folder}/fig1_unit/{arm}",
                lambda s, n=len(val): [0.1] * n,
                lambda s, v=val, o=offset: [x + o + 0.001 * s for x in v],
                [f"model.lrn={arm == 'lrn'}"],
                seeds=seeds,
            )
    comparison = "four-layer net, unit-scale inputs, default init"
    row = claims_row(report_all(experiments), comparison)
    # Two seeds run on: the protocol runs, still falling 4 points in 6 epochs, still judge.
    assert row[8] == "inconclusive (still improving)"
    assert "run on: 2 of 5 seeds so far, not yet standing for the arms" in row[3]
    results = (experiments / "lrn" / "results.md").read_text()
    assert (
        "Run on so far ([Arms run on](#arms-run-on)), seeds 0, 1: +1.00 [+1.00, +1.00]" in results
    )
    # Epochs 12 to 18: 0.3 points lower, under the rule's 0.5: these seeds stopped improving.
    moving = "(val err change over their last 6 epochs, points: LRN -0.30, no LRN -0.30)"
    assert moving in results
    assert (
        "| four-layer net, unit-scale inputs, default init: LRN | 0, 1 | 12 → 18 | 2 of 2 | 0.00 |"
        in results
    )
    for arm, offset in (("lrn", 0.0), ("no_lrn", 0.01)):
        write_arm(
            experiments,
            f"lrn/runs-continued/fig1_unit/{arm}",
            lambda s: [0.1] * 18,
            lambda s, o=offset: [x + o + 0.001 * s for x in settled],
            [f"model.lrn={arm == 'lrn'}"],
            seeds=range(2, 5),
        )
    row = claims_row(report_all(experiments), comparison)
    assert "both arms run on to 18 epochs" in row[3]
    # Settled at 19.7% and 20.7%: +1 point against the paper's 2, every seed.
    assert row[4] == "+1.00 [+1.00, +1.00], n=5 points" and row[8] == "reproduced"
    at_12 = "+1.00 [+1.00, +1.00], n=5 points, inconclusive (still improving)"
    results = (experiments / "lrn" / "results.md").read_text()
    assert f"At the protocol's own end, on its runs: {at_12}" in results


def continued_jobs(tmp_path: Path, study: str, arm: str, overrides: list[str]) -> list[str]:
    """The train commands `<study>/run.sh continued` would run (PY=echo prints them), with
    the arm's committed overrides faked under tmp_path."""
    hydra = tmp_path / study / "runs" / arm / "seed_0" / ".hydra"
    hydra.mkdir(parents=True)
    lines = ["experiment=study_fig1", *overrides, "seed=0"]
    (hydra / "overrides.yaml").write_text("".join(f"- {o}\n" for o in lines))
    env = {**os.environ, "EXPERIMENTS": str(tmp_path), "PY": "echo", "SEEDS": "0"}
    script = REPO / "experiments" / study / "run.sh"
    result = subprocess.run(
        ["bash", str(script), "continued"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    refused = subprocess.run(
        ["bash", str(script), "continued"],
        env={**env, "STUDY_SCALE": "gpu"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "STUDY_SCALE=cpu" in refused.stderr
    return [line for line in result.stdout.splitlines() if "src/train.py" in line]


def test_claim_1_run_on_reruns_the_censored_arm_longer_at_its_own_lr(tmp_path: Path):
    arm = "tuned/default-init_paper-scale/tanh/lr0.01"
    overrides = ["model.init=default", "data.input_scale=paper", "model.activation=tanh"]
    (job,) = continued_jobs(tmp_path, "relu_vs_tanh", arm, [*overrides, "optimizer.lr=0.01"])
    assert " ".join(overrides) in job and "optimizer.lr=0.01 trainer.max_epochs=24" in job
    assert "experiment=study_fig1" in job and " seed=0 " in job and "scheduler" not in job
    assert f"hydra.sweep.dir={tmp_path}/relu_vs_tanh/runs-continued " in job
    assert job.endswith(f"hydra.sweep.subdir={arm}/seed_${{seed}}")


def test_lrn_run_on_adds_the_lr_steps_after_the_protocols_end(tmp_path: Path):
    overrides = ["model.init=default", "data.input_scale=unit", "optimizer.lr=0.01"]
    hydra = tmp_path / "lrn" / "runs" / "fig1_unit" / "no_lrn" / "seed_0" / ".hydra"
    hydra.mkdir(parents=True)
    (hydra / "overrides.yaml").write_text("- model.lrn=False\n")
    jobs = continued_jobs(tmp_path, "lrn", "fig1_unit/lrn", ["model.lrn=True", *overrides])
    assert len(jobs) == 2  # LRN and no LRN, seed 0
    assert "model.lrn=True model.init=default" in jobs[0] and "model.lrn=False" in jobs[1]
    for job in jobs:
        assert "scheduler=multistep scheduler.milestones=[12,15] trainer.max_epochs=20" in job
        assert f"hydra.sweep.dir={tmp_path}/lrn/runs-continued " in job
