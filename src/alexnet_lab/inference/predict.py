"""Classify image files: a trained checkpoint, or torchvision's pretrained AlexNet weights.

The images go through the preprocessing the network was trained with. A checkpoint's
is stored in its `data` hyper-parameters and run as its validation ran: the centre
crop_size square of the image with its shorter side at resize_size (or the paper's ten
views), normalised with the same mean and std. torchvision's weights get torchvision's
own transform for them, `AlexNet_Weights.IMAGENET1K_V1.transforms()`. Probabilities are
a softmax over all classes, so each image's sum to 1.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig
from torchvision.models import AlexNet_Weights
from torchvision.transforms import functional as TVF

from alexnet_lab.checks import why_unloadable
from alexnet_lab.data.folders import IMAGE_EXTENSIONS
from alexnet_lab.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchNormalizer,
    EvalTransform,
    UnreadableImageError,
    read_image_rgb,
)
from alexnet_lab.errors import CheckpointError, ConfigError, DataError
from alexnet_lab.jobs.folder import plain
from alexnet_lab.training.module import AlexNetClassifier
from alexnet_lab.training.restore import load_checkpoint, model_from_checkpoint

if TYPE_CHECKING:
    from torchvision.transforms._presets import ImageClassification

log = logging.getLogger(__name__)

TOP_K = 5
TTA_MODES = ("center", "ten_crop")


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names in torchvision's (and the ILSVRC label) order."""
    text = resources.files("alexnet_lab.assets").joinpath("imagenet_classes.txt").read_text()
    return text.splitlines()


@dataclass
class Classifier:
    model: AlexNetClassifier
    class_names: list[str]
    resize_size: int
    crop_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    # torchvision's weights: torchvision's transform for them (resize the whole image, then
    # crop). None: a checkpoint's EvalTransform (the crop's source pixels, then resized).
    weights_transform: ImageClassification | None = None

    @classmethod
    def from_checkpoint(cls, path: str) -> Classifier:
        checkpoint = load_checkpoint(path)
        hparams = checkpoint["hyper_parameters"]
        model = model_from_checkpoint(checkpoint)
        return cls.build(model, hparams["class_names"], hparams.get("data") or {})

    @classmethod
    def from_torchvision_weights(
        cls, path: str, net_cfg: dict[str, Any] | None, classes_file: str | None
    ) -> Classifier:
        """A state_dict in torchvision's AlexNet layout (model=alexnet_owt), e.g. the
        file torchvision downloads for AlexNet_Weights.IMAGENET1K_V1."""
        if not net_cfg:
            raise ConfigError(
                "weights=PATH needs the network it fits: add model=alexnet_owt "
                "(torchvision's AlexNet layout)."
            )
        transform = AlexNet_Weights.IMAGENET1K_V1.transforms()
        (crop,), (resize,) = transform.crop_size, transform.resize_size
        if net_cfg.get("input_size") not in (None, crop):
            raise ConfigError(
                f"model.input_size={net_cfg['input_size']}: torchvision's AlexNet weights "
                f"take its {crop}x{crop} crops (resize {resize}, centre crop {crop}). Leave "
                f"model.input_size at {crop}."
            )
        names = read_class_names(classes_file) if classes_file else imagenet_classes()
        state_dict = load_state_dict(path)
        model = AlexNetClassifier(net=net_cfg, optimizer={}, class_names=names)
        try:
            model.net.load_state_dict(state_dict)
        except RuntimeError as err:
            detail = str(err).splitlines()[1:3] or [str(err)]
            raise CheckpointError(
                f"weights={path} does not fit model={net_cfg.get('arch')} with "
                f"{len(names)} classes ({' '.join(s.strip() for s in detail)[:300]}). Expected "
                f"torchvision's AlexNet state_dict with model=alexnet_owt; for another class "
                f"count pass classes=FILE (one name a line)."
            ) from None
        stats = (tuple(transform.mean), tuple(transform.std))
        return cls(model.eval(), names, resize, crop, *stats, weights_transform=transform)

    @classmethod
    def build(cls, model: AlexNetClassifier, names: list[str], data: dict) -> Classifier:
        crop = data.get("crop_size") or model.net.input_size
        resize = data.get("resize_size") or round(crop * 256 / 224)  # as the DataModule does
        mean = tuple(data.get("mean") or IMAGENET_MEAN)
        std = tuple(data.get("std") or IMAGENET_STD)
        return cls(model.eval(), list(names), resize, crop, mean, std)

    def to(self, device: str | torch.device) -> Classifier:
        self.model.to(device)
        return self

    @property
    def preprocessing(self) -> str:
        """How an image becomes the network's crop, in words (export metadata)."""
        crop, resize = self.crop_size, self.resize_size
        if self.weights_transform is not None:
            return (
                f"torchvision.models.AlexNet_Weights.IMAGENET1K_V1.transforms(): shorter "
                f"side resized to {resize} (bilinear, antialiased), centre {crop}x{crop} crop"
            )
        return (
            f"the centre {crop}x{crop} of the image with its shorter side at {resize}: its "
            f"source pixels cut out, then resized (bilinear, antialiased)"
        )

    @torch.no_grad()
    def preprocess(
        self, images: list[torch.Tensor], tta: str = "center", device: str | torch.device = "cpu"
    ) -> torch.Tensor:
        """Decoded uint8 images (any size) -> the normalised float batch the network takes
        on `device`: N x 3 x crop x crop, or N x 10 x 3 x crop x crop for ten_crop."""
        if self.weights_transform is not None:
            views = [self._torchvision_views(image, tta) for image in images]
            return torch.stack(views).to(device)
        transform = EvalTransform(self.resize_size, self.crop_size, ten_crop=tta == "ten_crop")
        batch = torch.stack([transform(image) for image in images])
        normalizer = BatchNormalizer(self.mean, self.std, pca_std=0.0)
        return normalizer(batch.to(device))

    def _torchvision_views(self, image: torch.Tensor, tta: str) -> torch.Tensor:
        transform = self.weights_transform
        if tta == "center":
            return transform(image)
        # The paper's ten views of torchvision's resize, normalised as its transform does.
        resized = TVF.resize(
            image,
            transform.resize_size,
            interpolation=transform.interpolation,
            antialias=transform.antialias,
        )
        views = torch.stack(TVF.ten_crop(resized, transform.crop_size))
        return TVF.normalize(
            TVF.convert_image_dtype(views, torch.float), transform.mean, transform.std
        )

    @torch.no_grad()
    def probabilities(self, images: list[torch.Tensor], tta: str = "center") -> torch.Tensor:
        """Decoded uint8 images (any size) -> (N, classes) probabilities."""
        device = next(self.model.parameters()).device
        return self.model.predict_proba(self.preprocess(images, tta, device))


def load_classifier(cfg: DictConfig) -> Classifier:
    """The network that src/predict.py or src/export.py was given: ckpt_path, or weights."""
    if bool(cfg.get("ckpt_path")) == bool(cfg.get("weights")):
        raise ConfigError(
            "Give one of ckpt_path=RUN/checkpoints/last.ckpt (a model trained here) or "
            "model=alexnet_owt weights=FILE.pth (torchvision's AlexNet weights)."
        )
    if cfg.get("ckpt_path"):
        return Classifier.from_checkpoint(cfg.ckpt_path)
    return Classifier.from_torchvision_weights(cfg.weights, plain(cfg.get("model")), cfg.classes)


def read_class_names(path: str) -> list[str]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"classes={path} does not exist: pass a text file, one class a line.")
    return [line.strip() for line in file.read_text().splitlines() if line.strip()]


def load_state_dict(path: str) -> dict[str, torch.Tensor]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise CheckpointError(f"weights={path} does not exist. Pass a .pth state_dict file.")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            f"weights={path} cannot be read safely: {why_unloadable(file, err)}. "
            f"Expected a state_dict file of tensors."
        ) from None
    if isinstance(state, dict) and "state_dict" in state and "hyper_parameters" in state:
        raise CheckpointError(
            f"weights={path} is a training checkpoint of this project: pass it as "
            f"ckpt_path={path} instead (it carries its own classes and preprocessing)."
        )
    if not (isinstance(state, dict) and state and all(torch.is_tensor(v) for v in state.values())):
        raise CheckpointError(f"weights={path} is not a state_dict (a dict of tensors).")
    return state


def find_images(entries: list[str]) -> list[Path]:
    """Files as given; folders searched recursively for image files (hidden ones skipped)."""
    found: list[Path] = []
    for entry in entries:
        path = Path(str(entry)).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [
                    Path(folder) / name
                    for name in sorted(files)
                    if not name.startswith(".")
                    and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
                ]
        else:
            raise DataError(f"images: {entry} does not exist (give image files or folders).")
    if not found:
        raise DataError(
            f"No image files in {', '.join(map(str, entries))} (looked for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))})."
        )
    return found


def predict_files(
    classifier: Classifier, paths: list[Path], tta: str = "center", batch_size: int = 32
) -> Iterator[dict[str, Any]]:
    """One record per file: {"image", "top5": [{"label", "prob"}, ...]} or {"image", "error"}."""
    k = min(TOP_K, len(classifier.class_names))
    for start in range(0, len(paths), batch_size):
        records: list[dict[str, Any]] = []  # in input order
        images = []
        for path in paths[start : start + batch_size]:
            records.append({"image": str(path)})
            try:
                images.append(read_image_rgb(str(path)))
            except UnreadableImageError as err:
                log.warning("Skipping unreadable image %s", err)
                records[-1]["error"] = str(err).split(": ", 1)[-1]
        if images:
            probs, indices = classifier.probabilities(images, tta).topk(k, dim=-1)
            readable = [r for r in records if "error" not in r]
            for record, p, idx in zip(readable, probs.tolist(), indices.tolist(), strict=True):
                names = [classifier.class_names[i] for i in idx]
                record["top5"] = [{"label": n, "prob": q} for n, q in zip(names, p, strict=True)]
        yield from records


def format_text(record: dict[str, Any]) -> str:
    if "error" in record:
        return f"{record['image']}\n  unreadable: {record['error']}"
    lines = [record["image"]]
    lines += [f"  {entry['prob']:8.2%}  {entry['label']}" for entry in record["top5"]]
    return "\n".join(lines)


def predict(cfg: DictConfig) -> dict[str, Any]:
    """The task behind src/predict.py: print each image's top-5 classes."""
    if cfg.output not in ("text", "json"):
        raise ConfigError(f"output={cfg.output}: use text or json.")
    if cfg.tta not in TTA_MODES:
        raise ConfigError(f"tta={cfg.tta}: use {' or '.join(TTA_MODES)}.")
    if not (isinstance(cfg.batch_size, int) and cfg.batch_size >= 1):
        raise ConfigError(f"batch_size={cfg.batch_size}: use a whole number >= 1.")
    classifier = load_classifier(cfg)
    images = cfg.images
    paths = find_images([images] if isinstance(images, str) else list(images))
    device = (
        cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    classifier.to(device)

    records = []
    for record in predict_files(classifier, paths, cfg.tta, cfg.batch_size):
        records.append(record)
        line = json.dumps(record) if cfg.output == "json" else format_text(record)
        print(line, flush=True)  # stdout carries only the predictions; logs go to stderr
    output_dir = Path(cfg.paths.output_dir)
    predictions = output_dir / "predictions.jsonl"
    output_dir.mkdir(parents=True, exist_ok=True)
    predictions.write_text("".join(json.dumps(r) + "\n" for r in records))
    unreadable = sum("error" in r for r in records)
    if unreadable == len(records):
        raise DataError(f"None of the {len(records)} images could be read; see the warnings.")
    log.info(
        "%d images classified, %d unreadable: %s",
        len(records) - unreadable,
        unreadable,
        predictions,
    )
    return {"images": len(records), "unreadable": unreadable, "predictions": str(predictions)}
