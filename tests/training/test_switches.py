"""Every ablation switch on every member of the family changes the network, or the build
(or the run) refuses it by name: a switch that silently does nothing would make an
ablation compare the reference with itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers.project import run_entry_point
from torch.nn import functional as F

from alexnet_lab.errors import ConfigError
from alexnet_lab.models import ARCHITECTURES, AlexNet
from alexnet_lab.models.alexnet import MaxPoolHalving
from alexnet_lab.models.alexnet import _check_args as check_args

# (key, value with the switch on, value with it off)
SWITCHES = [
    ("activation", "relu", "tanh"),
    ("lrn", True, False),
    ("dropout", 0.5, 0.0),
    ("overlap_pool", True, False),
    ("groups", 2, 1),
    ("init", "paper", "kaiming"),
    ("init", "paper", "default"),
    ("init", "kaiming", "default"),
]
ARG_ORDER = ("activation", "lrn", "dropout", "groups", "init")
BASE = {"activation": "relu", "lrn": False, "dropout": 0.0, "overlap_pool": True, "groups": 1}


def build(arch: str, **switches) -> AlexNet:
    torch.manual_seed(0)  # same seed: the only difference between two builds is the switch
    return AlexNet(arch, num_classes=10, **{"init": "kaiming", **BASE, **switches})


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize(("key", "on", "off"), SWITCHES, ids=lambda v: str(v))
def test_each_switch_changes_the_logits_or_the_build_refuses_it(arch, key, on, off):
    try:
        net_on, net_off = build(arch, **{key: on}), build(arch, **{key: off})
    except ConfigError as err:
        # The refusal names the key and the model, so the user knows what cannot apply.
        assert f"model.{key}" in str(err) and arch in str(err)
        return
    size = net_on.input_size
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    # Train mode (dropout acts), and the same RNG state for both forward passes.
    torch.manual_seed(2)
    logits_on = net_on.train()(x)
    torch.manual_seed(2)
    logits_off = net_off.train()(x)
    assert not torch.allclose(logits_on, logits_off), f"{arch}: model.{key}={on} vs {off}"


def test_refused_switches_are_exactly_the_ones_that_cannot_apply():
    """Today only dropout on the four-layer net, which has no hidden fc layer."""
    refused = []
    for arch in ARCHITECTURES:
        for key, on, _ in SWITCHES:
            args = {"activation": "relu", "init": "kaiming", **BASE, key: on}
            try:  # the argument check alone: building the 60M-parameter nets is slow
                check_args(arch, 10, *(args[k] for k in ARG_ORDER))
            except ConfigError:
                refused.append((arch, key))
    assert refused == [("cifar_fig1", "dropout")]


def test_figure1_net_has_lrn_after_its_first_two_convs_when_asked():
    kinds = [type(m).__name__ for m in build("cifar_fig1", lrn=True).features]
    assert kinds[:4] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPoolHalving"]
    assert kinds[4:8] == ["Conv2d", "ReLU", "LocalResponseNorm", "MaxPoolHalving"]
    assert "LocalResponseNorm" not in kinds[8:]
    assert "LocalResponseNorm" not in [type(m).__name__ for m in build("cifar_fig1").features]


def test_non_overlapping_pool_runs_the_2x2_window():
    """The forward pass, not only the attribute: on a map where the windows disagree, the
    2/2 pool gives max_pool2d(2, 2) and the 3/2 pool does not."""
    x = torch.randn(2, 4, 12, 12, generator=torch.Generator().manual_seed(0))
    plain, overlap = MaxPoolHalving(overlap=False), MaxPoolHalving(overlap=True)
    assert torch.equal(plain(x), F.max_pool2d(x, 2, 2))
    assert torch.equal(overlap(x), F.max_pool2d(x, 3, 2, padding=1))
    assert not torch.equal(plain(x), overlap(x))


def test_ablation_that_changes_nothing_is_refused(tmp_path: Path):
    """torchvision's variant has no LRN on: ablation=no_lrn would repeat the reference."""
    result = run_entry_point(
        "train.py",
        "model=alexnet_owt",
        "ablation=no_lrn",
        "logger=csv",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    assert "ablation=no_lrn changes nothing here" in result.stdout + result.stderr
    assert "model=alexnet_owt" in result.stdout + result.stderr
