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

    def bounded(paired, effect, bound):
        return stats.judge(paired, effect, bound=bound).verdict

    assert bounded(above, 1.8, None) == stats.REPRODUCED
    assert bounded(above, 1.8, +1) == stats.REPRODUCED  # lower bounds > 0
    assert bounded(above, 1.8, -1) == stats.INCONCLUSIVE  # upper bounds > 0
    assert bounded(below, 1.8, -1) == stats.REVERSED
    assert bounded(straddle, 1.8, +1) == stats.INCONCLUSIVE
    assert bounded(straddle, 1.8, None) == stats.NO_EFFECT
    assert bounded(above, 1.8, 0) == stats.INCONCLUSIVE


def test_a_censored_comparison_is_a_one_sided_bound():
    """Every tanh seed censored: each log ratio is a lower bound, so the interval's upper
    end bounds nothing. The verdict may only be on the bound's side, and the size only a
    lower bound: never 'smaller than the paper's' or 'no effect'."""
    small = stats.paired_difference(*pairs([0.20, 0.25, 0.30, 0.20, 0.25]))
    judged = stats.judge(small, math.log(6), bound=+1)
    assert judged.verdict == stats.REPRODUCED  # unbounded: it may be as large as the paper's
    assert stats.judge(small, math.log(6)).verdict == stats.SMALLER  # the same numbers, exact
    assert judged.size_bound == +1 and judged.size.high == math.inf
    assert judged.size.mean == pytest.approx(0.24 / math.log(6))
    assert judged.size.low == pytest.approx(small.low / math.log(6))
    # A lower bound on a difference whose paper sign is negative bounds its size from above.
    assert stats.judge(small, -1.0, bound=+1).size_bound == -1
    assert stats.judge(small, -1.0, bound=+1).verdict == stats.REVERSED
    straddle = stats.paired_difference(*pairs([-0.1, 0.1, 0.05, -0.05, 0.0]))
    assert stats.judge(straddle, 1.4, bound=+1).verdict == stats.INCONCLUSIVE  # not no effect


@pytest.mark.parametrize(
    ("differences", "paper_effect", "expected"),
    [
        # Excludes 0 on the paper's side, but its far end (about 0.30) is short of half
        # the paper's 1.4: smaller than the paper's.
        ([0.20, 0.25, 0.30, 0.20, 0.25], 1.4, stats.SMALLER),
        # Far end about 0.81, past 0.7: an effect half the paper's is within it.
        ([0.60, 0.70, 0.80, 0.65, 0.75], 1.4, stats.REPRODUCED),
        # Contains 0, narrower than the paper's 1.7, but admits a reversed effect of about
        # 1.1, more than half the paper's: inconclusive, not "no effect".
        ([-1.1, -0.2, -0.9, 0.3, -0.6], 1.7, stats.INCONCLUSIVE),
        # Contains 0 and both ends within 0.85 of it: no effect at this resolution.
        ([-0.3, 0.1, -0.2, 0.2, -0.1], 1.7, stats.NO_EFFECT),
    ],
)
def test_the_size_condition(differences, paper_effect, expected):
    assert stats.judge(stats.paired_difference(*pairs(differences)), paper_effect).verdict == (
        expected
    )


def test_size_is_our_effect_over_the_papers():
    paired = stats.paired_difference(*pairs([1.0, 2.0, 3.0, 4.0, 5.0]))
    size = stats.judge(paired, 6.0).size
    assert (size.mean, size.low, size.high) == pytest.approx(
        (0.5, 1.036757 / 6, 4.963243 / 6), abs=1e-6
    )
    reversed_size = stats.judge(paired, -6.0).size  # the other direction: negative
    assert (reversed_size.mean, reversed_size.low, reversed_size.high) == pytest.approx(
        (-0.5, -4.963243 / 6, -1.036757 / 6), abs=1e-6
    )
    # Claim 1 on the log scale: 1.22x against 6x is about a ninth of the paper's effect.
    ratio = stats.paired_difference(*pairs([math.log(1.22)] * 3 + [math.log(1.21), 0.195]))
    assert stats.judge(ratio, math.log(6)).size.mean == pytest.approx(0.11, abs=0.005)


def test_p_values_are_the_paired_t_tests():
    differences = [0.3, -0.1, 0.5, 0.2, 0.4]
    judged = stats.judge(stats.paired_difference(*pairs(differences)), 1.0)
    assert judged.test == "t"
    assert judged.p == pytest.approx(scipy_stats.ttest_1samp(differences, 0.0).pvalue)


def test_a_bimodal_arm_is_read_by_the_sign_test():
    """One seed collapsed to chance: the t-interval describes no population, so the rule
    reads the sign test and the median; with 5 seeds p cannot go below 2/2**5."""
    five = stats.paired_difference(*pairs([5.6, 8.0, 11.5, 12.5, 70.2]))
    judged = stats.judge(five, 1.4, collapsed=1)
    assert judged.test == "sign" and judged.p == pytest.approx(0.0625)
    assert judged.median == pytest.approx(11.5) and judged.verdict == stats.INCONCLUSIVE
    assert judged.size.mean == pytest.approx(11.5 / 1.4) and math.isnan(judged.size.low)
    # Six seeds on one side: p = 2/2**6 < 0.05, whatever the outlier does to the mean.
    six = stats.paired_difference(*pairs([5.0, 6.0, 7.0, 8.0, 9.0, 200.0]))
    assert stats.judge(six, 1.4).verdict == stats.INCONCLUSIVE  # the t-interval straddles 0
    judged = stats.judge(six, 1.4, collapsed=1)
    assert judged.p == pytest.approx(0.03125) and judged.verdict == stats.REPRODUCED
    assert stats.judge(six, -1.4, collapsed=1).verdict == stats.REVERSED


def test_an_arm_still_improving_is_not_judged():
    above = stats.paired_difference(*pairs([1.0, 1.1, 0.9, 1.0, 1.2]))
    assert stats.judge(above, 1.4, still_improving=True).verdict == stats.STILL_IMPROVING
    assert stats.still_improving(-0.0051) and not stats.still_improving(-0.0049)
    assert not stats.still_improving(math.nan) and not stats.still_improving(0.01)


def test_holm_adjusts_over_the_comparisons_that_have_a_p_value():
    # Sorted: 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to 0.06 (monotone).
    adjusted = stats.holm([0.01, 0.04, 0.03, math.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([]) == []


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
    assert stats.judge(stats.paired_difference({}, {}), 0.014, still_improving=True).verdict == (
        stats.PENDING
    )
