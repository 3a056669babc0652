"""The paper's preprocessing, split where it is cheapest.

Per-sample work (decode, resize, crop, flip) stays in uint8 inside the
DataLoader workers: a uint8 image is a quarter of the bytes of a float one and
torchvision's uint8 resize has a vectorised path. Everything that touches every
pixel in float (conversion, normalisation, PCA colour noise) runs once per
batch on the training device, in `BatchNormalizer`.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import default_collate
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

# Commonly used ImageNet statistics for pixels in [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (  # columns are the eigenvectors
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


class UnreadableImageError(ValueError):
    """The file is not an image either decoder can read (corrupt, truncated, empty)."""


def read_image_rgb(path: str) -> torch.Tensor:
    """Decode any image file to a 3xHxW uint8 tensor (grey, CMYK, palette, RGBA -> RGB).

    torchvision's decoder is the fast path; PIL reads what it cannot (BMP, TIFF, odd
    JPEG variants). Raises UnreadableImageError when neither can.
    """
    try:
        image = decode_image(path, mode=ImageReadMode.RGB)
    except RuntimeError as err:
        image = _read_with_pil(path, err)
    if image.dtype != torch.uint8:  # 16-bit PNGs
        image = TF.to_dtype(image, torch.uint8, scale=True)
    return image


def _read_with_pil(path: str, decode_error: RuntimeError) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as pil:
            return TF.pil_to_tensor(pil.convert("RGB"))
    except UnidentifiedImageError:
        empty = "non empty file" in str(decode_error)
        reason = "empty file" if empty else "not an image format either decoder knows"
        raise UnreadableImageError(f"{path}: {reason}") from None
    except (OSError, ValueError, SyntaxError) as err:
        # torchvision's message starts with its C++ source location: keep the sentence.
        reason = re.sub(r"^.*\.cpp:\d+, ", "", str(decode_error)) or str(err)
        raise UnreadableImageError(f"{path}: {reason}") from None


def resize_center(img: torch.Tensor, size: int) -> torch.Tensor:
    """The paper's stored form: shorter side to `size`, then the central size x size."""
    img = TF.resize(img, size, antialias=True)
    return TF.center_crop(img, [size, size])


def crop_window(img: torch.Tensor, resize_size: int, top: int, left: int, size: int):
    """The source pixels of the `size` x `size` crop at (top, left) of the resized square.

    Cropping from the source first, then resizing, means only the pixels that are
    kept get resized (a 224 crop of the 256 square of a 500x375 photo is 60% of the
    full 341x256 resize). The window is rounded to whole source pixels, so it can
    sit up to half a source pixel off the full resize's crop. Already-resized images
    (a `prepare`d tree) have a window of exactly `size` pixels: a plain crop, no resize.
    """
    height, width = img.shape[-2:]
    side = min(height, width)
    scale = side / resize_size
    # Same rounding as torchvision's center_crop, so scale 1 is exactly centre crop + crop.
    y = int(round((height - side) / 2.0)) + top * scale
    x = int(round((width - side) / 2.0)) + left * scale
    n = max(1, round(size * scale))
    y, x = min(int(round(y)), height - n), min(int(round(x)), width - n)
    return img[..., y : y + n, x : x + n]


def resize_square(img: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased bilinear resize to size x size (a no-op when already that size)."""
    if img.shape[-2:] == (size, size):
        return img
    if img.dtype == torch.uint8 and img.device.type == "cpu":
        # PyTorch's vectorised uint8 resize wants a channels-last batch; decoded
        # images already are channels-last in memory, so this copy is a plain one.
        batch = img.unsqueeze(0).contiguous(memory_format=torch.channels_last)
        return F.interpolate(batch, size=(size, size), mode="bilinear", antialias=True)[0]
    return TF.resize(img, [size, size], antialias=True)  # float, or on a GPU


class TrainTransform:
    """uint8 -> uint8: resize + centre square, random crop, random horizontal flip.

    Works on CPU or GPU tensors (data.decode_device=cuda runs it on the GPU).
    """

    def __init__(self, resize_size: int, crop_size: int, augment: bool = True):
        self.resize_size = resize_size
        self.crop_size = crop_size
        self.augment = augment

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        size, crop = self.resize_size, self.crop_size
        flip = False
        if self.augment:
            # One draw for crop position and flip: each torch RNG call costs ~20 us.
            positions = size - crop + 1
            draw = int(torch.randint(0, 2 * positions * positions, ()))
            flip, (top, left) = bool(draw & 1), divmod(draw >> 1, positions)
        else:
            top = left = int(round((size - crop) / 2.0))
        img = resize_square(crop_window(img, size, top, left, crop), crop)
        return img.flip(-1) if flip else img


class EvalTransform:
    """uint8 -> uint8: the centre crop, or the paper's ten views stacked (10x3xHxW)."""

    def __init__(self, resize_size: int, crop_size: int, ten_crop: bool = False):
        self.resize_size = resize_size
        self.crop_size = crop_size
        self.ten_crop = ten_crop

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        size, crop = self.resize_size, self.crop_size
        if self.ten_crop:
            square = resize_square(crop_window(img, size, 0, 0, size), size)
            return torch.stack(TF.ten_crop(square, [crop, crop]))
        centre = int(round((size - crop) / 2.0))
        return resize_square(crop_window(img, size, centre, centre, crop), crop)


def stack_images(images: list[torch.Tensor]) -> torch.Tensor:
    """Batch 3xHxW images; in a DataLoader worker the batch lands in shared memory.

    Decoded images are channels-last in memory (torchvision decodes to HxWx3 and
    returns a permuted view), and so are the crops above. Stacking them as HxWx3
    is a plain copy where stacking as 3xHxW would transpose every pixel; the batch
    comes out as Bx3xHxW in channels_last memory, which convolutions accept as is.
    """
    if images[0].dim() != 3:  # ten-crop views
        return default_collate(images)
    return default_collate([img.permute(1, 2, 0) for img in images]).permute(0, 3, 1, 2)


def collate_images(samples: list[tuple[torch.Tensor, int]]):
    """The DataLoader's collate_fn for (image, class index) samples."""
    return (
        stack_images([image for image, _ in samples]),
        torch.tensor([target for _, target in samples]),
    )


class BatchNormalizer(nn.Module):
    """uint8 batch -> normalised float batch on the batch's device, with PCA colour noise.

    "Fancy PCA" (paper, section 4.1): add sum_i alpha_i * lambda_i * p_i to every
    pixel of an image, alpha_i ~ N(0, sigma) drawn once per image.
    """

    def __init__(
        self,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        pca_std: float = 0.1,
        eigval=IMAGENET_EIGVAL,
        eigvec=IMAGENET_EIGVEC,
    ):
        super().__init__()
        self.pca_std = pca_std
        self.register_buffer("mean", torch.tensor(mean).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(3, 1, 1), persistent=False)
        self.register_buffer("eigval", torch.tensor(eigval), persistent=False)
        self.register_buffer("eigvec", torch.tensor(eigvec), persistent=False)

    def forward(self, images: torch.Tensor, pca_noise: bool = False) -> torch.Tensor:
        # (x / 255 + shift - mean) / std as x * scale + bias: one new float tensor,
        # then two in-place passes (every extra temporary is a full-batch allocation).
        device = images.device
        mean, std = self.mean.to(device), self.std.to(device)
        bias = -mean / std
        if pca_noise and self.pca_std > 0:
            alpha = torch.randn(images.shape[0], 3, device=device) * self.pca_std
            rgb_shift = (alpha * self.eigval.to(device)) @ self.eigvec.to(device).T  # (B, 3)
            bias = bias + rgb_shift.view(-1, 3, *([1] * (images.dim() - 2))) / std
        # Batches arrive channels-last (see stack_images); the model gets the usual
        # contiguous layout, converted in the same pass as uint8 -> float.
        x = images.to(torch.float32, memory_format=torch.contiguous_format)
        return x.mul_(1 / (255 * std)).add_(bias)
