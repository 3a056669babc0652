"""The tests have teeth: each case makes one deliberate mistake in a copy of the project
(src/, conf/, tests/) and runs the tests that guard that code there; they must fail.

A case names its file, the exact text to replace (it must occur exactly once, so a
refactor that moves the code fails here with the case named, not silently) and the
pytest node ids that must catch it. A case that passes is a test made toothless.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from helpers.project import REPO


class Mutation(NamedTuple):
    name: str
    path: str  # under the repository root: src/... or conf/...
    old: str
    new: str
    tests: tuple[str, ...]  # node ids, one of which at least must fail


MUTATIONS = [
    Mutation(
        "shuffle seed ignored (the global RNG orders the training set)",
        "src/alexnet_lab/data/converters.py",
        "generator = torch.Generator().manual_seed(int(self.shuffle_seed))",
        "generator = None",
        ("tests/analysis/test_study.py::test_holdout_loader_and_seeded_training_order",),
    ),
    Mutation(
        "the second logger of logger=[csv,tensorboard] dropped",
        "src/alexnet_lab/tracking/loggers.py",
        "    return loggers\n",
        "    return loggers[:1]\n",
        (
            "tests/tracking/test_experiments.py::"
            "test_runs_without_wandb_and_with_logger_combinations[[csv,tensorboard]]",
        ),
    ),
    Mutation(
        "trainer=gpu trains on the CPU",
        "conf/trainer/gpu.yaml",
        "accelerator: gpu",
        "accelerator: cpu",
        ("tests/test_configs.py::test_trainer_presets_set_the_essentials[gpu]",),
    ),
    Mutation(
        "an experiment preset overrides the debug preset (debug listed first)",
        "conf/train.yaml",
        "  - experiment: quick\n  # The paper's comparisons: ablation=tanh, or all of them: "
        "-m 'ablation=glob(*)'.\n  - ablation: null\n  - debug: null\n",
        "  - debug: null\n  - experiment: quick\n  - ablation: null\n",
        ("tests/test_configs.py::test_experiment_and_debug_compose_in_any_order",),
    ),
    Mutation(
        "data=cifar10 names a constructor argument that does not exist",
        "conf/data/cifar10.yaml",
        "shuffle_seed: ${seed}",
        "shufle_seed: ${seed}",
        ("tests/test_configs.py::test_every_option_composes_and_instantiates[data=cifar10]",),
    ),
    Mutation(
        "scheduler=cosine cannot be built",
        "conf/scheduler/cosine.yaml",
        "T_max: ${trainer.max_epochs}",
        "T_max: ${trainer.max_epochs}\neta_max: 0",
        ("tests/test_configs.py::test_every_option_composes_and_instantiates[scheduler=cosine]",),
    ),
    Mutation(
        "ten-crop scoring replaced by centre-crop",
        "src/alexnet_lab/tasks.py",
        "datamodule = hydra.utils.instantiate(data_cfg, ten_crop=ten_crop)",
        "datamodule = hydra.utils.instantiate(data_cfg, ten_crop=False)",
        ("tests/test_train.py::test_eval_scores_a_runs_checkpoint_with_centre_and_ten_crops",),
    ),
    Mutation(
        "ten-crop scores one view instead of the average of the ten",
        "src/alexnet_lab/training/module.py",
        ".softmax(-1).view(b, v, -1).mean(1)",
        ".softmax(-1).view(b, v, -1)[:, 0]",
        ("tests/test_train.py::test_eval_scores_a_runs_checkpoint_with_centre_and_ten_crops",),
    ),
]


def apply(copy: Path, mutation: Mutation) -> None:
    target = copy / mutation.path
    text = target.read_text()
    found = text.count(mutation.old)
    assert found == 1, (
        f"mutation {mutation.name!r}: {mutation.path} holds its text {found} times, not once; "
        f"the code it breaks moved: update the case in tests/test_mutations.py.\n{mutation.old}"
    )
    target.write_text(text.replace(mutation.old, mutation.new))


@pytest.mark.slow
@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_the_guarding_tests_fail_on_a_deliberate_mistake(mutation: Mutation, tmp_path: Path):
    copy = tmp_path / "repo"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for folder in ("src", "conf", "tests", "experiments"):
        shutil.copytree(REPO / folder, copy / folder, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    apply(copy, mutation)
    env = {**os.environ, "PYTHONPATH": str(copy / "src"), "WANDB_MODE": "offline"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
        + ["-m", "slow or not slow", *mutation.tests],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    # 1: tests failed (not 4/5: bad node ids or none collected, which proves nothing).
    assert result.returncode == 1, (
        f"{mutation.name}: {' '.join(mutation.tests)} exited {result.returncode} "
        f"(1 expected: a failing test)\n{result.stdout[-3000:]}{result.stderr[-2000:]}"
    )


# conftest.environment_restored: a change to os.environ made without monkeypatch (here by
# hand, in real tests by Lightning or W&B) is gone by the next test. Run in file order.
LEAK_PROBE = "ALEXNET_LAB_TEST_LEAK_PROBE"


def test_a_test_that_changes_the_environment_by_hand():
    assert LEAK_PROBE not in os.environ
    os.environ[LEAK_PROBE] = "leaked"
    os.environ.pop("WANDB_SILENT", None)


def test_the_next_test_does_not_see_that_change():
    assert LEAK_PROBE not in os.environ
    assert os.environ.get("WANDB_SILENT") == "true"
