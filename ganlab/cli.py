"""What the command-line entry points share: clean user errors and config checks."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationKeyError, InterpolationResolutionError

from ganlab.errors import ConfigError, GanlabError

log = logging.getLogger("ganlab")

# The config tree sits beside the package (an editable install keeps it there). An absolute
# path lets the console scripts find it from any working directory.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def compose_run(
    overrides: Sequence[str], output_dir: str | Path, config_name: str = "train"
) -> DictConfig:
    """The config `ganlab-train overrides...` (or another command's `config_name`) would run,
    writing into `output_dir`: for scripts, notebooks and tests that run ganlab in-process."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    # `${hydra:...}` interpolations need a live HydraConfig, as under @hydra.main.
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        if "paths" in cfg:
            cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


@contextlib.contextmanager
def user_errors(command: str) -> Iterator[None]:
    """Print a user's mistake as one message and exit 2, instead of a long traceback."""
    try:
        yield
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, GanlabError | ValueError | TypeError | FileNotFoundError):
            _fail(command, f"{cause}\n  (while building: {err})")
        raise
    except GanlabError as err:
        _fail(command, str(err))


def _fail(command: str, message: str) -> None:
    # The run's log file keeps the reason (the console gets it once, on stderr).
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    print(f"{command}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def choice(group: str) -> str:
    """The option picked for a config group (e.g. 'dcgan' for model), or '?' outside Hydra."""
    if not HydraConfig.initialized():
        return "?"
    return str(HydraConfig.get().runtime.choices.get(group, "?"))


def resolve(cfg: DictConfig) -> None:
    """Resolve every interpolation now, turning a model/data mismatch into a clear error."""
    try:
        OmegaConf.resolve(cfg)
    except (InterpolationKeyError, InterpolationResolutionError) as err:
        raise ConfigError(
            f"the composed config cannot be resolved: {err}. "
            f"model={choice('model')} and data={choice('data')} do not fit together: model "
            "configs read their shapes from the data config (image models such as gan_mlp and "
            "dcgan need data.channels and data.resolution; toy_mlp needs data.dim, which "
            "toy_ring and toy_grid define)"
        ) from err
