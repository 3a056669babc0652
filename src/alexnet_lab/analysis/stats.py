"""The study's statistics: paired differences, their 95% t-interval, the minimum detectable
effect, the verdict rule and censored thresholds. Written once here and stated in
experiments/README.md; every table and figure uses these functions, and so does every
sweep's seed aggregate (alexnet_lab.sweeps.aggregate: an arm's mean with its t-interval).

Spread convention (one for every table and figure): an arm's value over seeds is its mean
± the sample standard deviation (n - 1); a figure's band is the same ± 1 SD; a
comparison between arms is the mean paired difference with its 95% t-interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.80

# The verdicts, exactly as experiments/README.md states the rule.
REPRODUCED = "reproduced"
REVERSED = "reversed"
INCONCLUSIVE = "inconclusive"
PENDING = "runs pending"  # no paired seeds yet: no evidence either way
NO_EFFECT = "no effect at this resolution"


@dataclass(frozen=True)
class Interval:
    """A mean over n values with its t-interval (NaN bounds with fewer than two)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """mean ± t(n-1) · sd / sqrt(n) of the values that are not NaN."""
    kept = np.array([v for v in values if not math.isnan(v)], dtype=float)
    n = len(kept)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(kept.mean())
    if n < 2:
        return Interval(1, mean, math.nan, math.nan, math.nan)
    sd = float(kept.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(n, mean, sd, mean - half, mean + half)


@dataclass(frozen=True)
class Paired:
    """Mean of (variant - reference) over the seeds both arms ran, with its t-interval."""

    n: int
    mean: float
    sd: float  # of the paired differences
    low: float
    high: float
    differences: tuple[float, ...]  # one per seed, in seed order
    seeds: tuple[int, ...]

    @property
    def width(self) -> float:
        return self.high - self.low


def paired_difference(
    reference: Mapping[int, float], variant: Mapping[int, float], confidence: float = CONFIDENCE
) -> Paired:
    """Pairs by seed: only seeds present (and not NaN) in both arms count. The interval is
    mean ± t(n-1) · sd / sqrt(n); NaN bounds with fewer than two pairs."""
    seeds = tuple(
        sorted(
            s
            for s in set(reference) & set(variant)
            if not (math.isnan(reference[s]) or math.isnan(variant[s]))
        )
    )
    diffs = [float(variant[s] - reference[s]) for s in seeds]
    i = mean_interval(diffs, confidence)
    return Paired(i.n, i.mean, i.sd, i.low, i.high, tuple(diffs), seeds)


def detectable_effect(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable effect of a two-sided paired t-test with n pairs whose
    differences have standard deviation sd: the true mean difference that the test
    rejects with probability `power` at level alpha (noncentral t)."""
    if n < 2 or math.isnan(sd):
        return math.nan
    if sd == 0:
        return 0.0
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(noncentrality: float) -> float:
        rejected = stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(
            -critical, df, noncentrality
        )
        # scipy's noncentral t returns NaN far in its tail, where the power is 1.
        return (1.0 if math.isnan(rejected) else rejected) - power

    high = 1.0
    while shortfall(high) < 0:  # the power grows with the noncentrality: bracket the root
        high *= 2
    noncentrality = optimize.brentq(shortfall, 0.0, high, xtol=1e-10)
    return float(noncentrality * sd / math.sqrt(n))


def verdict(paired: Paired, paper_effect: float) -> str:
    """The rule, from the interval of (switched off - reference), or of whatever difference
    the study defines, in the units of `paper_effect`, whose sign is the paper's direction:

    - reproduced: the interval excludes 0 on the paper's side;
    - reversed: it excludes 0 on the other side;
    - inconclusive: it contains 0 and is wider (high - low) than |paper_effect|;
    - no effect at this resolution: it contains 0 and is narrower, so an effect of the
      paper's size would have lain outside it.
    """
    if paired.n == 0:
        return PENDING
    if paired.n < 2 or math.isnan(paired.low):
        return INCONCLUSIVE
    direction = math.copysign(1.0, paper_effect)
    if paired.low > 0 or paired.high < 0:
        return REPRODUCED if paired.mean * direction > 0 else REVERSED
    return INCONCLUSIVE if paired.width > abs(paper_effect) else NO_EFFECT


# ------------------------------------------------------------ censored thresholds


def crossing_epoch(epochs: Sequence[float], values: Sequence[float], threshold: float) -> float:
    """The (fractional) epoch at which a curve first reaches `threshold` or below,
    interpolated linearly from the last point above it; NaN when it never does
    (censored: the run ended first). The first point may be epoch 0 (the start)."""
    previous = None
    for epoch, value in zip(epochs, values, strict=True):
        if not math.isnan(value) and value <= threshold + 1e-9:  # 1 - acc rounding
            if previous is None or previous[1] == value:
                return float(epoch)
            (e0, v0), (e1, v1) = previous, (epoch, value)
            return float(e0 + (v0 - threshold) / (v0 - v1) * (e1 - e0))
        if not math.isnan(value):
            previous = (epoch, value)
    return math.nan


@dataclass(frozen=True)
class Censored:
    """Epochs to a threshold over seeds, keeping the seeds that never got there."""

    reached: tuple[float, ...]
    total: int
    budget: float  # the run length: a censored seed needs more than this

    @property
    def all_reached(self) -> bool:
        return len(self.reached) == self.total

    def describe(self, fmt: str = "{:.1f}") -> str:
        """'4.2 ± 0.3' when every seed got there, else 'k of n seeds reached it' with the
        mean of those k and the budget the others exceeded."""
        if self.total == 0:
            return "—"
        if not self.reached:
            return f"0 of {self.total} reached it (> {self.budget:g})"
        text = spread(self.reached, fmt)
        if not self.all_reached:
            text = (
                f"{len(self.reached)} of {self.total} reached it (those: {text}; "
                f"the others > {self.budget:g})"
            )
        return text


def censored(values: Sequence[float], budget: float) -> Censored:
    return Censored(tuple(v for v in values if not math.isnan(v)), len(values), budget)


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """The one spread convention: 'mean ± SD' over seeds (just the value when n = 1)."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    text = fmt.format(float(np.mean(values)))
    if len(values) > 1:
        sd_fmt = fmt.replace("{:+", "{:")  # a signed mean ('+1.20'), an unsigned SD
        text += " ± " + sd_fmt.format(float(np.std(values, ddof=1)))
    return text


def bounded_verdict(paired: Paired, paper_effect: float, bound: int | None) -> str:
    """The rule when some differences are only bounds (a censored threshold entered as the
    run length). bound: None when none is; +1 when every bounded difference is a lower
    bound on the true one, -1 when every one is an upper bound, 0 when mixed. A bound
    supports only a verdict on its own side of 0; anything else is inconclusive."""
    if bound is None:
        return verdict(paired, paper_effect)
    if paired.n == 0:
        return PENDING
    if paired.n < 2 or math.isnan(paired.low):
        return INCONCLUSIVE
    direction = math.copysign(1.0, paper_effect)
    if bound > 0 and paired.low > 0:
        return REPRODUCED if direction > 0 else REVERSED
    if bound < 0 and paired.high < 0:
        return REPRODUCED if direction < 0 else REVERSED
    return INCONCLUSIVE


def log_ratio_interval(ratios: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The geometric mean of positive ratios with its t-interval taken on their logs, as
    claim 1 does: exp(mean ± t(n-1) · sd / sqrt(n)) of log(ratio). `sd` stays on the log
    scale. NaN bounds with fewer than two ratios."""
    if any(not r > 0 for r in ratios):
        raise ValueError(f"log_ratio_interval: every ratio must be > 0, got {list(ratios)}")
    i = mean_interval([math.log(r) for r in ratios], confidence)
    return Interval(i.n, math.exp(i.mean), i.sd, math.exp(i.low), math.exp(i.high))
