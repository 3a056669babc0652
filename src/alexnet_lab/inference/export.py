"""Export a network for serving: TorchScript or ONNX, normalisation inside.

The network is a checkpoint trained here, or torchvision's AlexNet weights. The
exported model takes a batch of RGB crops, N x 3 x crop x crop, already resized as
the network expects (shorter side to resize_size, the centre crop_size square; the
`preprocessing` metadata says exactly how), either uint8 in [0, 255] or float in
[0, 1], and returns logits (softmax: probabilities). Class names and the
preprocessing travel inside the file as metadata.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from alexnet_lab.errors import ConfigError
from alexnet_lab.inference.predict import Classifier, load_classifier

log = logging.getLogger(__name__)

FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
METADATA_FILE = "alexnet_lab.json"  # the TorchScript extra file holding the metadata


class Preprocessed(nn.Module):
    """The network behind its normalisation, computed as the training pipeline's
    BatchNormalizer does (x * 1/(255 std) - mean/std), so the logits match."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.net = net
        mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale_uint8", 1 / (255 * std))
        self.register_buffer("scale_float", 1 / std)
        self.register_buffer("bias", -mean / std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scale = self.scale_uint8 if images.dtype == torch.uint8 else self.scale_float
        return self.net(images.float() * scale + self.bias)


def metadata(classifier: Classifier, input_dtype: str) -> dict[str, Any]:
    return {
        "class_names": classifier.class_names,
        "resize_size": classifier.resize_size,
        "crop_size": classifier.crop_size,
        "mean": list(classifier.mean),
        "std": list(classifier.std),
        "preprocessing": classifier.preprocessing,
        "input": f"N x 3 x {classifier.crop_size} x {classifier.crop_size} RGB, {input_dtype}",
        "output": "logits (softmax gives class probabilities)",
    }


def export_torchscript(module: Preprocessed, path: Path, meta: dict) -> None:
    scripted = torch.jit.script(module)  # scripted, not traced: the dtype branch survives
    with warnings.catch_warnings():  # TorchScript is deprecated upstream, still supported
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(scripted, str(path), _extra_files={METADATA_FILE: json.dumps(meta)})


def export_onnx(module: Preprocessed, example: torch.Tensor, path: Path, meta: dict) -> None:
    try:
        import onnx
    except ImportError:
        raise ConfigError(
            "format=onnx needs the onnx packages: pip install -e '.[export]' "
            "(onnx, onnxscript; onnxruntime to run the file)."
        ) from None
    for name in ("onnxscript", "onnx_ir"):  # their optimiser logs every pass at INFO
        logging.getLogger(name).setLevel(logging.WARNING)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        module,
        (example,),
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes={"images": {0: batch}},
        dynamo=True,
        verbose=False,
    )
    program.save(str(path))
    model = onnx.load(str(path))
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(path))


def export(cfg: DictConfig) -> dict[str, Any]:
    """The task behind src/export.py."""
    if cfg.format not in FORMATS:
        raise ConfigError(f"format={cfg.format}: use {' or '.join(FORMATS)}.")
    if cfg.input_dtype not in ("uint8", "float32"):
        raise ConfigError(f"input_dtype={cfg.input_dtype}: use uint8 or float32.")
    classifier = load_classifier(cfg)
    module = Preprocessed(classifier.model.net, classifier.mean, classifier.std).eval()
    path = Path(cfg.output or Path(cfg.paths.output_dir) / f"alexnet{FORMATS[cfg.format]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = metadata(classifier, cfg.input_dtype)

    crop = classifier.crop_size
    if cfg.input_dtype == "uint8":
        example = torch.randint(0, 256, (2, 3, crop, crop), dtype=torch.uint8)
    else:
        example = torch.rand(2, 3, crop, crop)
    with torch.no_grad():
        if cfg.format == "torchscript":
            export_torchscript(module, path, meta)
        else:
            export_onnx(module, example, path, meta)
    log.info("Wrote %s (%s; input %s)", path, cfg.format, meta["input"])
    print(path)
    return {
        "format": cfg.format,
        "path": str(path),
        **meta,
        "class_names": len(meta["class_names"]),
    }
