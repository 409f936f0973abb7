"""What the command-line entry points share: clean user errors and config checks."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import (
    InterpolationKeyError,
    InterpolationResolutionError,
    MissingMandatoryValue,
)
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from ganlab.checks import check_command_line, check_targets, one_paragraph
from ganlab.errors import ConfigError, GanlabError

log = logging.getLogger("ganlab")


def _find_config_dir() -> Path:
    """The config tree: shipped inside the package by a wheel (ganlab/conf), at the top of the
    repository in a source checkout or an editable install. Absolute, so the console scripts
    find it from any working directory."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    return package / "conf"  # not there: Hydra's error then names where it looked


CONFIG_DIR = str(_find_config_dir())

# train.yaml also searches a conf/ folder of the working directory, for a user's own options;
# most working directories have none, which is no reason for a warning on every command.
warnings.filterwarnings(
    "ignore", message="provider=hydra.searchpath in main, path=conf is not available"
)


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


def import_from_working_directory() -> None:
    """Let `_target_`s name modules of the working directory, as under `python -m`: a console
    script's import path starts at its own folder instead. Appended, so an installed package
    is never shadowed by a folder of the same name."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)


@contextlib.contextmanager
def user_errors(command: str) -> Iterator[None]:
    """Print a user's mistake as one message and exit 2, instead of a long traceback."""
    import_from_working_directory()
    try:
        yield
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, MisconfigurationException):
            _fail(command, f"{cause} ({TRAINER_HINT})")
        if isinstance(cause, GanlabError | ValueError | TypeError | OSError | ImportError):
            _fail(command, f"{cause}{building(err)}")
        raise
    except MisconfigurationException as err:
        _fail(command, f"{err} ({TRAINER_HINT})")
    except MissingMandatoryValue as err:
        _fail(command, f"{err.full_key} must be given ({err.full_key}=... on the command line)")
    except GanlabError as err:
        _fail(command, str(err))


def building(err: InstantiationException) -> str:
    """' (while building data: ganlab.data.X)': where Hydra's instantiation failed, without its
    copy of the cause's message, which the user already reads once."""
    text = str(err)
    key = re.search(r"full_key: (\S+)", text)
    target = re.search(r"target '([^']+)'", text)
    if not (key or target):
        return f" (while building: {text})"
    where = ": ".join(m.group(1) for m in (key, target) if m)
    return f" (while building {where})"


def _fail(command: str, message: str) -> None:
    # The run's log file keeps the reason (the console gets it once, on stderr).
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    message = one_paragraph(message)  # Hydra's and Lightning's messages span several lines
    print(f"{command}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


TRAINER_HINT = (
    "trainer=cpu runs on the CPU; trainer=default takes a GPU when PyTorch sees one; "
    "trainer=gpu and trainer=ddp need as many GPUs as trainer.devices"
)


def entry_point(
    command: str, config_name: str, free_keys: Sequence[str] = ()
) -> Callable[[Callable[[DictConfig], Any]], Callable[..., Any]]:
    """@hydra.main for a ganlab command: the command line is checked before Hydra sees it
    (every mistake one message and exit 2, for each job of a -m sweep too), messages that are
    not ganlab's are silenced, and errors inside the job are reported the same way."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[..., Any]:
        @functools.wraps(task)  # Hydra names the job (and its log file) after the task's module
        def job(cfg: DictConfig) -> Any:
            quiet_foreign_messages()  # again: a launcher may run the job in another process
            with user_errors(command):
                return task(cfg)

        hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)
        hydra_job = hydra_main(job)

        @functools.wraps(task)
        def main(cfg: DictConfig | None = None) -> Any:
            if cfg is not None:  # in-process, with a config composed already
                return hydra_job(cfg)
            quiet_foreign_messages()
            with user_errors(command):
                sys.argv[1:] = check_command_line(config_name, sys.argv[1:], free_keys)
            return hydra_job()

        return main

    return decorate


class _DropMessages(logging.Filter):
    def __init__(self, *fragments: str) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(fragment in str(record.msg) for fragment in self.fragments)


_LITLOGGER_TIP = _DropMessages("try installing [litlogger]")


def quiet_foreign_messages() -> None:
    """Silence what libraries print on every command that is not the user's concern: an
    advertisement and a deprecation inside Lightning. Narrow: other messages stay."""
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_LITLOGGER_TIP)
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
    )


def positive_int(cfg: DictConfig, key: str) -> int:
    """cfg[key], refused with a clear message unless it is an integer >= 1."""
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r} must be a positive integer")
    return value


def choice(group: str) -> str:
    """The option picked for a config group (e.g. 'dcgan' for model), or '?' outside Hydra."""
    if not HydraConfig.initialized():
        return "?"
    return str(HydraConfig.get().runtime.choices.get(group, "?"))


def resolve(cfg: DictConfig) -> None:
    """Resolve every interpolation now, turning a model/data mismatch into a clear error, and
    check what can be checked before anything is built: every `_target_` imports and gets
    values of the types it declares, and a GPU trainer has a GPU."""
    _resolve_interpolations(cfg)
    check_targets(cfg)
    if "trainer" in cfg:
        check_accelerator(cfg.trainer)


def check_accelerator(trainer: DictConfig) -> None:
    accelerator = str(trainer.get("accelerator", "auto"))
    has_gpu = torch.cuda.is_available() or (
        accelerator == "gpu" and torch.backends.mps.is_available()
    )
    if accelerator in ("gpu", "cuda") and not has_gpu:
        raise ConfigError(
            f"trainer.accelerator={accelerator!r} asks for a GPU, but PyTorch sees none on this "
            f"machine (torch {torch.__version__}, CUDA build {torch.version.cuda}); {TRAINER_HINT}"
        )


def _resolve_interpolations(cfg: DictConfig) -> None:
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
