"""The study's statistics: paired differences, their 95% t-interval, the minimum detectable
effect, the verdict rule (`judge`: size condition, convergence, collapsed seeds, censored
bounds), Holm's family-wise adjustment and censored thresholds. Written once here and stated in
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
SMALLER = "smaller than the paper's"
REVERSED = "reversed"
INCONCLUSIVE = "inconclusive"
STILL_IMPROVING = "inconclusive (still improving)"
PENDING = "runs pending"  # no paired seeds yet: no evidence either way
NO_EFFECT = "no effect at this resolution"
VERDICTS = (REPRODUCED, SMALLER, REVERSED, INCONCLUSIVE, STILL_IMPROVING, NO_EFFECT, PENDING)
# The size condition: "reproduced" needs an effect of this fraction of the paper's within
# the interval; "no effect" needs both ends within it.
SIZE_FRACTION = 0.5
# An arm whose val error fell by more than this (a fraction: 0.5 points) over its last
# epochs is still improving, and its comparison is not judged.
IMPROVING = 0.005
LATE = 6  # ... over its last LATE epochs: the change from the last validation LATE before
# A seed whose training error ended at or above this (10 classes: chance is 0.9) collapsed.
COLLAPSED_ERROR = 0.85


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


@dataclass(frozen=True)
class Size:
    """Our effect over the paper's (same units, the paper's sign): 1 is the paper's effect,
    0 none, negative the other direction. low/high: the interval divided the same way (NaN
    where the rule reads no interval; infinite on the side a bound leaves open)."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Judgement:
    """The rule's reading of one comparison (experiments/README.md, "How a verdict is
    reached")."""

    verdict: str
    paired: Paired
    size: Size
    p: float  # two-sided: the paired t-test's, or the sign test's (test says which)
    test: str  # "t", "sign" or "" (nothing to test)
    median: float
    bound: int | None  # the paired values' bound direction (see judge)
    collapsed: int  # seeds that collapsed, both arms together

    @property
    def size_bound(self) -> int | None:
        """+1 when the size is only a lower bound, -1 an upper one, None when exact."""
        if self.size.high == math.inf:
            return +1
        return -1 if self.size.low == -math.inf else None


def still_improving(late_change: float) -> bool:
    """Whether an arm's mean val-error change over its last epochs (negative: falling) is
    more than the rule allows."""
    return not math.isnan(late_change) and late_change < -IMPROVING


def sign_test(differences: Sequence[float]) -> float:
    """Exact two-sided sign test of a zero median; zero differences are dropped."""
    positive = sum(d > 0 for d in differences)
    nonzero = sum(d != 0 for d in differences)
    return float(stats.binomtest(positive, nonzero, 0.5).pvalue) if nonzero else math.nan


def t_test(paired: Paired) -> float:
    """Two-sided p of the paired t-test of a zero mean difference."""
    if paired.n < 2 or math.isnan(paired.sd):
        return math.nan
    if paired.sd == 0:
        return 0.0 if paired.mean != 0 else 1.0
    t = paired.mean / (paired.sd / math.sqrt(paired.n))
    return float(2 * stats.t.sf(abs(t), paired.n - 1))


def judge(
    paired: Paired,
    paper_effect: float,
    *,
    bound: int | None = None,
    still_improving: bool = False,
    collapsed: int = 0,
) -> Judgement:
    """The verdict rule, in its order, on the paired differences (variant - reference, or
    whatever the study defines) in the units of `paper_effect`, whose sign is the paper's:

    1. runs pending: no paired seeds;
    2. inconclusive (still improving): an arm has not stopped improving;
    3. collapsed seeds in either arm: the exact sign test and the median replace the
       t-interval; reproduced / reversed when p < ALPHA on the median's side;
    4. bound (censored seeds): +1 when every bounded difference is a lower bound on the
       true one, -1 an upper bound, 0 mixed. Only a verdict on the bound's side: reproduced
       or reversed when the interval's limit on that side excludes 0, else inconclusive;
    5. the 95% interval: reproduced when it excludes 0 on the paper's side and its far end
       reaches SIZE_FRACTION of the paper's effect; smaller than the paper's when it
       excludes 0 on that side and that fraction too; reversed when it excludes 0 on the
       other side; no effect at this resolution when it contains 0 with both ends within
       SIZE_FRACTION of the paper's effect; inconclusive otherwise.
    """
    direction = math.copysign(1.0, paper_effect)
    scale = abs(paper_effect)
    median = float(np.median(paired.differences)) if paired.n else math.nan

    def sized(mean: float, low: float, high: float) -> Size:
        ends = sorted((low * direction / scale, high * direction / scale))
        return Size(mean * direction / scale, ends[0], ends[1])

    def result(verdict: str, size: Size, p: float, test: str) -> Judgement:
        return Judgement(verdict, paired, size, p, test, median, bound, collapsed)

    nan = math.nan
    if paired.n == 0:
        return result(PENDING, Size(nan, nan, nan), nan, "")
    if collapsed:
        p = sign_test(paired.differences)
        size = Size(median * direction / scale, nan, nan)
        if still_improving:
            return result(STILL_IMPROVING, size, p, "sign")
        if p < ALPHA:
            side = REPRODUCED if median * direction > 0 else REVERSED
            return result(side, size, p, "sign")
        return result(INCONCLUSIVE, size, p, "sign")
    p = t_test(paired)
    if paired.n < 2 or math.isnan(paired.low):
        return result(INCONCLUSIVE, sized(paired.mean, nan, nan), p, "t")
    if bound is not None:
        # A lower bound leaves the interval open above, an upper bound below.
        low = paired.low if bound > 0 else -math.inf
        high = paired.high if bound < 0 else math.inf
        size = sized(paired.mean, low, high) if bound else Size(nan, nan, nan)
        if still_improving:
            return result(STILL_IMPROVING, size, p, "t")
        if (bound > 0 and paired.low > 0) or (bound < 0 and paired.high < 0):
            return result(REPRODUCED if bound * direction > 0 else REVERSED, size, p, "t")
        return result(INCONCLUSIVE, size, p, "t")
    size = sized(paired.mean, paired.low, paired.high)
    if still_improving:
        return result(STILL_IMPROVING, size, p, "t")
    if paired.low > 0 or paired.high < 0:
        if paired.mean * direction < 0:
            return result(REVERSED, size, p, "t")
        far = max(abs(paired.low), abs(paired.high))
        return result(REPRODUCED if far >= SIZE_FRACTION * scale else SMALLER, size, p, "t")
    near_zero = max(abs(paired.low), abs(paired.high)) < SIZE_FRACTION * scale
    return result(NO_EFFECT if near_zero else INCONCLUSIVE, size, p, "t")


def verdict(paired: Paired, paper_effect: float) -> str:
    """judge's verdict for plain paired differences (no bound, converged, no collapse)."""
    return judge(paired, paper_effect).verdict


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment over the p-values that are not NaN (NaN stays NaN):
    adjusted p < alpha for all of them at once controls the family-wise error at alpha."""
    present = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (len(present) - rank) * p))
        adjusted[i] = running
    return adjusted


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


def log_ratio_interval(ratios: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The geometric mean of positive ratios with its t-interval taken on their logs, as
    claim 1 does: exp(mean ± t(n-1) · sd / sqrt(n)) of log(ratio). `sd` stays on the log
    scale. NaN bounds with fewer than two ratios."""
    if any(not r > 0 for r in ratios):
        raise ValueError(f"log_ratio_interval: every ratio must be > 0, got {list(ratios)}")
    i = mean_interval([math.log(r) for r in ratios], confidence)
    return Interval(i.n, math.exp(i.mean), i.sd, math.exp(i.low), math.exp(i.high))
