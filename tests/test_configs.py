"""Every config group and preset composes, and builds what it names: each data option's
DataModule set up on tiny local data (never the network) and a batch drawn, each scheduler
stepped, each callback, logger and debug preset built."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
from helpers.fakes import fake_fashion_source
from helpers.project import CONF, compose_config, make_image_folder
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from alexnet_lab.data.prepare import prepare
from alexnet_lab.errors import DataError
from alexnet_lab.jobs.folder import plain
from alexnet_lab.runs import build_callbacks
from alexnet_lab.tracking.loggers import build_loggers
from alexnet_lab.training.module import AlexNetClassifier

GROUPS = ["model", "data", "optimizer", "scheduler", "trainer", "logger", "callbacks", "debug"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    """Each data option's files, in its own format, a few images each: an image tree
    (folder, imagenet, and cifar10, whose converter skips a root that has train/), the
    four IDX files Fashion-MNIST is converted from, and LitData shards."""
    tmp = tmp_path_factory.mktemp("tiny_data")
    tree = make_image_folder(tmp / "tree", per_class=4, size=(36, 40))
    fake_fashion_source(tmp / "idx", n_train=30, n_test=20)
    shard_overrides = [f"src={tree}", f"dst={tmp / 'shards'}", "format=litdata", "size=36"]
    prepare(compose_config([*shard_overrides, "progress=false"], tmp, config_name="prepare"))
    return {"tree": tree, "idx": tmp / "idx", "shards": tmp / "shards", "tmp": tmp}


def data_overrides(option: str, data: dict[str, Path], shared_data_dir: Path) -> list[str]:
    tiny = ["data.batch_size=4", "data.num_workers=0"]
    if option == "synthetic":
        return tiny
    if option == "fashion_mnist_mini":
        return [*tiny, f"paths.data_dir={shared_data_dir}"]
    if option == "fashion_mnist":
        root = data["tmp"] / "fashion-mnist"
        return [*tiny, f"data.root={root}", f"data.prepare.source={data['idx']}"]
    if option == "stream":
        return [*tiny, f"data.root={data['shards']}"]
    return [*tiny, f"data.root={data['tree']}"]  # folder, imagenet, cifar10


def build(group: str, option: str, cfg) -> None:
    """Build what `group=option` names, as train.py would, and use it once."""
    if group == "data":
        datamodule = hydra.utils.instantiate(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")
        images, targets = next(iter(datamodule.train_dataloader()))
        assert len(images) == len(targets) == 4
        assert int(targets.max()) < datamodule.num_classes
        return
    if group in ("model", "optimizer", "scheduler"):
        model = AlexNetClassifier(
            net=plain(cfg.model),
            optimizer=plain(cfg.optimizer),
            scheduler=plain(cfg.get("scheduler")) or None,
            class_names=[str(i) for i in range(10)],
        )
        built = model.configure_optimizers()
        optimizer = built["optimizer"] if isinstance(built, dict) else built
        optimizer.step()
        if isinstance(built, dict):  # scheduler=none gives the optimizer alone
            scheduler = built["lr_scheduler"]["scheduler"]
            monitored = "monitor" in built["lr_scheduler"]
            scheduler.step(0.5) if monitored else scheduler.step()
        return
    if group == "callbacks":
        built = {type(c).__name__ for c in build_callbacks(cfg)}
        wanted = {c._target_.rsplit(".", 1)[1] for c in (cfg.callbacks or {}).values()}
        assert wanted <= built, f"callbacks={option}: {sorted(wanted - built)} not built"
        return
    if group == "logger":
        assert len(build_loggers(cfg)) == len(cfg.logger or {})
        return
    # trainer and debug presets: the Trainer they configure (a CPU stands in for GPUs).
    kwargs = {} if torch.cuda.is_available() else {"accelerator": "cpu", "precision": "32-true"}
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[], **kwargs)
    assert isinstance(trainer, L.Trainer)
    if option == "profiler":
        assert trainer.profiler is not None and type(trainer.profiler).__name__ == "SimpleProfiler"
    if option == "overfit":
        assert trainer.overfit_batches == 3


@pytest.mark.parametrize(
    "override", [f"{g}={o}" for g in GROUPS for o in options(g)] + ["experiment=imagenet_paper"]
)
def test_every_option_composes_and_instantiates(
    override: str, tmp_path: Path, tiny_data, shared_data_dir, monkeypatch
):
    group, option = override.split("=")
    monkeypatch.setenv("HOME", str(tmp_path))  # logger=wandb: no ~/.netrc read
    monkeypatch.setenv("WANDB_MODE", "offline")
    extra = {"scheduler": ["scheduler.milestones=[2]"] if option == "multistep" else []}
    if group == "data":
        extra["data"] = data_overrides(option, tiny_data, shared_data_dir)
    if group == "experiment":
        extra["experiment"] = [f"data.root={tiny_data['tree']}"]
    cfg = compose_config([override, *extra.get(group, [])], tmp_path)
    assert cfg.hydra.runtime.choices[group] == option
    build("trainer" if group == "experiment" else group, option, cfg)


@pytest.mark.parametrize("option", ["folder", "imagenet", "cifar10", "fashion_mnist", "stream"])
def test_a_data_option_whose_files_are_missing_says_where_to_point_it(option, tmp_path: Path):
    """Set up without prepare_data (which would download cifar10 and fashion_mnist)."""
    cfg = compose_config([f"data={option}", f"data.root={tmp_path / 'absent'}"], tmp_path)
    datamodule = hydra.utils.instantiate(cfg.data)
    with pytest.raises(DataError, match=r"absent"):
        datamodule.setup("fit")


# Each preset's own values, with experiment=quick (the default, max_epochs=8) left out.
TRAINER_PRESETS = {
    "default": {"max_epochs": 10, "accelerator": "cpu", "devices": 1, "precision": None},
    "cpu": {"max_epochs": 10, "accelerator": "cpu", "devices": 1, "precision": None},
    "gpu": {"max_epochs": 90, "accelerator": "gpu", "devices": 1, "precision": "bf16-mixed"},
    "ddp": {"max_epochs": 90, "accelerator": "gpu", "devices": 2, "precision": "bf16-mixed"},
}


def test_every_trainer_preset_is_in_the_table():
    assert set(options("trainer")) == set(TRAINER_PRESETS)


@pytest.mark.parametrize("preset", sorted(TRAINER_PRESETS))
def test_trainer_presets_set_the_essentials(preset: str, tmp_path: Path):
    cfg = compose_config([f"trainer={preset}", "~experiment"], tmp_path)
    got = {key: cfg.trainer.get(key) for key in TRAINER_PRESETS[preset]}
    assert got == TRAINER_PRESETS[preset], f"trainer={preset}"
    assert cfg.trainer._target_ == "lightning.pytorch.Trainer"
    strategy = cfg.trainer.get("strategy")
    assert (preset == "ddp") == (strategy is not None and "SweepSafeDDP" in strategy._target_)


def test_default_run_is_the_quick_cpu_job(tmp_path: Path):
    cfg = compose_config([], tmp_path)
    assert cfg.model.arch == "alexnet_small"
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.data.crop_size == cfg.model.input_size == 32
    assert cfg.experiment_name == "quick"


def test_imagenet_preset_is_the_papers_recipe(tmp_path: Path):
    cfg = compose_config(["experiment=imagenet_paper", "data.root=/x"], tmp_path)
    assert cfg.model.arch == "alexnet" and cfg.model.groups == 2 and cfg.model.lrn
    assert cfg.data.global_batch_size == 128 and cfg.data.crop_size == 224
    opt = cfg.optimizer
    assert (opt.lr, opt.momentum, opt.weight_decay) == (0.01, 0.9, 5e-4)
    assert cfg.scheduler._target_.endswith("ReduceLROnPlateau") and cfg.scheduler.factor == 0.1
    assert cfg.trainer.max_epochs == 90


def test_study_small_steps_the_lr_where_its_comment_says(tmp_path: Path):
    cfg = compose_config(["experiment=study_small"], tmp_path)
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=cfg.optimizer.lr)
    scheduler = hydra.utils.instantiate(cfg.scheduler, optimizer=optimizer)
    lrs = []
    for _ in range(cfg.trainer.max_epochs):  # Lightning steps it once per epoch
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert cfg.trainer.max_epochs == 36 and len(set(lrs)) == 3
    assert lrs[23] == pytest.approx(0.01) and lrs[24] == pytest.approx(0.001)
    assert lrs[29] == pytest.approx(0.001) and lrs[30] == pytest.approx(0.0001)


def test_multistep_without_milestones_is_a_clear_error(tmp_path: Path):
    cfg = compose_config(["scheduler=multistep"], tmp_path)
    with pytest.raises(MissingMandatoryValue, match="scheduler.milestones"):
        hydra.utils.instantiate(cfg.scheduler, optimizer=torch.optim.SGD([torch.zeros(1)], lr=1))


@pytest.mark.parametrize("experiment", options("experiment"))
@pytest.mark.parametrize("debug", options("debug"))
def test_experiment_and_debug_compose_in_any_order(experiment: str, debug: str, tmp_path: Path):
    """Either order on the command line gives the same config, and the debug preset's
    trainer settings win over the experiment's (debug is listed last in train.yaml)."""
    pair = [f"experiment={experiment}", f"debug={debug}"]
    first, second = (
        compose_config([*order, "data.root=/x"], tmp_path) for order in (pair, pair[::-1])
    )
    # Everything but hydra's own node, which records the command line itself.
    assert {k: v for k, v in first.items() if k != "hydra"} == {
        k: v for k, v in second.items() if k != "hydra"
    }
    debug_trainer = OmegaConf.load(CONF / "debug" / f"{debug}.yaml").trainer
    for key, value in debug_trainer.items():
        assert first.trainer[key] == value, f"experiment={experiment} debug={debug}: {key}"


@pytest.mark.parametrize("option", options("model"))
def test_models_instantiate_from_config(option: str, tmp_path: Path):
    cfg = compose_config([f"model={option}"], tmp_path)
    kwargs = {k: v for k, v in cfg.model.items() if k != "compile"}
    net = hydra.utils.instantiate(kwargs, num_classes=10)
    assert net.input_size == cfg.model.input_size
