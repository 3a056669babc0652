"""`make bench`, parts 3 and 4: the Lightning training loop against a raw PyTorch loop,
and the network's own step rate per model, dtype and memory format."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from alexnet_lab.bench.common import INPUT_SIZES, BenchConfig, ModelCase, make_clock
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
    device: str, max_steps: int, timer: StepTimer, precision: str = "32-true"
) -> L.Trainer:
    """A Trainer that only trains: no logger, checkpoints, validation or progress bar."""
    return L.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=max_steps,
        logger=False,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
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


def bench_loop(cfg: BenchConfig) -> dict[str, Any]:
    """The project's LightningModule under L.Trainer vs a hand-written loop: same net,
    optimizer, batches (in memory) and device; only the loop differs."""
    num_classes = 1000 if INPUT_SIZES[cfg.loop_arch] == 224 else 10
    net_cfg = {"_target_": "alexnet_lab.models.AlexNet", "arch": cfg.loop_arch}
    opt_cfg = {"_target_": "torch.optim.SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}
    loader = loop_data(cfg, num_classes)
    clock = make_clock(cfg.device)
    steps = cfg.loop_steps
    classes = [f"c{i}" for i in range(num_classes)]

    def lightning_run() -> tuple[int, float]:
        torch.manual_seed(0)
        model = AlexNetClassifier(net_cfg, opt_cfg, scheduler=None, class_names=classes)
        timer = StepTimer(cfg.loop_warmup, cfg.loop_warmup + steps - 1, clock)
        trainer = timing_trainer(cfg.device, cfg.loop_warmup + steps, timer)
        trainer.fit(model, train_dataloaders=loader)
        return steps * cfg.loop_batch_size, timer.end - timer.start

    def raw_run() -> tuple[int, float]:
        torch.manual_seed(0)
        device = torch.device(cfg.device)
        net = AlexNet(cfg.loop_arch, num_classes=num_classes).to(device).train()
        opt = torch.optim.SGD(net.parameters(), **{k: v for k, v in opt_cfg.items() if k[0] != "_"})
        start = 0.0
        for i, (x, y) in enumerate(loader):
            if i == cfg.loop_warmup:
                start = clock()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return steps * cfg.loop_batch_size, clock() - start

    rates: dict[str, list[float]] = {"lightning": [], "raw_pytorch": []}
    for _ in range(cfg.loop_repeats):
        for name, run in (("lightning", lightning_run), ("raw_pytorch", raw_run)):
            images, seconds = run()
            rates[name].append(images / max(seconds, 1e-9))
    med = {name: statistics.median(v) for name, v in rates.items()}
    return {
        "arch": cfg.loop_arch,
        "batch_size": cfg.loop_batch_size,
        "timed_steps": steps,
        "repeats": cfg.loop_repeats,
        "images_per_s": {k: round(v, 1) for k, v in med.items()},
        "images_per_s_each_repeat": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "loop_vs_raw_pytorch": med["lightning"] / med["raw_pytorch"],
    }


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
