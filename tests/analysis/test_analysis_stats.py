"""The study's statistics on synthetic numbers whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from alexnet_lab.analysis import stats


def pairs(differences, base: float = 10.0) -> tuple[dict, dict]:
    reference = {seed: base for seed in range(len(differences))}
    variant = {seed: base + d for seed, d in enumerate(differences)}
    return reference, variant


def test_paired_interval_matches_the_textbook_numbers():
    paired = stats.paired_difference(*pairs([1.0, 2.0, 3.0, 4.0, 5.0]))
    # mean 3, sd sqrt(2.5), t(0.975, 4) = 2.7764451: half-width 1.963243
    assert paired.n == 5 and paired.mean == pytest.approx(3.0)
    assert paired.sd == pytest.approx(math.sqrt(2.5))
    assert (paired.low, paired.high) == pytest.approx((1.036757, 4.963243), abs=1e-6)
    assert paired.differences == pytest.approx((1, 2, 3, 4, 5))


def test_pairs_only_seeds_both_arms_have():
    reference = {0: 1.0, 1: 2.0, 2: 3.0, 3: math.nan}
    variant = {1: 2.5, 2: 3.5, 3: 4.0, 4: 9.0}
    paired = stats.paired_difference(reference, variant)
    assert paired.seeds == (1, 2) and paired.mean == pytest.approx(0.5)
    lonely = stats.paired_difference({0: 1.0}, {0: 2.0})
    assert lonely.n == 1 and math.isnan(lonely.low)
    assert stats.paired_difference({}, {}).n == 0


def test_interval_covers_the_true_mean_at_the_stated_rate():
    rng = np.random.default_rng(20240601)
    true_mean, n, trials = 0.7, 5, 4000
    covered = 0
    for _ in range(trials):
        differences = rng.normal(true_mean, 1.3, n)
        paired = stats.paired_difference(*pairs(differences))
        covered += paired.low <= true_mean <= paired.high
    # 95% nominal; with 4,000 trials the binomial SD is 0.34 points.
    assert 0.94 <= covered / trials <= 0.96


def test_detectable_effect_is_detected_at_the_stated_power():
    n, sd = 5, 2.0
    effect = stats.detectable_effect(sd, n)
    rng = np.random.default_rng(7)
    samples = rng.normal(effect, sd, (20000, n))
    t = samples.mean(1) / (samples.std(1, ddof=1) / math.sqrt(n))
    power = np.mean(np.abs(t) > scipy_stats.t.ppf(0.975, n - 1))
    assert 0.79 <= power <= 0.81
    # Large n: the normal approximation (z 0.975 + z 0.8) * sd / sqrt(n).
    assert stats.detectable_effect(1.0, 2000) == pytest.approx(2.8016 / math.sqrt(2000), rel=2e-3)
    assert stats.detectable_effect(0.0, 5) == 0.0
    assert math.isnan(stats.detectable_effect(1.0, 1))


@pytest.mark.parametrize(
    ("differences", "paper_effect", "expected"),
    [
        ([1.0, 1.2, 0.9, 1.1, 1.0], 1.4, stats.REPRODUCED),  # excludes 0, paper's side
        ([-1.0, -1.2, -0.9, -1.1, -1.0], 1.4, stats.REVERSED),  # excludes 0, other side
        ([-1.0, -1.2, -0.9, -1.1, -1.0], -0.5, stats.REPRODUCED),  # paper: negative effect
        ([-3.0, 2.5, 1.0, -1.5, 0.5], 1.4, stats.INCONCLUSIVE),  # straddles, wider than 1.4
        ([-0.1, 0.1, 0.05, -0.05, 0.0], 1.4, stats.NO_EFFECT),  # straddles, narrower
        ([0.5], 1.4, stats.INCONCLUSIVE),  # one pair: no interval
    ],
)
def test_verdict_rule(differences, paper_effect, expected):
    assert stats.verdict(stats.paired_difference(*pairs(differences)), paper_effect) == expected


def test_bounded_verdict_keeps_only_what_the_bound_supports():
    above = stats.paired_difference(*pairs([1.0, 1.1, 0.9, 1.0, 1.2]))
    straddle = stats.paired_difference(*pairs([-0.1, 0.1, 0.05, -0.05, 0.0]))
    below = stats.paired_difference(*pairs([-1.0, -1.1, -0.9, -1.0, -1.2]))
    assert stats.bounded_verdict(above, 1.8, None) == stats.REPRODUCED
    assert stats.bounded_verdict(above, 1.8, +1) == stats.REPRODUCED  # lower bounds > 0
    assert stats.bounded_verdict(above, 1.8, -1) == stats.INCONCLUSIVE  # upper bounds > 0
    assert stats.bounded_verdict(below, 1.8, -1) == stats.REVERSED
    assert stats.bounded_verdict(straddle, 1.8, +1) == stats.INCONCLUSIVE
    assert stats.bounded_verdict(straddle, 1.8, None) == stats.NO_EFFECT
    assert stats.bounded_verdict(above, 1.8, 0) == stats.INCONCLUSIVE


def test_crossing_epoch_interpolates_and_censors():
    epochs, errors = [0, 1, 2, 3], [0.9, 0.5, 0.3, 0.2]
    assert stats.crossing_epoch(epochs, errors, 0.4) == pytest.approx(1.5)
    assert stats.crossing_epoch(epochs, errors, 0.3) == pytest.approx(2.0)
    assert stats.crossing_epoch(epochs, errors, 0.95) == 0.0
    assert math.isnan(stats.crossing_epoch(epochs, errors, 0.1))
    assert stats.crossing_epoch([0, 1, 2], [0.9, math.nan, 0.5], 0.7) == pytest.approx(1.0)


def test_censored_thresholds_are_counted_not_dropped():
    two_of_five = stats.censored([3.0, 5.0, math.nan, math.nan, math.nan], budget=12)
    assert two_of_five.describe() == "2 of 5 reached it (those: 4.0 ± 1.4; the others > 12)"
    assert stats.censored([math.nan] * 3, 12).describe() == "0 of 3 reached it (> 12)"
    assert stats.censored([2.0, 4.0], 12).describe() == "3.0 ± 1.4"


def test_one_spread_convention():
    assert stats.spread([0.1, 0.3], "{:.2f}") == "0.20 ± 0.14"  # sample SD, n - 1
    assert stats.spread([2.0]) == "2.0"
    assert stats.spread([-0.1, -0.3], "{:+.2f}") == "-0.20 ± 0.14"  # signed mean, plain SD
    assert stats.spread([math.nan]) == "—"


def test_no_paired_seeds_is_pending_not_a_verdict():
    """Grid runs without their seeds are no evidence: the rule must not call it inconclusive."""
    assert stats.verdict(stats.paired_difference({}, {}), 0.014) == stats.PENDING
