"""`make bench`: its paired rounds, intervals, verdicts and adaptive stop on synthetic
timings whose answers are known (fake clocks); what the loop's default callbacks do per
step (counted, never timed); and `make bench-quick` end to end (no timing asserted)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import lightning as L
import pytest
import torch
from helpers.project import REPO, run_make
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from alexnet_lab.analysis import stats
from alexnet_lab.bench.common import TARGETS, BenchConfig
from alexnet_lab.bench.loop_callbacks import HookProfile
from alexnet_lab.bench.paired import (
    BUDGET,
    CONVERGED,
    FAILS,
    MAX_ROUNDS,
    MEETS,
    UNDECIDED,
    Budget,
    Ratio,
    judge,
    note,
    ratio_result,
    run_rounds,
    timed,
)
from alexnet_lab.bench.suite import exit_status
from alexnet_lab.bench.training import LoopRuns, loop_configurations
from alexnet_lab.errors import TrainingDivergedError
from alexnet_lab.training.checkpoints import StopOnNonFiniteLoss

# --- statistics and rounds, fake clocks ------------------------------------------------


class FakeClock:
    """Wall time that moves only when a contender runs: `cost` seconds per run."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def contender(rates, clock: FakeClock | None = None, cost: float = 10.0, log=None, name=""):
    values = iter(rates)

    def run() -> float:
        if clock is not None:
            clock.now += cost
        if log is not None:
            log.append(name)
        return next(values)

    return run


def test_log_ratio_interval_is_the_t_interval_of_the_logs():
    interval = stats.log_ratio_interval([math.exp(0.1), math.exp(0.2), math.exp(0.3)])
    # mean log 0.2, sd 0.1, t(0.975, 2) = 4.302653: half-width 0.248414 on the log scale
    assert interval.n == 3 and interval.mean == pytest.approx(math.exp(0.2))
    assert interval.sd == pytest.approx(0.1)
    assert (interval.low, interval.high) == pytest.approx((0.9527395, 1.5658265), abs=1e-6)
    with pytest.raises(ValueError, match="must be > 0"):
        stats.log_ratio_interval([1.0, 0.0])


def test_rounds_alternate_the_order_and_pair_rates_of_the_same_round():
    order: list[str] = []
    contenders = {
        "a": contender([200, 210, 190, 200], log=order, name="a"),
        "b": contender([100, 105, 95, 100], log=order, name="b"),
    }
    rounds = run_rounds(contenders, {"a/b": Ratio("a", "b")}, Budget(4, 4, math.inf))
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]
    result = ratio_result(rounds, Ratio("a", "b", goal=1.5))
    assert result["pairs"] == [[200, 100], [210, 105], [190, 95], [200, 100]]  # every pair
    assert result["value"] == result["low"] == result["high"] == pytest.approx(2.0)
    assert result["verdict"] == MEETS and rounds.stopped == CONVERGED


def test_rounds_stop_at_the_minimum_once_every_ratio_is_within_3_percent():
    clock = FakeClock()
    contenders = {
        "a": contender(itertools.repeat(300.0), clock),
        "b": contender(itertools.repeat(100.0), clock),
    }
    rounds = run_rounds(contenders, {"r": Ratio("a", "b")}, Budget(3, 50, 1000.0), clock)
    assert rounds.count == 3 and rounds.stopped == CONVERGED and rounds.seconds == 60.0


def test_a_ratio_known_to_3_percent_but_straddling_its_goal_gets_rounds_until_decided():
    """Pair ratios 1.02, 0.98, ...: known to ±3% after 5 rounds, when the interval still
    holds the goal 0.98; rounds go on while time is left, until the low end clears it. A
    ratio without a goal stops at 5."""
    ratios = itertools.cycle([102.0, 98.0])
    with_goal = run_rounds(
        {"a": contender(ratios), "b": contender(itertools.repeat(100.0))},
        {"r": Ratio("a", "b", goal=0.98)},
        Budget(3, 50, math.inf),
    )
    result = ratio_result(with_goal, Ratio("a", "b", goal=0.98))
    assert with_goal.stopped == CONVERGED and result["verdict"] == MEETS
    assert with_goal.count > 5 and result["half_width"] < 0.03
    without_goal = run_rounds(
        {"a": contender(itertools.cycle([102.0, 98.0])), "b": contender(itertools.repeat(100.0))},
        {"r": Ratio("a", "b")},
        Budget(3, 50, math.inf),
    )
    assert without_goal.count == 5 and without_goal.stopped == CONVERGED


def test_a_noisy_ratio_stops_when_the_next_round_would_pass_the_budget():
    clock = FakeClock()  # 10 s per run, 20 s per round: a 6th round would end at 120 s > 100 s
    contenders = {
        "a": contender(itertools.cycle([300.0, 200 / 1.5]), clock),
        "b": contender(itertools.repeat(100.0), clock),
    }
    ratio = Ratio("a", "b", goal=2.0)
    rounds = run_rounds(contenders, {"r": ratio}, Budget(3, 50, 100.0), clock)
    assert rounds.count == 5 and rounds.stopped == BUDGET
    result = ratio_result(rounds, ratio)
    # per-pair ratios 2 x 1.5^(+1, -1, +1, -1, +1): their logs' t-interval, computed by hand
    assert result["value"] == pytest.approx(2.16894, abs=1e-4)
    assert (result["low"], result["high"]) == pytest.approx((1.24949, 3.76498), abs=1e-4)
    assert result["half_width"] == pytest.approx(0.73586, abs=1e-4)
    assert result["verdict"] == UNDECIDED
    assert note(result) == "too noisy to tell: ±74%"


def test_without_a_time_limit_rounds_stop_at_max_rounds():
    contenders = {
        "a": contender(itertools.cycle([300.0, 200.0])),
        "b": contender(itertools.repeat(100.0)),
    }
    rounds = run_rounds(contenders, {"r": Ratio("a", "b")}, Budget(2, 7, math.inf))
    assert rounds.count == 7 and rounds.stopped == MAX_ROUNDS


def test_a_contender_may_give_several_named_rates_from_one_run():
    contenders = {
        "a": contender([{"a": 200.0, "a_all": 150.0}] * 2),
        "b": contender([100.0] * 2),
    }
    rounds = run_rounds(contenders, {"r": Ratio("a_all", "b")}, Budget(2, 2, math.inf))
    assert rounds.rates == {"a": [200.0, 200.0], "a_all": [150.0, 150.0], "b": [100.0, 100.0]}


def test_the_verdict_comes_from_the_interval_ends():
    def interval(low: float, high: float) -> stats.Interval:
        return stats.Interval(5, math.sqrt(low * high), 0.1, low, high)

    assert judge(interval(0.97, 1.02), 0.97) == MEETS  # the low end reaches the goal
    assert judge(interval(0.90, 0.969), 0.97) == FAILS  # the high end is below it
    assert judge(interval(0.95, 1.00), 0.97) == UNDECIDED
    assert judge(stats.Interval(1, 1.0, math.nan, math.nan, math.nan), 0.97) == UNDECIDED
    assert judge(interval(0.5, 0.6), None) is None


def test_an_open_ratio_says_whether_it_is_noisy_or_at_its_goal():
    open_ratio = {"verdict": UNDECIDED, "stopped": BUDGET}
    assert note({**open_ratio, "half_width": 0.07}) == "too noisy to tell: ±7%"
    assert note({**open_ratio, "half_width": 0.002}) == "within ±0.2% of the goal"
    assert note({**open_ratio, "verdict": MEETS, "half_width": 0.05}) == "budget reached at ±5%"
    assert note({**open_ratio, "stopped": CONVERGED, "half_width": 0.01}) == ""
    assert note({**open_ratio, "half_width": None}) == "too few pairs to tell"


def test_budget_needs_two_rounds_for_an_interval():
    with pytest.raises(ValueError, match="an interval needs two pairs"):
        Budget(min_rounds=1)


def test_timed_is_items_per_second_by_the_given_clock():
    ticks = iter([10.0, 12.0])
    assert timed(lambda: 50, lambda: next(ticks))() == 25.0


def ratio_with(verdict: str | None) -> dict:
    return {"value": 1.0, "low": 0.9, "high": 1.1, "pairs": [], "verdict": verdict}


def test_bench_fails_only_on_a_decided_failure_of_a_full_run():
    results = {"mode": "full", **{key: ratio_with(MEETS) for key in TARGETS}}
    assert exit_status(results) == 0
    results["loop_vs_raw_pytorch"] = ratio_with(UNDECIDED)
    assert exit_status(results) == 0
    results["pipeline_vs_decode_only"] = ratio_with(FAILS)
    assert exit_status(results) == 1
    assert exit_status({**results, "mode": "quick"}) == 0  # toy sizes judge nothing


# --- the training loop's default callbacks ----------------------------------------------


@pytest.fixture(scope="module")
def loop_runs(tmp_path_factory) -> LoopRuns:
    cfg = BenchConfig.preset(quick=True, device="cpu")
    return LoopRuns(cfg, tmp_path_factory.mktemp("loop"))


def test_the_bench_runs_the_callbacks_train_builds(loop_runs: LoopRuns):
    configured = OmegaConf.load(REPO / "conf" / "callbacks" / "default.yaml")
    # lr_monitor needs a logger (build_callbacks leaves it out without one)
    expected = [key for key in configured if key != "lr_monitor"]
    extra = ["interrupt_checkpoint", "seed_per_rank"]
    assert loop_runs.names == [*expected, *extra]
    configs = loop_configurations(loop_runs.names)
    assert configs["default"] == loop_runs.names and configs["none"] == []
    assert configs["without stall_guard"] == [n for n in loop_runs.names if n != "stall_guard"]
    assert len(configs) == len(loop_runs.names) + 2


def test_nothing_in_the_default_loop_reads_a_device_value_every_step(loop_runs: LoopRuns):
    """A host read (.item(), bool() of a tensor) is a device sync on a GPU: the loop with
    its default callbacks (the module, Lightning, the progress bar, the project's callbacks)
    may make one every few steps, never every step. Counted, not timed."""
    profile = HookProfile()
    steps = 50
    with profile.counting_host_reads():
        loop_runs.lightning(
            loop_runs.names, steps=steps - loop_runs.cfg.loop_warmup, profile=profile
        )
    per_step = {
        f"{row['callback']}.{row['hook']}": row["host_reads_per_step"]
        for row in profile.table(steps)
    }
    assert "stop_on_nonfinite_loss.on_train_batch_end" in per_step
    # the bar shows the loss, read every 10 steps (conf: log_every_n_steps, refresh_rate)
    assert per_step["progress_bar.on_train_batch_end"] >= 0.05
    per_step.update(profile.loop_table(steps))  # the module, its metrics and Lightning
    assert all(reads <= 0.2 for reads in per_step.values()), per_step


class Sleeper(L.Callback):
    """A callback whose batch-end hook costs `seconds` on a fake clock."""

    def __init__(self, clock: FakeClock, seconds: float):
        self.clock, self.seconds = clock, seconds

    def on_train_batch_end(self, *args, **kwargs):
        self.clock.now += self.seconds


def test_each_callback_s_share_of_a_step_is_its_own_time_flagged_above_1_percent():
    clock = FakeClock()
    profile = HookProfile(clock=clock)
    heavy, light = Sleeper(clock, 0.002), Sleeper(clock, 0.0005)
    profile.wrap("heavy", heavy)
    profile.wrap("light", light)
    for _ in range(10):  # ten steps of 100 ms
        heavy.on_train_batch_end()
        light.on_train_batch_end()
    shares = {row["callback"]: row for row in profile.callback_shares(10, step_s=0.1)}
    assert shares["heavy"]["share_of_step"] == pytest.approx(0.02)
    assert shares["heavy"]["us_per_step"] == pytest.approx(2000.0)
    assert shares["heavy"]["over_limit"] and not shares["light"]["over_limit"]
    assert shares["light"]["share_of_step"] == pytest.approx(0.005)


class LossTurnsNaN(L.LightningModule):
    def __init__(self, from_batch: int):
        super().__init__()
        self.layer, self.from_batch = torch.nn.Linear(2, 1), from_batch

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).square().mean()
        return loss * math.nan if batch_idx >= self.from_batch else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_nan_loss_is_named_by_its_step_before_a_checkpoint_stores_it(tmp_path: Path):
    """Checked every 10 steps only, the NaN from step 3 still stops the run at the step-5
    checkpoint, before that file is written, and the error names step 3."""
    steps = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=5, save_top_k=-1)
    trainer = L.Trainer(
        max_steps=20,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[StopOnNonFiniteLoss(every_n_steps=10), steps],
    )
    data = DataLoader(TensorDataset(torch.randn(20, 2)), batch_size=1)
    with pytest.raises(TrainingDivergedError, match=r"became nan at step 3 \(epoch 0, batch 3;"):
        trainer.fit(LossTurnsNaN(from_batch=3), train_dataloaders=data)
    assert list(tmp_path.glob("*.ckpt")) == []


# --- make bench-quick ------------------------------------------------------------------


def test_bench_quick_smoke_writes_every_ratio_with_its_pairs(tmp_path: Path):
    """A smoke test: every figure is there, every ratio an interval object with its pairs;
    no rate is compared to a bound."""
    result = run_make("bench-quick", tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "pipeline_speedup_vs_torchvision" in result.stdout  # the table
    assert "without stop_on_nonfinite_loss" in result.stdout  # the loop's callback table
    (path,) = (tmp_path / "outputs" / "bench").glob("bench-quick-*.json")
    figures = json.loads(path.read_text())
    for key in TARGETS:
        ratio = figures[key]
        assert {"value", "low", "high", "pairs", "verdict"} <= set(ratio), key
        assert ratio["value"] > 0 and len(ratio["pairs"]) >= 2, key
        assert ratio["low"] <= ratio["value"] <= ratio["high"], key
        assert ratio["verdict"] in (MEETS, FAILS, UNDECIDED), key
    rows = {row["configuration"]: row for row in figures["loop_callbacks"]}
    assert {"default", "none", "without stall_guard"} <= set(rows)
    # the headline ratio has rounds of its own: the default loop and raw PyTorch only
    headline = figures["loop"]["headline"]["images_per_s_each_round"]
    assert set(headline) == {"default", "raw_pytorch"}
    assert len(figures["loop_vs_raw_pytorch"]["pairs"]) == len(headline["default"])
    shares = {row["callback"]: row for row in figures["loop"]["callback_profile"]["callbacks"]}
    assert {"progress_bar", "stall_guard", "interrupt_checkpoint"} <= set(shares)
    assert all(len(row["vs_raw_pytorch"]["pairs"]) >= 2 for row in rows.values())
    profiled = {row["callback"] for row in figures["loop"]["callback_profile"]["rows"]}
    assert {"stop_on_nonfinite_loss", "stall_guard", "interrupt_checkpoint"} <= profiled
    rates = figures["pipeline"]["images_per_s_per_core"]
    assert set(rates) >= {"decode_only", "torchvision_recipe", "project", "prepared"}
    assert all(rate > 0 for rate in rates.values())
    assert figures["prepare"]["converted"] > 0 and figures["prepare"]["failed"] == 0
    assert figures["prepare"]["images_per_s_per_core"] > 0
    model_rows = figures["models"]["rows"]
    assert {(r["dtype"], r["channels_last"]) for r in model_rows} == {
        ("fp32", False),
        ("fp32", True),
        ("bf16", False),
        ("bf16", True),
    }
    assert all(r["images_per_s"] > 0 and r["gflop_per_step"] > 0 for r in model_rows)
    assert figures["machine"]["device"] == "cpu"
