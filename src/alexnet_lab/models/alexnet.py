"""The AlexNet family as one configurable network.

Every member is the same five-conv, three-fc shape; presets differ in widths,
conv1 geometry and which of the paper's design choices are switched on. The
ablation switches (activation, LRN, dropout, overlapping pooling, groups, init)
are constructor arguments so every member answers to the same config keys.

Layers live in numbered `features` / `classifier` Sequentials because that is
torchvision's layout: with the `alexnet_owt` preset the state_dict keys match
`torchvision.models.alexnet` and its weights load unchanged. A switched-off
layer is left out rather than replaced by an Identity, for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn import functional as F

from alexnet_lab.errors import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}
INITS = ("paper", "caffe", "kaiming", "default")


@dataclass(frozen=True)
class ConvSpec:
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    grouped: bool = False  # split across the two towers when groups=2
    lrn: bool = False  # LRN after the activation (paper: conv1, conv2)
    pool: bool = False  # max-pool after (LRN and) activation
    bias_one: bool = False  # the paper's bias-1 init (conv2, conv4, conv5)


@dataclass(frozen=True)
class Architecture:
    convs: tuple[ConvSpec, ...]
    hidden: tuple[int, ...]  # widths of the hidden fc layers (fc6, fc7)
    pooled_size: int  # spatial size the last feature map is pooled to
    input_size: int  # the crop the net is built for (data.crop_size follows it)
    dropout_before_fc: bool = False  # torchvision puts dropout on fc *inputs*


def _conv(out, k, s=1, p=0, **kw) -> ConvSpec:
    return ConvSpec(out, k, s, p, **kw)


# conv1 pads 2 so a 224 crop gives the paper's 55x55 ((224 + 4 - 11) / 4 + 1 = 55),
# keeping the paper's "224x224 patches" rather than Caffe's 227.
ARCHITECTURES: dict[str, Architecture] = {
    "alexnet": Architecture(
        convs=(
            _conv(96, 11, 4, 2, lrn=True, pool=True),
            _conv(256, 5, 1, 2, grouped=True, lrn=True, pool=True, bias_one=True),
            _conv(384, 3, 1, 1),
            _conv(384, 3, 1, 1, grouped=True, bias_one=True),
            _conv(256, 3, 1, 1, grouped=True, pool=True, bias_one=True),
        ),
        hidden=(4096, 4096),
        pooled_size=6,
        input_size=224,
    ),
    # torchvision.models.alexnet ("One weird trick"): one tower, narrower convs.
    # Its switches act where the paper's do (LRN after conv1/conv2, groups on conv2/4/5);
    # torchvision's weights load only with both off, as conf/model/alexnet_owt.yaml has them.
    "alexnet_owt": Architecture(
        convs=(
            _conv(64, 11, 4, 2, lrn=True, pool=True),
            _conv(192, 5, 1, 2, grouped=True, lrn=True, pool=True, bias_one=True),
            _conv(384, 3, 1, 1),
            _conv(256, 3, 1, 1, grouped=True, bias_one=True),
            _conv(256, 3, 1, 1, grouped=True, pool=True, bias_one=True),
        ),
        hidden=(4096, 4096),
        pooled_size=6,
        input_size=224,
        dropout_before_fc=True,
    ),
    # The same five-conv/three-fc design scaled to 28-64 px inputs: conv1 is
    # 5x5 stride 1 since an 11x11/4 filter would erase a 32 px image.
    "alexnet_small": Architecture(
        convs=(
            _conv(32, 5, 1, 2, lrn=True, pool=True),
            _conv(64, 5, 1, 2, grouped=True, lrn=True, pool=True, bias_one=True),
            _conv(96, 3, 1, 1),
            _conv(96, 3, 1, 1, grouped=True, bias_one=True),
            _conv(64, 3, 1, 1, grouped=True, pool=True, bias_one=True),
        ),
        hidden=(256, 256),
        pooled_size=4,
        input_size=32,
    ),
    # Figure 1's four-layer CIFAR-10 net, after cuda-convnet's CIFAR example
    # (its two locally-connected layers become convolutions here). LRN sits after the
    # first two convs' activations, as in cuda-convnet's CIFAR nets (the paper's CIFAR-10
    # LRN claim); Figure 1's protocol runs it off. No hidden fc layers, so no dropout.
    "cifar_fig1": Architecture(
        convs=(
            _conv(64, 5, 1, 2, lrn=True, pool=True),
            _conv(64, 5, 1, 2, grouped=True, lrn=True, pool=True, bias_one=True),
            _conv(32, 3, 1, 1),
            _conv(32, 3, 1, 1, grouped=True, bias_one=True),
        ),
        hidden=(),
        pooled_size=6,
        input_size=24,
    ),
}


class LocalResponseNorm(nn.LocalResponseNorm):
    """nn.LocalResponseNorm, same arguments and outputs, computed with a running sum.

    PyTorch sums the squares of neighbouring channels with avg_pool3d, which on
    CPU costs more than the convolutions of the small nets (2/3 of a training
    step here). A cumulative sum over channels gives the same window sums; the
    tests check it against PyTorch's layer, values and gradients.

    The sum runs in float32 whatever the input's dtype (autocast, bf16-true,
    16-true) and the result is cast back: in bf16 a window is the difference of
    two large running sums and loses most of its digits, and in fp16 the square
    of an activation above 256 overflows.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        if torch.jit.is_scripting():  # TorchScript has no autocast to turn off
            return self._normalize(wide).to(x.dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._normalize(wide).to(x.dtype)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        channels, n = x.shape[1], self.size
        # Zero-pad so the window [c - n//2, c + (n-1)//2] is cumsum[c + n] - cumsum[c].
        squares = F.pad(x.square(), (0, 0, 0, 0, n // 2 + 1, (n - 1) // 2))
        running = squares.cumsum(1)
        window = running[:, n : n + channels] - running[:, :channels]
        return x * (self.k + self.alpha / n * window).pow(-self.beta)


class MaxPoolHalving(nn.Module):
    """Max-pool with stride 2 whose output is always floor(n / 2).

    The paper's overlapping 3/2 pool and the 2/2 pool it was compared with give
    the same sizes on AlexNet's odd maps (55, 27, 13). On even maps a 3/2 pool
    would give one fewer row, so it pads by one there: the overlap ablation then
    changes only the window, never the shapes downstream.
    """

    def __init__(self, overlap: bool = True):
        super().__init__()
        self.kernel_size = 3 if overlap else 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel_size == 2:
            return F.max_pool2d(x, 2, 2)
        h, w = x.shape[-2:]
        # F.max_pool2d pads with -inf, so padding never wins the max.
        return F.max_pool2d(x, 3, 2, padding=(int(h % 2 == 0), int(w % 2 == 0)))

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride=2"


class AlexNet(nn.Module):
    def __init__(
        self,
        arch: str = "alexnet",
        num_classes: int = 1000,
        activation: str = "relu",
        lrn: bool = True,
        dropout: float | None = None,  # None: the paper's 0.5 where there are fc6/fc7
        overlap_pool: bool = True,
        groups: int = 2,
        init: str = "paper",
        input_size: int | None = None,
        width: float = 1.0,
    ):
        super().__init__()
        if dropout is None:
            dropout = 0.5 if ARCHITECTURES.get(arch, ARCHITECTURES["alexnet"]).hidden else 0.0
        spec = _check_args(arch, num_classes, activation, lrn, dropout, groups, init)
        spec = scale_width(spec, arch, width)
        self.arch = arch
        # The crop size the data pipeline should feed (the adaptive pool accepts others).
        self.input_size = input_size or spec.input_size
        act = ACTIVATIONS[activation]

        layers: list[nn.Module] = []
        in_ch = 3
        self._bias_one: list[nn.Module] = []
        for conv_spec in spec.convs:
            conv = nn.Conv2d(
                in_ch,
                conv_spec.out_channels,
                conv_spec.kernel,
                conv_spec.stride,
                conv_spec.padding,
                groups=groups if conv_spec.grouped else 1,
            )
            layers += [conv, act()]
            if lrn and conv_spec.lrn:
                # PyTorch divides alpha by size, as Krizhevsky's code did: this is
                # the paper's k=2, n=5, alpha=1e-4, beta=0.75.
                layers.append(LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
            if conv_spec.pool:
                layers.append(MaxPoolHalving(overlap_pool))
            if conv_spec.bias_one:
                self._bias_one.append(conv)
            in_ch = conv_spec.out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(spec.pooled_size)

        head: list[nn.Module] = []
        width = in_ch * spec.pooled_size**2
        for hidden in spec.hidden:
            fc = nn.Linear(width, hidden)
            if dropout and spec.dropout_before_fc:
                head.append(nn.Dropout(dropout))
            head += [fc, act()]
            if dropout and not spec.dropout_before_fc:
                head.append(nn.Dropout(dropout))
            self._bias_one.append(fc)
            width = hidden
        head.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*head)

        if init == "paper":
            self._gaussian_init(bias=1.0, hidden_fc_std=0.01)
        elif init == "caffe":
            # Caffe's bvlc_alexnet: biases 0.1 ("initialization to 1 gave flat loss") and
            # fc6/fc7 weights N(0, 0.005); inputs there were mean-subtracted 0-255 pixels.
            self._gaussian_init(bias=0.1, hidden_fc_std=0.005)
        elif init == "kaiming":
            self._kaiming_init()
        del self._bias_one  # only needed for init; keep the module tree clean

    def _gaussian_init(self, bias: float, hidden_fc_std: float) -> None:
        """Weights N(0, 0.01), the hidden fc layers' (fc6, fc7) N(0, hidden_fc_std); `bias`
        on the layers the paper starts active (conv2, conv4, conv5, fc6, fc7), else 0."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                hidden_fc = isinstance(module, nn.Linear) and module in self._bias_one
                nn.init.normal_(module.weight, 0.0, hidden_fc_std if hidden_fc else 0.01)
                nn.init.constant_(module.bias, bias if module in self._bias_one else 0.0)

    def _kaiming_init(self) -> None:
        """He et al. (2015): keeps activation variance constant through deep ReLU stacks."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _check_args(arch, num_classes, activation, lrn, dropout, groups, init) -> Architecture:
    if arch not in ARCHITECTURES:
        raise ConfigError(
            f"Unknown model arch {arch!r}. Choose one of: {', '.join(ARCHITECTURES)}."
        )
    if activation not in ACTIVATIONS:
        raise ConfigError(
            f"Unknown activation {activation!r}. Choose one of: {', '.join(ACTIVATIONS)}."
        )
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"model.dropout={dropout} is out of range: use a probability in [0, 1).")
    spec = ARCHITECTURES[arch]
    # Every switch must change the network it is given to; one that cannot is an error.
    if dropout and not spec.hidden:
        raise ConfigError(
            f"model.dropout={dropout} cannot apply to model arch {arch!r}: it has no hidden "
            f"fully-connected layers (the paper's dropout sits on fc6/fc7). Use model.dropout=0."
        )
    if lrn and not any(conv.lrn for conv in spec.convs):
        raise ConfigError(f"model.lrn=true cannot apply to model arch {arch!r}: it has no LRN.")
    if groups == 2 and not any(conv.grouped for conv in spec.convs):
        raise ConfigError(f"model.groups=2 cannot apply to model arch {arch!r}: no grouped convs.")
    if groups not in (1, 2):
        raise ConfigError(
            f"model.groups={groups}: use 2 (the paper's two towers) or 1 (one tower)."
        )
    if init not in INITS:
        raise ConfigError(f"Unknown init {init!r}. Choose one of: {', '.join(INITS)}.")
    if int(num_classes) < 2:
        raise ConfigError(f"num_classes={num_classes}: a classifier needs at least 2 classes.")
    return ARCHITECTURES[arch]


# The small family, whose widths are ours to choose; alexnet and alexnet_owt keep the
# paper's and torchvision's (whose weights must load).
WIDTH_SCALABLE = ("alexnet_small", "cifar_fig1")


def scale_width(spec: Architecture, arch: str, width: float) -> Architecture:
    """Every conv's channel count times `width` (model.width), rounded to an even number
    so two towers still split it; the fc layers keep their widths."""
    if float(width) == 1.0:
        return spec
    if arch not in WIDTH_SCALABLE:
        raise ConfigError(
            f"model.width={width} applies to the small family ({', '.join(WIDTH_SCALABLE)}); "
            f"{arch} keeps its published widths. Drop model.width or use model=alexnet_small."
        )
    if not 0.0 < float(width) <= 4.0:
        raise ConfigError(f"model.width={width}: use a multiplier in (0, 4], e.g. 0.5.")
    convs = tuple(
        replace(c, out_channels=max(2, 2 * round(c.out_channels * width / 2))) for c in spec.convs
    )
    return replace(spec, convs=convs)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
