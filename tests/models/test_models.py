"""The network: shapes, exact parameter counts, init, and what each switch changes."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from alexnet_lab.errors import ConfigError
from alexnet_lab.models import ARCHITECTURES, AlexNet, count_parameters
from alexnet_lab.models.alexnet import LocalResponseNorm, MaxPoolHalving


def layers(net: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, kind)]


def test_conv1_gives_55x55_from_a_224_crop():
    net = AlexNet("alexnet")
    conv1 = net.features[0]
    assert conv1.kernel_size == (11, 11) and conv1.stride == (4, 4)
    assert conv1(torch.zeros(1, 3, 224, 224)).shape == (1, 96, 55, 55)


def test_paper_feature_map_sizes_match_figure_2():
    net = AlexNet("alexnet").eval()
    sizes = []
    x = torch.zeros(1, 3, 224, 224)
    for layer in net.features:
        x = layer(x)
        if isinstance(layer, (nn.Conv2d, MaxPoolHalving)):
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [
        (96, 55, 55), (96, 27, 27), (256, 27, 27), (256, 13, 13),
        (384, 13, 13), (384, 13, 13), (256, 13, 13), (256, 6, 6),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("arch", "kwargs", "expected"),
    [
        ("alexnet", {}, 60_965_224),
        ("alexnet", {"groups": 1}, 62_378_344),
        ("alexnet_owt", {"lrn": False, "groups": 1, "init": "default"}, 61_100_840),
    ],
)
def test_exact_parameter_counts_with_1000_classes(arch, kwargs, expected):
    assert count_parameters(AlexNet(arch, num_classes=1000, **kwargs)) == expected


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_logits_shape_at_each_members_input_size(arch):
    net = AlexNet(arch, num_classes=7, init="default")
    size = net.input_size
    assert net(torch.randn(2, 3, size, size)).shape == (2, 7)


def test_paper_layers_are_where_the_paper_puts_them():
    net = AlexNet("alexnet")
    convs = layers(net, nn.Conv2d)
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    lrns = layers(net, nn.LocalResponseNorm)
    assert len(lrns) == 2
    assert all((m.size, m.alpha, m.beta, m.k) == (5, 1e-4, 0.75, 2.0) for m in lrns)
    # LRN follows the ReLU of conv1 and conv2 and precedes their pooling.
    kinds = [type(m).__name__ for m in net.features]
    assert kinds[:4] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPoolHalving"]
    assert kinds[4:8] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPoolHalving"]
    # Dropout 0.5 on the outputs of fc6 and fc7.
    head = [type(m).__name__ for m in net.classifier]
    assert head == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert all(m.p == 0.5 for m in layers(net, nn.Dropout))


def test_paper_init_statistics():
    torch.manual_seed(0)
    net = AlexNet("alexnet")
    weighted = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    names = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
    for name, layer in zip(names, weighted, strict=True):
        std = layer.weight.std().item()
        assert abs(layer.weight.mean().item()) < 2e-3, name
        assert 0.0095 < std < 0.0105, f"{name} weight std {std}"
        bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(layer.bias == bias), name


def test_owt_loads_torchvision_weights_and_gives_identical_logits():
    torch.manual_seed(0)
    reference = torchvision.models.alexnet(weights=None).eval()
    ours = AlexNet("alexnet_owt", lrn=False, groups=1, init="default").eval()
    assert ours.state_dict().keys() == reference.state_dict().keys()
    ours.load_state_dict(reference.state_dict())  # strict: same keys, same shapes
    x = torch.randn(2, 3, 224, 224)
    assert torch.equal(ours(x), reference(x))


def test_fast_lrn_matches_pytorch_values_and_gradients():
    x = (torch.randn(3, 17, 6, 5) * 20).requires_grad_()
    for size in (5, 4, 3):
        ours = LocalResponseNorm(size, alpha=1e-4, beta=0.75, k=2.0)
        reference = nn.LocalResponseNorm(size, alpha=1e-4, beta=0.75, k=2.0)
        torch.testing.assert_close(ours(x), reference(x))
        (g_ours,) = torch.autograd.grad(ours(x).square().sum(), x)
        (g_ref,) = torch.autograd.grad(reference(x).square().sum(), x)
        torch.testing.assert_close(g_ours, g_ref)


# --- switches ---------------------------------------------------------------


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_activation_switch_replaces_every_activation(arch):
    net = AlexNet(arch, activation="tanh")
    assert layers(net, nn.Tanh) and not layers(net, nn.ReLU)


def test_unknown_activation_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="relu.*tanh"):
        AlexNet("alexnet_small", activation="swishy")


def test_lrn_switch():
    assert not layers(AlexNet("alexnet", lrn=False), nn.LocalResponseNorm)
    assert len(layers(AlexNet("alexnet_small", lrn=True), nn.LocalResponseNorm)) == 2


@pytest.mark.parametrize("p", [0.0, 0.3])
def test_dropout_switch(p):
    drops = layers(AlexNet("alexnet", dropout=p), nn.Dropout)
    assert [d.p for d in drops] == ([p, p] if p else [])


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_out_of_range_is_an_error(p):
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        AlexNet("alexnet_small", dropout=p)


@pytest.mark.parametrize("arch", ["alexnet", "alexnet_small", "cifar_fig1"])
def test_overlap_pool_switch_changes_windows_not_shapes(arch):
    overlap = AlexNet(arch, overlap_pool=True, init="default").eval()
    plain = AlexNet(arch, overlap_pool=False, init="default").eval()
    assert {p.kernel_size for p in layers(overlap, MaxPoolHalving)} == {3}
    assert {p.kernel_size for p in layers(plain, MaxPoolHalving)} == {2}
    size = overlap.input_size
    x = torch.randn(1, 3, size, size)
    assert overlap.features(x).shape == plain.features(x).shape


def test_groups_switch():
    one_tower = AlexNet("alexnet", groups=1)
    assert {c.groups for c in layers(one_tower, nn.Conv2d)} == {1}
    with pytest.raises(ConfigError, match="groups"):
        AlexNet("alexnet", groups=3)


def test_unknown_arch_is_an_error():
    with pytest.raises(ConfigError, match="alexnet_owt"):
        AlexNet("vgg16")
