"""Paired, interleaved repeats: how every ratio of `make bench` is measured and judged.

A comparison runs in rounds. Each round runs every contender once, one after the other
(the order reversed every other round: A B C, C B A, ...), so a ratio's two sides in a
round ran next to each other on the same warm state; that round gives the ratio one pair.
A ratio is the geometric mean of its per-pair ratios with the 95% t-interval of their logs
(`analysis.stats.log_ratio_interval`, the study's statistics, as claim 1 uses them).

Rounds are added until every ratio's interval is within ±`half_width` (3%) of its value
and, for a ratio with a goal, clear of the goal, or the time budget would run out with the
next round ("too noisy to tell: ±7%", or "within ±2% of the goal"). A ratio
meets its goal when its interval's lower end does, fails when its upper end is below it,
and is undecided otherwise; `make bench` fails only on a decided failure.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from alexnet_lab.analysis.stats import Interval, log_ratio_interval

MEETS, FAILS, UNDECIDED = "meets", "fails", "undecided"
CONVERGED, BUDGET, MAX_ROUNDS = "converged", "budget", "max rounds"

# One run of a contender: its rate (items/s), or several named rates from the same run.
Contender = Callable[[], float | Mapping[str, float]]


@dataclass(frozen=True)
class Budget:
    """When a comparison stops adding rounds."""

    min_rounds: int = 3
    max_rounds: int = 60
    seconds: float = 120.0  # wall time for the whole comparison
    half_width: float = 0.03  # stop once every ratio is known to ±3%

    def __post_init__(self) -> None:
        if not 2 <= self.min_rounds <= self.max_rounds:
            raise ValueError(
                f"Budget: need 2 <= min_rounds <= max_rounds (an interval needs two pairs), "
                f"got min_rounds={self.min_rounds}, max_rounds={self.max_rounds}."
            )


@dataclass(frozen=True)
class Ratio:
    """rate(numerator) / rate(denominator), each pair from one round; goal: None if none."""

    numerator: str
    denominator: str
    goal: float | None = None


@dataclass
class Rounds:
    rates: dict[str, list[float]]  # one rate per round, per contender (or named rate)
    stopped: str  # CONVERGED, BUDGET or MAX_ROUNDS
    seconds: float

    @property
    def count(self) -> int:
        return min((len(v) for v in self.rates.values()), default=0)


def relative_half_width(interval: Interval) -> float:
    """How far the interval reaches from its value, as a fraction (the upper side, which is
    the wider one on a log scale): 0.03 is ±3%. NaN without an interval."""
    if math.isnan(interval.high) or not interval.mean > 0:
        return math.nan
    return interval.high / interval.mean - 1


def judge(interval: Interval, goal: float | None) -> str | None:
    """meets: the lower end reaches the goal; fails: the upper end is below it; else undecided."""
    if goal is None:
        return None
    if math.isnan(interval.low):
        return UNDECIDED
    if interval.low >= goal:
        return MEETS
    if interval.high < goal:
        return FAILS
    return UNDECIDED


def pair_ratios(rates: Mapping[str, list[float]], ratio: Ratio) -> list[float]:
    return [a / b for a, b in zip(rates[ratio.numerator], rates[ratio.denominator], strict=True)]


def run_rounds(
    contenders: Mapping[str, Contender],
    ratios: Mapping[str, Ratio],
    budget: Budget,
    elapsed: Callable[[], float] = time.monotonic,
) -> Rounds:
    """Rounds of every contender until each ratio is known to ±budget.half_width and, if it
    has a goal, decided (an interval still holding the goal gets more rounds while time is
    left), the next round would overrun budget.seconds, or budget.max_rounds are done
    (min_rounds first, whatever the time). `elapsed` is the budget's clock (wall time;
    tests pass a fake)."""
    names = list(contenders)
    rates: dict[str, list[float]] = {}
    started = elapsed()
    spent, stopped = 0.0, MAX_ROUNDS
    for done in range(1, budget.max_rounds + 1):
        for name in names if done % 2 else names[::-1]:
            result = contenders[name]()
            named = result if isinstance(result, Mapping) else {name: result}
            for key, rate in named.items():
                rates.setdefault(key, []).append(float(rate))
        spent = elapsed() - started
        if done < budget.min_rounds:
            continue
        intervals = {name: log_ratio_interval(pair_ratios(rates, r)) for name, r in ratios.items()}
        if all(
            relative_half_width(interval) <= budget.half_width
            and judge(interval, ratios[name].goal) != UNDECIDED  # on its goal: more, if time
            for name, interval in intervals.items()
        ):
            stopped = CONVERGED
            break
        if done < budget.max_rounds and spent + spent / done > budget.seconds:
            # the next round would not fit
            stopped = BUDGET
            break
    return Rounds(rates, stopped, spent)


def _number(x: float, digits: int = 4) -> float | None:
    return None if math.isnan(x) else round(x, digits)


def ratio_result(rounds: Rounds, ratio: Ratio) -> dict[str, Any]:
    """The JSON object of one ratio: value, interval, every pair, the verdict and why the
    rounds stopped."""
    interval = log_ratio_interval(pair_ratios(rounds.rates, ratio))
    pairs = zip(rounds.rates[ratio.numerator], rounds.rates[ratio.denominator], strict=True)
    return {
        "value": _number(interval.mean),
        "low": _number(interval.low),
        "high": _number(interval.high),
        "pairs": [[round(a, 2), round(b, 2)] for a, b in pairs],  # [numerator, denominator]
        "verdict": judge(interval, ratio.goal),
        "goal": ratio.goal,
        "half_width": _number(relative_half_width(interval)),
        "stopped": rounds.stopped,
    }


def ratio_results(rounds: Rounds, ratios: Mapping[str, Ratio]) -> dict[str, dict[str, Any]]:
    return {name: ratio_result(rounds, ratio) for name, ratio in ratios.items()}


def describe(result: Mapping[str, Any]) -> str:
    """'2.62 [2.50, 2.75] ±4.9%, 8 pairs', or with too few pairs for an interval, the value."""
    n = len(result["pairs"])
    if result["low"] is None:
        return f"{result['value']:.3f} (no interval: {n} pair{'s' if n != 1 else ''})"
    interval = f"[{result['low']:.3f}, {result['high']:.3f}]"
    return f"{result['value']:.3f} {interval} ±{result['half_width'] * 100:.1f}%, {n} pairs"


def note(result: Mapping[str, Any], half_width: float = 0.03) -> str:
    """What to make of the verdict when the rounds stopped before every ratio of the
    comparison was known to ±half_width: 'too noisy to tell: ±7%' for an open question with
    a wide interval, 'within ±0.2% of the goal' for one too close to its goal to tell."""
    if result["half_width"] is None:
        return "too few pairs to tell"
    if result["stopped"] == CONVERGED:
        return ""
    width = result["half_width"] * 100
    width_text = f"±{width:.0f}%" if width >= 1 else f"±{width:.1f}%"
    if result["half_width"] > half_width:
        if result["verdict"] in (UNDECIDED, None):
            return f"too noisy to tell: {width_text}"
        return f"{result['stopped']} reached at {width_text}"
    return f"within {width_text} of the goal" if result["verdict"] == UNDECIDED else ""


def decided_failures(ratios: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The ratios whose whole interval lies below their goal: what makes `make bench` fail."""
    return [name for name, result in ratios.items() if result.get("verdict") == FAILS]


def timed(run: Callable[[], int], clock: Callable[[], float]) -> Callable[[], float]:
    """A contender from a pass that returns how many items it processed: items/s by `clock`."""

    def rate() -> float:
        start = clock()
        count = run()
        return count / max(clock() - start, 1e-9)

    return rate
