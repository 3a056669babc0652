"""`make recipe-check`: does each training recipe the README offers leave chance on real images?

A stalled multi-day run is the costliest failure this project can cause, so every preset
offered for real training is tried first on real images, offline: the built-in
Fashion-MNIST slice (3,000 training images, 10 classes) written once as a 256 px image
folder. Each recipe trains for a fixed step budget through `src/train.py`, exactly as a
user launches it (on the CPU, no validation, no checkpoints), and its per-step training
loss is read back from the run's CSV log.

A recipe leaves chance when its loss, averaged over `window` steps, falls below
0.8 x ln C. The presets must do so within the budget (the exit status says whether they
did); the init x input-scale grid on the paper's network is reported, not required.
"""

from __future__ import annotations

import csv
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from alexnet_lab.data.builtin import ASSET, write_image_folder
from alexnet_lab.models.alexnet import INITS
from alexnet_lab.resolvers import INPUT_SCALES

CLASSES = 10  # the built-in slice (and so the check data) has 10 classes
CHANCE_FRACTION = 0.8  # "clearly below chance": the windowed loss under 0.8 x ln C
IMAGE_SIZE = 256  # the paper's stored size: shorter side 256, centre square
# The built-in slice's statistics (conf/data/fashion_mnist_mini.yaml): grey images, so
# all colour variance lies along (1, 1, 1).
PIXEL_MEAN = 0.2863
PIXEL_STD = 0.3539
PCA_EIGVAL = "[0.3756,0.0,0.0]"
PCA_EIGVEC = "[[0.57735,0.0,0.0],[0.57735,0.0,0.0],[0.57735,0.0,0.0]]"

PAPER = ("experiment=imagenet_paper",)


@dataclass(frozen=True)
class Recipe:
    name: str
    overrides: tuple[str, ...]
    required: bool  # a preset the README offers: it must leave chance within the budget
    on_check_data: bool = True  # False: the recipe's own data (the default run's slice)
    budget_factor: float = 1.0  # its step budget in units of the check's


# The presets the README offers for real training, as a user launches them.
PRESETS = (
    Recipe("imagenet_paper", PAPER, required=True),
    Recipe(
        "alexnet_owt, torchvision recipe",
        # The preset's init (caffe) would carry over: torchvision's recipe has PyTorch's.
        (*PAPER, "model=alexnet_owt", "model.init=default", "data.input_scale=unit")
        + ("optimizer.weight_decay=1e-4",),
        required=True,
        # PyTorch's init starts it with logits near 0: flat for ~80 steps here, then it learns.
        budget_factor=2.5,
    ),
    Recipe("default run (alexnet_small)", (), required=True, on_check_data=False),
)


def grid(skip: tuple[str, str] | None = None) -> list[Recipe]:
    """init x input scale on the paper's network and recipe; `skip`: the preset's own cell."""
    return [
        Recipe(
            f"imagenet_paper init={init} {scale} scale",
            (*PAPER, f"model.init={init}", f"data.input_scale={scale}"),
            required=False,
        )
        for init in INITS
        for scale in sorted(INPUT_SCALES)  # paper, unit
        if (init, scale) != skip
    ]


@dataclass
class Outcome:
    recipe: Recipe
    status: str  # metrics.json's: completed, failed (e.g. the loss became NaN)
    init: str | None = None  # as the run's saved config has them
    input_scale: str | None = None
    budget: int = 0  # the optimizer steps it was given
    losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0  # CPU time of the run, all threads: its cost whatever else runs
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    left_at: int | None  # steps taken when the windowed loss first fell below the line
    final: float  # mean loss over the last `window` steps
    peak: float  # the highest single-step loss: a blow-up shows here
    passed: bool
    label: str  # left chance, stalled, diverged, failed


def write_check_data(root: Path, val_per_class: int = 10) -> Path:
    """The built-in slice at 256 px as root/{train,val}/<class>/*.png, written once.

    Only the training split is used (validation is off), but the folder layout wants a
    val/ split: a few images per class stand in for it.
    """
    if (root / "train").is_dir():
        return root
    with resources.files("alexnet_lab.assets").joinpath(ASSET).open("rb") as f:
        data = dict(np.load(f))
    labels = data["val_labels"]
    keep = np.concatenate([np.flatnonzero(labels == c)[:val_per_class] for c in range(CLASSES)])

    def upscale(images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(images).float().unsqueeze(1)
        batch = F.interpolate(batch, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear")
        return batch.round().clamp(0, 255).to(torch.uint8).squeeze(1).numpy()

    splits = {
        "train": (upscale(data["train_images"]), data["train_labels"]),
        "val": (upscale(data["val_images"][keep]), labels[keep]),
    }
    write_image_folder(root, splits, [str(c) for c in data["classes"]])
    return root


def run_overrides(
    recipe: Recipe, data_root: Path, run_dir: Path, steps: int, batch_size: int
) -> list[str]:
    """The recipe's overrides plus what makes it a short CPU check."""
    check = [
        "trainer=cpu",
        f"++trainer.max_steps={steps}",
        "++trainer.limit_val_batches=0",
        "++trainer.enable_checkpointing=false",
        "++trainer.log_every_n_steps=1",
        "logger=csv",
        # Plateau/step schedules change the lr only after epochs: constant within a budget.
        "scheduler=none",
        # No checkpoints to write; a NaN loss still ends the run at once.
        "callbacks=none",
        "+callbacks.stop_on_nonfinite_loss._target_=alexnet_lab.training.checkpoints.StopOnNonFiniteLoss",
        f"hydra.run.dir={run_dir}",
    ]
    if recipe.on_check_data:
        pixel_std = ",".join([str(PIXEL_STD)] * 3)
        check += [
            "data=folder",
            f"data.root={data_root}",
            # Images per optimizer step, as the paper preset states its 128.
            "data.batch_size=null",
            f"++data.global_batch_size={batch_size}",
            "data.num_workers=1",
            f"data.mean=[{PIXEL_MEAN},{PIXEL_MEAN},{PIXEL_MEAN}]",
            # data.std still follows data.input_scale, with the slice's std at unit scale.
            f"data.std='${{alexnet_lab.input_std:${{data.input_scale}},[{pixel_std}]}}'",
            f"++data.eigval={PCA_EIGVAL}",
            f"++data.eigvec={PCA_EIGVEC}",
        ]
    return [*recipe.overrides, *check]


def read_losses(run_dir: Path) -> list[float]:
    """The per-step training loss from the run's CSV log, in step order."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    losses: dict[int, float] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("train/loss_step"):
                losses[int(row["step"])] = float(row["train/loss_step"])
    return [losses[step] for step in sorted(losses)]


def run_dir_name(recipe: Recipe) -> str:
    """A folder name Hydra's override parser takes as a plain value (no `=`, spaces, commas)."""
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in recipe.name)


def run_recipe(
    recipe: Recipe,
    train_script: Path,
    data_root: Path,
    out_dir: Path,
    steps: int,
    batch_size: int,
) -> Outcome:
    run_dir = out_dir / run_dir_name(recipe)
    overrides = run_overrides(recipe, data_root, run_dir, steps, batch_size)
    start, cpu_start = time.monotonic(), _children_cpu_s()
    proc = subprocess.run(
        [sys.executable, str(train_script), *overrides],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    wall, cpu = time.monotonic() - start, _children_cpu_s() - cpu_start
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe_check.log").write_text(proc.stdout + proc.stderr)
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError):  # it failed before run_task could write one
        metrics = {"status": "failed", "error": proc.stderr[-2000:] or f"exit {proc.returncode}"}
    outcome = Outcome(recipe, metrics.get("status", "failed"), budget=steps)
    outcome.wall_s, outcome.cpu_s = wall, cpu
    outcome.error = metrics.get("error")
    outcome.losses = read_losses(run_dir)
    saved = run_dir / ".hydra" / "config.yaml"
    if saved.is_file():
        cfg = yaml.safe_load(saved.read_text())
        outcome.init = cfg.get("model", {}).get("init")
        outcome.input_scale = cfg.get("data", {}).get("input_scale")
    return outcome


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def judge(outcome: Outcome, window: int) -> Verdict:
    line = CHANCE_FRACTION * math.log(CLASSES)
    losses = outcome.losses
    means = [sum(losses[i - window : i]) / window for i in range(window, len(losses) + 1)]
    left_at = next((i + window for i, mean in enumerate(means) if mean < line), None)
    final = means[-1] if means else float("nan")
    peak = max(losses) if losses else float("nan")
    if outcome.status != "completed" or not all(map(math.isfinite, losses)):
        diverged = "training loss became" in (outcome.error or "")  # StopOnNonFiniteLoss
        return Verdict(left_at, final, peak, False, "diverged" if diverged else "failed")
    passed = final < line
    return Verdict(left_at, final, peak, passed, "left chance" if passed else "stalled")


def _loss(value: float) -> str:
    # A blow-up can reach 1e17: scientific notation keeps the column readable.
    return f"{value:.2f}" if abs(value) < 1e4 else f"{value:.2e}"


def format_table(outcomes: list[Outcome], window: int, batch_size: int) -> str:
    chance = math.log(CLASSES)
    lines = [
        f"Training loss on {CLASSES} classes of real images (chance ln {CLASSES} = {chance:.2f}; "
        f"left chance: mean of {window} steps below {CHANCE_FRACTION * chance:.2f}); "
        f"batch {batch_size} (the default run: its own, 128). Bold: presets, which must leave "
        f"chance within their budget.",
        "",
        "| recipe | init | input scale | budget | steps to leave chance | loss at budget "
        "| peak loss | verdict | wall s | CPU s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        v = judge(o, window)
        name = f"**{o.recipe.name}**" if o.recipe.required else o.recipe.name
        left = v.left_at if v.left_at is not None else "—"
        lines.append(
            f"| {name} | {o.init} | {o.input_scale} | {o.budget} | {left} | {v.final:.2f} "
            f"| {_loss(v.peak)} "
            f"| {v.label} | {o.wall_s:.0f} | {o.cpu_s:.0f} |"
        )
    return "\n".join(lines)


def run_recipe_check(
    train_script: Path,
    data_dir: Path,
    out_dir: Path,
    steps: int = 60,
    batch_size: int = 32,
    window: int = 10,
    with_grid: bool = True,
    only: tuple[str, ...] = (),
    echo: Callable[[str], None] = print,
) -> tuple[list[Outcome], bool]:
    """Run the presets (those named in `only`, if given), then the grid; write
    recipe_check.md and .json to out_dir. Returns the outcomes and whether every
    required recipe left chance."""
    data_root = write_check_data(data_dir / "recipe-check-fashion-256")
    chosen = [r for r in PRESETS if not only or r.name in only]
    outcomes: list[Outcome] = []

    def run(recipe: Recipe) -> Outcome:
        echo(f"recipe-check: {recipe.name} ...")
        budget = round(steps * recipe.budget_factor)
        outcome = run_recipe(recipe, train_script, data_root, out_dir, budget, batch_size)
        v = judge(outcome, window)
        echo(
            f"  {v.label}: loss {v.final:.2f} after {len(outcome.losses)} steps, "
            f"{outcome.wall_s:.0f} s"
        )
        if v.label == "failed":  # not the recipe's fault: the log says what broke
            last = (outcome.error or "").strip().splitlines()[-1:]
            echo(f"  {last[0] if last else 'no error recorded'} (see {out_dir}/*/recipe_check.log)")
        outcomes.append(outcome)
        return outcome

    for recipe in chosen:
        run(recipe)
    if with_grid:
        paper = next((o for o in outcomes if o.recipe is PRESETS[0]), None)
        for recipe in grid(skip=(paper.init, paper.input_scale) if paper else None):
            run(recipe)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "recipe_check.md").write_text(format_table(outcomes, window, batch_size) + "\n")
    record = [
        {**asdict(o), **asdict(judge(o, window)), "recipe": asdict(o.recipe)} for o in outcomes
    ]
    (out_dir / "recipe_check.json").write_text(json.dumps(record, indent=1) + "\n")
    return outcomes, all(judge(o, window).passed for o in outcomes if o.recipe.required)
