"""The commands that run a job again: one job alone in its folder (a DDP child rank), or a
whole sweep to continue it."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from alexnet_lab.jobs.folder import override_list
from alexnet_lab.redaction import redact_secrets

log = logging.getLogger(__name__)


def continue_command(sweep_dir: Path) -> str:
    """The command that ran the sweep in `sweep_dir`, with the folder named: running it
    again continues the sweep there."""
    skip = ("-m", "--multirun", "hydra.mode=", "hydra.sweep.dir=")
    script, args = sys.argv[0], sys.argv[1:]
    try:  # what the sweep was started with (a submitit worker's argv is submitit's)
        saved = OmegaConf.load(sweep_dir / "multirun.yaml").hydra
        args = override_list(saved.overrides.hydra) + override_list(saved.overrides.task)
        if Path(script).stem != saved.job.name:
            script = f"src/{saved.job.name}.py"
    except (OSError, OmegaConfBaseException):
        pass
    args = redact_secrets([a for a in args if not a.lstrip("+").startswith(skip)])
    return shlex.join(["python", script, "-m", *args, f"hydra.sweep.dir={sweep_dir}"])


CONFIG_FLAGS = ("--config-path", "-cp", "--config-dir", "-cd")


def _hydra_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def job_command(local_rank: int) -> tuple[list[str], str | None]:
    """The command that runs the current Hydra job alone, in its own output folder."""
    from hydra.core.hydra_config import HydraConfig

    import __main__

    if __main__.__spec__ is None:
        command = [sys.executable, os.path.abspath(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    if not HydraConfig.initialized():  # not a Hydra app: Lightning's own behaviour
        return command + sys.argv[1:], None
    hydra_cfg = HydraConfig.get()
    # Keep a non-default config location/name; drop -m and the sweep's parameters.
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg in CONFIG_FLAGS and i + 1 < len(argv):
            command += [arg, argv[i + 1]]
        elif arg.startswith(tuple(f"{flag}=" for flag in CONFIG_FLAGS)):
            command.append(arg)
    command.append(f"--config-name={hydra_cfg.job.config_name}")
    command += list(hydra_cfg.overrides.task)
    command += [
        f"hydra.run.dir={_hydra_quote(hydra_cfg.runtime.output_dir)}",
        # Rank 0 already wrote .hydra/; children add only their own log file.
        "hydra.output_subdir=null",
        f"hydra.job.name={hydra_cfg.job.name}_rank{local_rank}",
    ]
    return command, hydra_cfg.runtime.cwd


def rank_log(local_rank: int) -> str | None:
    """The log file a child rank of the current Hydra job writes (see job_command)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return os.path.join(hydra_cfg.runtime.output_dir, f"{hydra_cfg.job.name}_rank{local_rank}.log")
