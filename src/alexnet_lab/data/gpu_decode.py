"""data.decode_device=cuda: decode JPEGs on the GPU (nvJPEG, through torchvision) and
resize, crop and flip them there.

The DataLoader workers then only read files, so a few workers feed a fast GPU
that CPU decoding would starve. The same TrainTransform/EvalTransform run on the
decoded GPU tensors; non-JPEG files (PNG, ...) are decoded on the CPU and moved.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file

from alexnet_lab.errors import ConfigError, DataError

JPEG_MAGIC = (0xFF, 0xD8, 0xFF)
DECODE_DEVICES = ("cpu", "cuda")


def check_decode_device(decode_device: str) -> str:
    if decode_device not in DECODE_DEVICES:
        raise ConfigError(
            f"data.decode_device={decode_device!r}: use 'cpu' (decode in the DataLoader "
            f"workers, the default) or 'cuda' (decode JPEGs on the GPU)."
        )
    if decode_device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "data.decode_device=cuda decodes JPEGs on a CUDA GPU, and PyTorch sees none on "
            "this machine. Use data.decode_device=cpu (the default)."
        )
    return decode_device


class EncodedImages(Dataset):
    """(the file's bytes as a 1-D uint8 tensor, class index): workers only read files."""

    def __init__(self, samples: list[tuple[str, int]]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, target = self.samples[index]
        return read_file(path), target


def collate_encoded(samples: list[tuple[torch.Tensor, int]]):
    """Files differ in length: keep them as a list; decode_batch decodes them all at once."""
    return [data for data, _ in samples], torch.tensor([target for _, target in samples])


def is_jpeg(data: torch.Tensor) -> bool:
    return data.numel() >= 3 and tuple(data[:3].tolist()) == JPEG_MAGIC


def decode_batch(encoded: list[torch.Tensor], device, transform) -> torch.Tensor:
    """Decode a batch of image files on `device` (one batched nvJPEG call for the JPEGs)
    and run `transform` on each decoded image there; returns the stacked uint8 batch."""
    device = torch.device(device)
    jpeg = [is_jpeg(data) for data in encoded]
    jpegs = [data for data, j in zip(encoded, jpeg, strict=True) if j]
    try:
        decoded = iter(decode_jpeg(jpegs, mode=ImageReadMode.RGB, device=device) if jpegs else [])
        images = [
            next(decoded) if j else decode_image(data, mode=ImageReadMode.RGB).to(device)
            for data, j in zip(encoded, jpeg, strict=True)
        ]
    except RuntimeError as err:
        raise DataError(
            f"Decoding a batch of images on {device} failed ({str(err).splitlines()[0][:200]}). "
            f"The GPU path does not skip unreadable files: run src/prepare.py on the tree "
            f"(it lists unreadable files and writes clean JPEGs), or use data.decode_device=cpu."
        ) from None
    return torch.stack([transform(image) for image in images])
