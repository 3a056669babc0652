"""Checks that turn a bad value into a clear error before anything is built: the config,
the inputs a checkpoint was trained on, the checkpoint a run loads."""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from alexnet_lab.errors import CheckpointError, ConfigError
from alexnet_lab.resolvers import INPUT_SCALES


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def available_devices(accelerator: str) -> tuple[int, str] | None:
    """How many devices of this kind the machine has, and what they are called."""
    if accelerator == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return (cores or os.cpu_count() or 1), "CPU cores"
    if accelerator in ("gpu", "cuda"):
        return torch.cuda.device_count(), "CUDA GPUs"
    return None  # auto, mps, tpu...: Lightning decides and checks


def check_trainer_config(trainer: Mapping) -> list[str]:
    problems = []
    max_epochs = trainer.get("max_epochs")
    if max_epochs is not None and not (
        _is_int(max_epochs) and (max_epochs >= 1 or max_epochs == -1)
    ):
        problems.append(f"trainer.max_epochs={max_epochs}: use a whole number >= 1 (-1: no limit).")
    num_nodes = trainer.get("num_nodes", 1)
    if not (_is_int(num_nodes) and num_nodes >= 1):
        problems.append(f"trainer.num_nodes={num_nodes}: use a whole number >= 1.")

    accelerator = str(trainer.get("accelerator", "auto")).lower()
    devices = trainer.get("devices", "auto")
    if devices in ("auto", -1, "-1", None):
        return problems
    if isinstance(devices, str):  # Lightning reads "2" as a count and "0,1" as indices
        parts = [p for p in devices.split(",") if p.strip()]
        if not all(p.strip().isdigit() for p in parts):
            return [
                *problems,
                f"trainer.devices={devices!r}: use a count, a list of indices or auto.",
            ]
        indices = [int(p) for p in parts] if "," in devices else None
        count = len(parts) if indices else int(devices)
    elif isinstance(devices, Sequence):
        indices, count = list(devices), len(devices)
        if not all(_is_int(i) and i >= 0 for i in indices):
            return [*problems, f"trainer.devices={devices}: device indices are whole numbers >= 0."]
    elif _is_int(devices):
        indices, count = None, devices
    else:
        return [*problems, f"trainer.devices={devices!r}: use a count, a list of indices or auto."]
    if count < 1:
        return [*problems, f"trainer.devices={devices}: use at least 1 (or -1 for all)."]

    available = available_devices(accelerator)
    if available is None:
        return problems
    have, what = available
    if have == 0:
        problems.append(
            f"trainer.accelerator={accelerator} but this machine has no {what} "
            f"(torch.cuda.device_count() is 0). Use trainer=cpu, or run where a GPU is visible."
        )
    elif count > have or (indices and max(indices) >= have):
        problems.append(
            f"trainer.devices={devices} asks for more than this machine's {have} {what}. "
            f"Use trainer.devices={have} or fewer (or -1 for all)."
        )
    return problems


def check_train_config(cfg: DictConfig) -> None:
    """Out-of-range values, all named in one ConfigError, before any data or model is built."""
    problems = []
    optimizer = cfg.get("optimizer") or {}
    lr = optimizer.get("lr")
    if lr is not None and not (_number(lr) is not None and math.isfinite(lr) and lr > 0):
        problems.append(f"optimizer.lr={lr}: use a positive learning rate (the paper: 0.01).")
    momentum = optimizer.get("momentum")
    if momentum is not None and not (_number(momentum) is not None and 0 <= momentum < 1):
        problems.append(f"optimizer.momentum={momentum}: use a value in [0, 1) (the paper: 0.9).")
    weight_decay = optimizer.get("weight_decay")
    if weight_decay is not None and not (_number(weight_decay) is not None and weight_decay >= 0):
        problems.append(f"optimizer.weight_decay={weight_decay}: use 0 or more (paper: 0.0005).")
    decay_biases = optimizer.get("decay_biases")
    if decay_biases is not None and not isinstance(decay_biases, bool):
        problems.append(
            f"optimizer.decay_biases={decay_biases!r}: use true (decay every parameter) or "
            f"false (weights only, as the paper's cuda-convnet)."
        )

    data = cfg.get("data") or {}
    batch_size = data.get("batch_size")
    if batch_size is not None and not (_is_int(batch_size) and batch_size >= 1):
        problems.append(f"data.batch_size={batch_size}: use a whole number >= 1 (the paper: 128).")
    global_batch_size = data.get("global_batch_size")
    if global_batch_size is not None and not (_is_int(global_batch_size) and global_batch_size > 0):
        problems.append(
            f"data.global_batch_size={global_batch_size}: use a whole number >= 1 (images per "
            f"optimizer step, all devices together; the paper: 128), or null."
        )
    if data and batch_size is None and global_batch_size is None:
        problems.append(
            "data.batch_size and data.global_batch_size are both null: set one (images per "
            "device, or per optimizer step over all devices)."
        )
    num_workers = data.get("num_workers")
    if num_workers is not None and not (_is_int(num_workers) and num_workers >= 0):
        problems.append(
            f"data.num_workers={num_workers}: use 0 (load in the main process) or more."
        )
    for key in ("crop_size", "resize_size"):
        size = data.get(key)
        if size is not None and not (_is_int(size) and size >= 1):
            problems.append(f"data.{key}={size}: use a size in pixels >= 1.")
    input_scale = data.get("input_scale")
    if input_scale is not None and input_scale not in INPUT_SCALES:
        # Checked before data.std resolves from it (an error inside a resolver is unreadable).
        problems.append(
            f"data.input_scale={input_scale}: use paper (mean-subtracted 0-255 pixels, as the "
            f"paper trained) or unit (per-channel mean/std normalisation)."
        )
    pca_std = data.get("pca_std")
    if pca_std is not None and not (_number(pca_std) is not None and pca_std >= 0):
        problems.append(f"data.pca_std={pca_std}: use 0 (off) or more (the paper: 0.1).")
    elif pca_std and data.get("augment") is False and not cfg.get("resume"):
        # The data module draws no PCA noise without augmentation. A resumed run keeps its
        # saved config, from before this check, and trains on as it did: without it.
        problems.append(
            f"data.augment=false with data.pca_std={pca_std}: the PCA colour noise is an "
            f"augmentation and is not applied without the others. Set data.pca_std=0 too "
            f"(ablation=no_augment does), or data.augment=true to apply it."
        )
    problems += _mean_problems(data.get("mean"), data.get("input_scale"))

    problems += check_trainer_config(cfg.get("trainer") or {})
    if problems:
        raise ConfigError(" ".join(problems))


def _mean_problems(mean: Any, input_scale: Any) -> list[str]:
    """data.mean is in [0, 1] pixel units at every input scale (the paper scale subtracts
    255 x mean): 0-255 means (123.68, ...) would be subtracted 255 times over."""
    if mean is None:
        return []
    values = list(mean) if isinstance(mean, Sequence) and not isinstance(mean, str) else [mean]
    if all(_number(v) is not None and 0 <= v <= 1 for v in values):
        return []
    scale = "paper (which subtracts 255 x mean)" if input_scale == "paper" else "unit"
    return [
        f"data.mean={list(values)}: the per-channel mean is in [0, 1] pixel units at "
        f"data.input_scale={scale}. Divide 0-255 means by 255 (ImageNet: "
        f"[0.485, 0.456, 0.406])."
    ]


# The data keys that define what the network's inputs look like: a checkpoint only fits a
# run whose inputs are prepared as it was trained on.
INPUT_KEYS = ("input_scale", "mean", "std")


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, Sequence) and isinstance(b, Sequence) and not isinstance(a, str):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if _number(a) is not None and _number(b) is not None:
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    return a == b


def check_inputs_fit(theirs: Mapping, ours: Mapping, path: Any) -> None:
    """The class list and input preprocessing (INPUT_KEYS) of a checkpoint's hparams
    (`theirs`) against this run's: a difference is refused, naming both values. Keys a
    checkpoint lacks (saved before they existed) are not compared."""
    differences = []
    their_classes, our_classes = theirs.get("class_names"), ours.get("class_names")
    if their_classes and our_classes and list(their_classes) != list(our_classes):
        differences.append(
            f"classes: the checkpoint's {_classes(their_classes)}, this run's "
            f"{_classes(our_classes)}"
        )
    their_data, our_data = theirs.get("data") or {}, ours.get("data") or {}
    for key in INPUT_KEYS:
        a, b = their_data.get(key), our_data.get(key)
        if a is not None and b is not None and not _same_value(a, b):
            differences.append(f"data.{key}: the checkpoint's {_shown(a)}, this run's {_shown(b)}")
    if differences:
        raise CheckpointError(
            f"{path} was trained on other inputs than this run prepares ({'; '.join(differences)})"
            f". Its weights fit only inputs prepared as it was trained: pass the checkpoint's "
            f"values (resume=RUN_DIR restores them: drop the overrides that change them), or "
            f"start from scratch."
        )


def _shown(value: Any) -> str:
    return (
        str(list(value))
        if isinstance(value, Sequence) and not isinstance(value, str)
        else str(value)
    )


def _classes(names: Sequence[str]) -> str:
    return f"{len(names)} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"


def check_checkpoint_fits(checkpoint: dict[str, Any], path: str, model: torch.nn.Module) -> None:
    """A checkpoint given to train must have been trained with the same network, classes
    and input preprocessing."""
    hparams = checkpoint["hyper_parameters"]
    ours = model.hparams
    theirs_arch, our_arch = hparams["net"].get("arch"), ours["net"].get("arch")
    theirs_classes, our_classes = hparams.get("class_names") or [], ours["class_names"] or []

    def describe(arch, classes):
        shown = ", ".join(classes[:3]) + (", ..." if len(classes) > 3 else "")
        return f"model arch {arch} with {len(classes)} classes ({shown})"

    if theirs_arch != our_arch or theirs_classes != our_classes:
        raise CheckpointError(
            f"ckpt_path={path} was trained as {describe(theirs_arch, theirs_classes)}, but this "
            f"run builds {describe(our_arch, our_classes)}. Pass the model= and data that the "
            f"checkpoint was trained with, or leave out ckpt_path to start from scratch."
        )
    check_inputs_fit(hparams, ours, f"ckpt_path={path}")
    state = model.state_dict()
    mismatched = sorted(
        k
        for k, v in checkpoint["state_dict"].items()
        if k not in state or tuple(state[k].shape) != tuple(v.shape)
    )
    missing = sorted(set(state) - set(checkpoint["state_dict"]))
    if mismatched or missing:
        raise CheckpointError(
            f"ckpt_path={path} has the same arch and classes but other layer shapes "
            f"({', '.join((mismatched or missing)[:4])}): it was trained with other model "
            f"switches (e.g. model.groups). Use the model settings it was trained with."
        )


def why_unloadable(path: Path, err: Exception) -> str:
    """What torch.load(weights_only=True) found wrong with a file, in a few words."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not zipfile.is_zipfile(path) and not head.startswith(b"\x80"):
        return "it is not a PyTorch file: empty, text or other data"
    message = str(err)
    if "Weights only load failed" in message:
        detail = message.split("WeightsUnpickler error:", 1)[-1].strip().split("\n")[0]
        return (
            f"it holds pickled objects that need code to rebuild ({detail[:120]}); "
            f"loading it could run arbitrary code, so it is refused"
        )
    first_line = (message.strip().splitlines() or ["no details"])[0][:200]
    return f"{type(err).__name__}: {first_line}"


def check_ablation_changes_something(cfg: DictConfig) -> None:
    """An ablation preset whose keys already hold its values on this model or experiment
    (ablation=no_lrn on a net without LRN) would compare the reference with itself.

    Recomposes the job's config without its ablation= choice and compares. Only inside a
    Hydra app (the entry points); the reference preset, ablation=baseline, is exempt.
    """
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    if not (HydraConfig.initialized() and GlobalHydra.instance().is_initialized()):
        return
    hydra_cfg = HydraConfig.get()
    choice = hydra_cfg.runtime.choices.get("ablation")
    if choice in (None, "null", "baseline"):
        return
    without = [o for o in hydra_cfg.overrides.task if o.split("=", 1)[0].lstrip("+~") != "ablation"]
    reference = compose(hydra_cfg.job.config_name, overrides=without)

    def settings(c: DictConfig) -> dict:
        plain = OmegaConf.to_container(c, resolve=False)
        plain.pop("ablation_name", None)
        return plain

    if settings(reference) == settings(cfg):
        model = hydra_cfg.runtime.choices.get("model")
        raise ConfigError(
            f"ablation={choice} changes nothing here: with model={model} and these settings "
            f"what it switches off is already off, so the run would repeat the reference. "
            f"Use a model that has the feature on (e.g. model=alexnet), or drop the ablation."
        )
