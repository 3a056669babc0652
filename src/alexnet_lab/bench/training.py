"""`make bench`, parts 3 and 4: the Lightning training loop, with its default callbacks,
each removed in turn and none, against a raw PyTorch loop; and the network's own step
rate per model, dtype and memory format."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Checkpoint, ProgressBar
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from alexnet_lab.bench.common import (
    CALLBACK_COST_LIMIT,
    INPUT_SIZES,
    TARGETS,
    BenchConfig,
    ModelCase,
    make_clock,
)
from alexnet_lab.bench.loop_callbacks import (
    HookProfile,
    callbacks_config,
    default_callbacks,
    quiet_stdout,
)
from alexnet_lab.bench.paired import Budget, Ratio, ratio_result, run_rounds
from alexnet_lab.models import AlexNet
from alexnet_lab.training.module import AlexNetClassifier

# ------------------------------------------------------------------- 3. the loop


class StepTimer(L.Callback):
    """Times the training steps after the warm-up ones, as the raw loop does."""

    def __init__(self, warmup: int, last: int, clock):
        self.warmup, self.last, self.clock = warmup, last, clock
        self.start = self.end = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = self.clock()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.last:  # the clock syncs a GPU: only at the two ends
            self.end = self.clock()


def timing_trainer(
    device: str,
    max_steps: int,
    timer: StepTimer,
    precision: str = "32-true",
    callbacks: Sequence[L.Callback] = (),
    root_dir: Path | None = None,
    log_every_n_steps: int = 50,
) -> L.Trainer:
    """A Trainer that only trains (no logger, validation or model summary) with `callbacks`;
    checkpointing and the progress bar only where `callbacks` hold one. `log_every_n_steps`:
    how often the module logs its step loss (and the bar shows it)."""
    callbacks = [*callbacks, timer]
    return L.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=max_steps,
        log_every_n_steps=log_every_n_steps,
        logger=False,
        callbacks=callbacks,
        default_root_dir=root_dir,
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
    )


def loop_data(cfg: BenchConfig, num_classes: int) -> DataLoader:
    size = INPUT_SIZES[cfg.loop_arch]
    n = cfg.loop_batch_size * (cfg.loop_steps + cfg.loop_warmup)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=g)
    targets = torch.randint(0, num_classes, (n,), generator=g)
    return DataLoader(TensorDataset(images, targets), batch_size=cfg.loop_batch_size)


def loop_configurations(names: Sequence[str]) -> dict[str, list[str]]:
    """default (every default callback), each one removed in turn, and none."""
    configs = {"default": list(names)}
    configs.update({f"without {n}": [m for m in names if m != n] for n in names})
    configs["none"] = []
    return configs


class LoopRuns:
    """The project's LightningModule under L.Trainer with a chosen set of the default
    callbacks, and a hand-written loop: same net, optimizer, batches (in memory) and
    device; only the loop differs. Each call is one fit; it returns images/s over the
    timed steps."""

    def __init__(self, cfg: BenchConfig, work_dir: Path):
        self.cfg, self.work_dir = cfg, work_dir
        self.num_classes = 1000 if INPUT_SIZES[cfg.loop_arch] == 224 else 10
        self.net_cfg = {"_target_": "alexnet_lab.models.AlexNet", "arch": cfg.loop_arch}
        self.opt_cfg = {
            "_target_": "torch.optim.SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
        }  # fmt: skip
        self.loader = loop_data(cfg, self.num_classes)
        self.clock = make_clock(cfg.device)
        self.callbacks_cfg = callbacks_config(work_dir)
        self.names = list(default_callbacks(self.callbacks_cfg))

    def lightning(self, keep: Sequence[str], steps: int | None = None, profile=None) -> float:
        cfg, steps = self.cfg, steps or self.cfg.loop_steps
        torch.manual_seed(0)
        model = AlexNetClassifier(
            self.net_cfg, self.opt_cfg, scheduler=None,
            class_names=[f"c{i}" for i in range(self.num_classes)],
        )  # fmt: skip
        every = default_callbacks(self.callbacks_cfg)
        chosen = [every[name] for name in keep]
        if profile is not None:
            for name in keep:
                profile.wrap(name, every[name])
        timer = StepTimer(cfg.loop_warmup, cfg.loop_warmup + steps - 1, self.clock)
        trainer = timing_trainer(
            cfg.device,
            cfg.loop_warmup + steps,
            timer,
            callbacks=chosen,
            root_dir=self.work_dir,
            log_every_n_steps=self.callbacks_cfg.trainer.log_every_n_steps,  # as train.py
        )
        loader = self.loader if steps == cfg.loop_steps else self.longer_loader(steps)
        with quiet_stdout():
            trainer.fit(model, train_dataloaders=loader)
        return steps * cfg.loop_batch_size / max(timer.end - timer.start, 1e-9)

    def longer_loader(self, steps: int) -> DataLoader:
        batches = self.cfg.loop_warmup + steps
        dataset = self.loader.dataset
        repeats = -(-batches * self.cfg.loop_batch_size // len(dataset))
        images, targets = (torch.cat([t] * repeats) for t in dataset.tensors)
        return DataLoader(TensorDataset(images, targets), batch_size=self.cfg.loop_batch_size)

    def raw(self) -> float:
        cfg, clock = self.cfg, self.clock
        torch.manual_seed(0)
        device = torch.device(cfg.device)
        net = AlexNet(cfg.loop_arch, num_classes=self.num_classes).to(device).train()
        opt_args = {k: v for k, v in self.opt_cfg.items() if k[0] != "_"}
        opt = torch.optim.SGD(net.parameters(), **opt_args)
        start = 0.0
        for i, (x, y) in enumerate(self.loader):
            if i == cfg.loop_warmup:
                start = clock()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return cfg.loop_steps * cfg.loop_batch_size / max(clock() - start, 1e-9)


def bench_loop(
    cfg: BenchConfig, headline_budget: Budget, table_budget: Budget, work_dir: Path
) -> dict[str, Any]:
    """`loop_vs_raw_pytorch` first, in rounds of its own two contenders (the default
    callbacks against raw PyTorch): two runs a round give it many more pairs than the
    table's rounds of 14. Then the table: every configuration of `loop_configurations` and
    the raw loop, each configuration against raw PyTorch, and the default one against each,
    whose ratio is what the callback left out costs (1 - ratio of a step). Last, the hook
    profile: each callback's own time as a share of a step, and its host reads."""
    runs = LoopRuns(cfg, work_dir)
    goal = TARGETS["loop_vs_raw_pytorch"]
    headline = Ratio("default", "raw_pytorch", goal)
    headline_rounds = run_rounds(
        {"default": functools.partial(runs.lightning, runs.names), "raw_pytorch": runs.raw},
        {"loop_vs_raw_pytorch": headline},
        headline_budget,
    )
    configs = loop_configurations(runs.names)
    contenders = {name: functools.partial(runs.lightning, keep) for name, keep in configs.items()}
    contenders["raw_pytorch"] = runs.raw
    vs_raw = {name: Ratio(name, "raw_pytorch", goal) for name in configs}
    vs_default = {
        name: Ratio("default", name, 1 - CALLBACK_COST_LIMIT)
        for name in configs
        if name != "default"
    }
    ratios = {
        **{f"{n} / raw": r for n, r in vs_raw.items()},
        **{f"default / {n}": r for n, r in vs_default.items()},
    }
    rounds = run_rounds(contenders, ratios, table_budget)
    rows = [
        {
            "configuration": name,
            "callbacks": keep,
            "vs_raw_pytorch": ratio_result(rounds, vs_raw[name]),
            "default_vs_this": ratio_result(rounds, vs_default[name])
            if name in vs_default
            else None,
        }
        for name, keep in configs.items()
    ]
    profile = HookProfile()
    steps = cfg.loop_warmup + cfg.loop_profile_steps
    with profile.counting_host_reads():
        rate = runs.lightning(runs.names, steps=cfg.loop_profile_steps, profile=profile)
    return {
        "arch": cfg.loop_arch,
        "batch_size": cfg.loop_batch_size,
        "timed_steps": cfg.loop_steps,
        "headline": {
            "rounds": headline_rounds.count,
            "stopped": headline_rounds.stopped,
            "seconds": round(headline_rounds.seconds, 1),
            "images_per_s_each_round": rounded(headline_rounds.rates),
        },
        "rounds": rounds.count,
        "stopped": rounds.stopped,
        "seconds": round(rounds.seconds, 1),
        "images_per_s_each_round": rounded(rounds.rates),
        "loop_vs_raw_pytorch": ratio_result(headline_rounds, headline),
        "loop_callbacks": rows,
        "callback_profile": {
            "steps": steps,
            "clock": "process CPU time",
            "step_us": round(cfg.loop_batch_size / rate * 1e6, 1),
            "loop_host_reads_per_step": profile.loop_table(steps),
            "rows": profile.table(steps),
            "callbacks": profile.callback_shares(steps, cfg.loop_batch_size / rate),
        },
    }


def rounded(rates: dict[str, list[float]]) -> dict[str, list[float]]:
    return {k: [round(x, 1) for x in v] for k, v in rates.items()}


# ------------------------------------------------------------ 4. model throughput


def matmul_rate(device: str, dtype: torch.dtype, repeats: int = 3) -> float:
    """FLOP/s of a large square matmul: the card's (or core's) practical peak."""
    n = 8192 if device == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    clock = make_clock(device)
    inner = 10 if device == "cuda" else 1
    rates = []
    for _ in range(repeats):
        start = clock()
        for _ in range(inner):
            torch.mm(a, b)
        rates.append(2 * n**3 * inner / (clock() - start))
    return statistics.median(rates)


def model_step_rate(case: ModelCase, cfg: BenchConfig) -> dict[str, Any]:
    device = torch.device(cfg.device)
    size = INPUT_SIZES[case.arch]
    num_classes = 1000 if size == 224 else 10
    torch.manual_seed(0)
    net = AlexNet(case.arch, num_classes=num_classes).to(device)
    x = torch.randn(case.batch_size, 3, size, size, device=device)
    y = torch.randint(0, num_classes, (case.batch_size,), device=device)
    if case.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    with FlopCounterMode(display=False) as counter:  # before compiling: eager op counts
        F.cross_entropy(net(x), y).backward()
    flops = counter.get_total_flops()
    if case.compile:
        net.compile()  # in place, as model.compile=true does in training

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=case.dtype == "bf16"):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    warm_start = time.perf_counter()
    for _ in range(cfg.model_warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    warmup_s = time.perf_counter() - warm_start

    times = []
    for _ in range(cfg.model_repeats):
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            for _ in range(cfg.model_steps):
                step()
            end.record()
            end.synchronize()
            times.append(begin.elapsed_time(end) / 1000 / cfg.model_steps)
        else:
            start = time.process_time()
            for _ in range(cfg.model_steps):
                step()
            times.append((time.process_time() - start) / cfg.model_steps)
    step_s = statistics.median(times)
    return {
        **asdict(case),
        "images_per_s": round(case.batch_size / step_s, 1),
        "step_ms": round(step_s * 1000, 2),
        "gflop_per_step": round(flops / 1e9, 2),
        "tflop_per_s": round(flops / step_s / 1e12, 4),
        "warmup_s": round(warmup_s, 1),
    }


def bench_models(cfg: BenchConfig) -> dict[str, Any]:
    peak = {
        "fp32": matmul_rate(cfg.device, torch.float32),
        "bf16": matmul_rate(cfg.device, torch.bfloat16),
    }
    # The device's best measured matmul rate, whatever the dtype: the ceiling a step
    # could reach (on CPUs without bf16 units the fp32 rate is the higher one).
    best = max(peak.values())
    rows = []
    for case in cfg.models:
        row = model_step_rate(case, cfg)
        row["fraction_of_matmul_rate"] = round(row["tflop_per_s"] * 1e12 / best, 3)
        rows.append(row)
    return {
        "matmul_tflop_per_s": {k: round(v / 1e12, 4) for k, v in peak.items()},
        "steps_per_repeat": cfg.model_steps,
        "repeats": cfg.model_repeats,
        "rows": rows,
    }
