"""Low-precision numerics: the running-sum LRN in bf16 and fp16 is the float32 result,
rounded once to the input's dtype."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from alexnet_lab.models.alexnet import LocalResponseNorm

PAPER_LRN = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}


def paper_conv1() -> tuple[nn.Module, torch.Tensor]:
    """The paper's conv1 + ReLU (N(0, 0.01) init) and mean-subtracted 0-255 pixels: what
    feeds the paper's first LRN."""
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(3, 96, 11, stride=4, padding=2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.01)
    pixels = torch.randint(0, 256, (2, 3, 112, 112), generator=g).float() - 128
    return nn.Sequential(conv, nn.ReLU()).requires_grad_(False), pixels


def exact_lrn(x: torch.Tensor) -> torch.Tensor:
    """PyTorch's own layer in float64 on the same (already rounded) input."""
    return nn.LocalResponseNorm(**PAPER_LRN)(x.double())


def running_sum_lrn_in_input_dtype(x: torch.Tensor) -> torch.Tensor:
    """The layer before it computed in float32: the same running sum in x's dtype."""
    n, channels = PAPER_LRN["size"], x.shape[1]
    running = F.pad(x.square(), (0, 0, 0, 0, n // 2 + 1, (n - 1) // 2)).cumsum(1)
    window = running[:, n : n + channels] - running[:, :channels]
    return x * (PAPER_LRN["k"] + PAPER_LRN["alpha"] / n * window).pow(-PAPER_LRN["beta"])


def roundings_off(actual: torch.Tensor, exact: torch.Tensor) -> float:
    """The largest error in units of one rounding to actual's dtype: u |exact| (u = 2^-8 in
    bf16, 2^-11 in fp16), plus half the subnormal spacing for results near 0. A result
    computed in float32 and rounded once to the dtype is at most 1 off; NaN counts as inf."""
    finfo = torch.finfo(actual.dtype)
    unit_roundoff = finfo.eps / 2
    one_rounding = unit_roundoff * (exact.abs() + finfo.smallest_normal)
    error = (actual.double() - exact).abs() / one_rounding
    return error.nan_to_num(nan=float("inf")).max().item()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_lrn_on_low_precision_inputs_is_the_fp32_result_rounded_once(dtype):
    """precision=bf16-true / 16-true: the network's tensors are bf16 / fp16 throughout."""
    conv1, pixels = paper_conv1()
    x = conv1.to(dtype)(pixels.to(dtype)).requires_grad_()
    out = LocalResponseNorm(**PAPER_LRN)(x)
    assert out.dtype == dtype
    exact = exact_lrn(x.detach())
    assert roundings_off(out, exact) <= 1
    # The running sum in x's dtype is off by 2.4 (fp16) and 2.5 (bf16) roundings here.
    assert roundings_off(running_sum_lrn_in_input_dtype(x.detach()), exact) > 2
    (grad,) = torch.autograd.grad(out.float().square().sum(), x)
    assert grad.dtype == dtype and torch.isfinite(grad).all()


def test_lrn_under_cpu_bf16_autocast_is_the_fp32_result_rounded_once():
    """precision=bf16-mixed: autocast runs conv1 in bf16, so LRN receives bf16."""
    conv1, pixels = paper_conv1()
    lrn = LocalResponseNorm(**PAPER_LRN)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        activations = conv1(pixels)  # autocast runs the conv in bf16
        out = lrn(activations)
        old = running_sum_lrn_in_input_dtype(activations)
        float_out = lrn(activations.float())
    assert activations.dtype == out.dtype == torch.bfloat16
    assert float_out.dtype == torch.float32
    exact = exact_lrn(activations)
    assert roundings_off(out, exact) <= 1
    assert roundings_off(old, exact) > 2
    # float32 input under autocast: nothing in the layer is downcast.
    torch.testing.assert_close(float_out.double(), exact, rtol=1e-5, atol=0)


def test_lrn_in_fp16_survives_activations_whose_squares_overflow():
    x = torch.linspace(200, 400, 2 * 8 * 3 * 3).view(2, 8, 3, 3).to(torch.float16)  # 400^2 > 65504
    out = LocalResponseNorm(**PAPER_LRN)(x)
    assert roundings_off(out, exact_lrn(x)) <= 1
    assert not torch.isfinite(running_sum_lrn_in_input_dtype(x)).all()


def test_lrn_scripts_for_export_with_the_same_outputs():
    """TorchScript (src/export.py) has no autocast: the layer scripts without it."""
    conv1, pixels = paper_conv1()
    x = conv1(pixels).to(torch.bfloat16)
    lrn = LocalResponseNorm(**PAPER_LRN)
    assert torch.equal(torch.jit.script(lrn)(x), lrn(x))
