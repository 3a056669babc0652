"""A trained model back from its checkpoint file, with a clear error when the file cannot be one."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from alexnet_lab.checks import (
    why_unloadable,
)
from alexnet_lab.errors import CheckpointError
from alexnet_lab.training.module import AlexNetClassifier

log = logging.getLogger(__name__)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint without unpickling code (weights_only) and check it is one of ours."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"ckpt_path={path} does not exist. Pass the path of a .ckpt file "
            f"from a run's checkpoints/ folder."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load fails in many ways on files that are not its own
        raise CheckpointError(
            f"{path} is not a checkpoint this project can read safely: "
            f"{why_unloadable(path, err)}. Expected a Lightning .ckpt written by src/train.py."
        ) from None
    hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
    if (
        isinstance(checkpoint, dict)
        and checkpoint
        and all(isinstance(v, torch.Tensor) for v in checkpoint.values())
    ):
        raise CheckpointError(
            f"{path} holds bare network weights (a state_dict with {len(checkpoint)} tensors, "
            f"e.g. torchvision's alexnet file), not a training checkpoint. Expected a .ckpt "
            f"written by src/train.py. To classify images with torchvision's AlexNet weights: "
            f"python src/predict.py model=alexnet_owt weights={path} 'images=[...]'."
        )
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "net" not in hparams:
        raise CheckpointError(
            f"{path} is a PyTorch file but not an AlexNet Lab checkpoint (it lacks the "
            f"state_dict and the model config). Expected a .ckpt written by src/train.py."
        )
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any]) -> AlexNetClassifier:
    model = AlexNetClassifier(**checkpoint["hyper_parameters"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()
