"""What the training loop's default callbacks are and what each costs per step.

`default_callbacks` builds, by name, the callbacks `python src/train.py logger=none` trains
with, the way it builds them: `runs.build_callbacks` on the composed config
(conf/callbacks/default.yaml; lr_monitor is left out without a logger; the interrupt
checkpoint is added) and `SeedPerRank` as `tasks.train` adds it. `bench_loop`
(training.py) times them removed one by one.

`hook_profile` counts, per callback and hook, calls per step, own time per step and host
reads of tensor values (`.item()`, `bool()`, `float()`, `.tolist()`...: each one waits for
the device on a GPU, the Python round trip the loop must not make every step). Counts do
not depend on the machine's load; the times are CPU time and only indicative.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from alexnet_lab.bench.common import CALLBACK_COST_LIMIT, REPO
from alexnet_lab.runs import build_callbacks
from alexnet_lab.training.ranks import SeedPerRank

CONF = REPO / "conf"
# Tensor methods that copy a value to the host (a device sync on a GPU).
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")


def callbacks_config(output_dir: Path) -> DictConfig:
    """The training config with no logger, its outputs under `output_dir`."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=["logger=none", f"paths.output_dir={output_dir}"])


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def default_callbacks(cfg: DictConfig, seed: int = 0) -> dict[str, L.Callback]:
    """Fresh instances (callbacks keep state) of every default callback, by config key;
    those build_callbacks adds beyond the config are named after their class."""
    built = build_callbacks(cfg)
    entries = iter((cfg.get("callbacks") or {}).items())
    named: dict[str, L.Callback] = {}
    for callback in built:
        for key, node in entries:  # build_callbacks keeps the config's order, may drop some
            if str(node.get("_target_", "")).rsplit(".", 1)[-1] == type(callback).__name__:
                named[key] = callback
                break
        else:
            named[_snake(type(callback).__name__)] = callback
    named["seed_per_rank"] = SeedPerRank(seed)
    return named


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """The progress bar still formats and writes every refresh, to /dev/null."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


class HookProfile:
    """Per (callback, hook): calls, own CPU seconds and host reads, while installed."""

    def __init__(self, clock: Callable[[], float] = time.process_time):
        self.clock = clock
        self.rows: dict[tuple[str, str], dict[str, float]] = {}
        self.current: tuple[str, str] | None = None
        self.loop_reads: Counter[str] = Counter()  # outside any callback hook, by reader

    def wrap(self, name: str, callback: L.Callback) -> None:
        """Shadow each hook the callback overrides with a counting one (on the instance)."""
        for hook in dir(L.Callback):
            if not (hook.startswith("on_") or hook in ("setup", "teardown")):
                continue
            if getattr(type(callback), hook) is getattr(L.Callback, hook):
                continue
            setattr(callback, hook, self._counted(name, hook, getattr(callback, hook)))

    def _counted(self, name: str, hook: str, method: Callable[..., Any]) -> Callable[..., Any]:
        row = self.rows.setdefault((name, hook), {"calls": 0, "seconds": 0.0, "host_reads": 0})

        @functools.wraps(method)
        def counted(*args: Any, **kwargs: Any) -> Any:
            outer, self.current = self.current, (name, hook)
            start = self.clock()
            try:
                return method(*args, **kwargs)
            finally:
                row["calls"] += 1
                row["seconds"] += self.clock() - start
                self.current = outer

        return counted

    @contextlib.contextmanager
    def counting_host_reads(self) -> Iterator[None]:
        originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

        def counted(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
            def read(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
                if self.current is None:  # who read it: the loop, the module, a metric
                    code = sys._getframe(1).f_code
                    module = sys._getframe(1).f_globals.get("__name__", code.co_filename)
                    self.loop_reads[f"{module}.{code.co_name}"] += 1
                else:
                    self.rows[self.current]["host_reads"] += 1
                return original(tensor, *args, **kwargs)

            return read

        for name, original in originals.items():
            setattr(torch.Tensor, name, counted(name, original))
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(torch.Tensor, name, original)

    def loop_table(self, steps: int) -> dict[str, float]:
        """Host reads per step outside the callbacks, by the function that made them."""
        return {where: round(n / steps, 3) for where, n in self.loop_reads.most_common()}

    def callback_shares(self, steps: int, step_s: float) -> list[dict[str, Any]]:
        """Per callback, all its hooks together: own time as a share of a training step
        (`step_s`), costliest first, flagged above CALLBACK_COST_LIMIT. Measured inside
        the callback, so not blurred by run-to-run noise as a timed difference is."""
        seconds: Counter[str] = Counter()
        reads: Counter[str] = Counter()
        for (name, _), row in self.rows.items():
            seconds[name] += row["seconds"]
            reads[name] += row["host_reads"]
        shares = [
            {
                "callback": name,
                "us_per_step": round(total / steps * 1e6, 1),
                "share_of_step": round(total / steps / step_s, 5),
                "host_reads_per_step": round(reads[name] / steps, 3),
                "over_limit": total / steps / step_s > CALLBACK_COST_LIMIT,
            }
            for name, total in seconds.items()
        ]
        return sorted(shares, key=lambda r: -r["share_of_step"])

    def table(self, steps: int) -> list[dict[str, Any]]:
        """Rows with per-step figures, costliest first (hooks never called are left out)."""
        rows = [
            {
                "callback": name,
                "hook": hook,
                "calls": int(r["calls"]),
                "calls_per_step": round(r["calls"] / steps, 3),
                "us_per_step": round(r["seconds"] / steps * 1e6, 1),
                "host_reads_per_step": round(r["host_reads"] / steps, 3),
            }
            for (name, hook), r in self.rows.items()
            if r["calls"]
        ]
        return sorted(rows, key=lambda r: (-r["host_reads_per_step"], -r["us_per_step"]))


def format_profile_lines(profile: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"default callbacks, own time per training step ({profile['steps']} steps of "
        f"{profile['step_us'] / 1000:.1f} ms, {profile['clock']}; flagged above "
        f"{CALLBACK_COST_LIMIT:.0%} of a step; host reads: .item()/bool()/float() of a tensor, "
        f"each a device sync on a GPU; counts exact, times indicative)",
        "  host reads per step outside the callbacks: "
        + (", ".join(f"{k} {v}" for k, v in profile["loop_host_reads_per_step"].items()) or "none"),
        f"  {'callback':24s} {'us/step':>9s} {'of a step':>10s} {'reads/step':>10s}",
    ]
    for r in profile["callbacks"]:
        flag = f"  > {CALLBACK_COST_LIMIT:.0%}" if r["over_limit"] else ""
        lines.append(
            f"  {r['callback']:24s} {r['us_per_step']:9.1f} {r['share_of_step']:10.2%} "
            f"{r['host_reads_per_step']:10.2f}{flag}"
        )
    lines += [
        "  by hook:",
        f"  {'callback':24s} {'hook':28s} {'calls/step':>10s} {'us/step':>9s} {'reads/step':>10s}",
    ]
    for r in profile["rows"]:
        lines.append(
            f"  {r['callback']:24s} {r['hook']:28s} {r['calls_per_step']:10.2f} "
            f"{r['us_per_step']:9.1f} {r['host_reads_per_step']:10.2f}"
        )
    return lines
