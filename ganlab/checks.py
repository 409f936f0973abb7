"""Checks of a command line and of the config it composes, before anything runs.

Hydra reports a misspelt group, option or key as several lines of its own, with advice that
can lead the wrong way ("append with +modle"), and exits 1; a `_target_` that cannot be imported
or a value of the wrong type fails deep inside instantiation or training. These checks turn each
into one ConfigError that names the value, what is accepted and, where a name is close to a
known one, what was probably meant.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra._internal.utils import _locate, get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError

from ganlab.errors import ConfigError

# Flags after which Hydra composes nothing of ours (help texts, shell completion, other trees).
UNCHECKED_FLAGS = (
    "help",
    "hydra_help",
    "info",
    "shell_completion",
    "experimental_rerun",
    "config_path",
    "config_name",
    "config_dir",
)


def one_paragraph(text: str) -> str:
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def did_you_mean(name: str, known: Sequence[str], template: str = "{}") -> str:
    """' (did you mean X?)' for the known name closest to `name`, or ''."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {template.format(close[0])}?)" if close else ""


# ---------------------------------------------------------------------- the command line
def check_command_line(
    config_name: str, argv: Sequence[str], free_keys: Sequence[str] = ()
) -> list[str]:
    """Compose the config every job of this command line would run (each value of a `-m`
    sweep), raising ConfigError for the first override that cannot work. Returns the command
    line to hand to Hydra: overrides of a key under `free_keys` (e.g. ganlab-eval's `data`,
    whose keys are the checkpoint's) are added when absent (`++data.root=...`)."""
    argv = [_null_choice(_freed(arg, free_keys)) for arg in argv]
    args = get_args_parser().parse_args(argv)
    if any(getattr(args, flag, None) for flag in UNCHECKED_FLAGS):
        return argv
    overrides = [_parse(line) for line in args.overrides]
    if not args.multirun:
        for override in overrides:
            if override.is_sweep_override():
                raise ConfigError(
                    f"{override.input_line}: a comma-separated value is a sweep; add -m "
                    "(--multirun) to run one job per value, or write "
                    f"{override.get_key_element()}=[...] for a list"
                )
    for variant in _variants(overrides, _groups()):
        cfg = compose_checked(config_name, variant)
        job_config = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        missing = _missing_keys(OmegaConf.to_container(job_config, resolve=False))
        if missing and not args.cfg:
            raise ConfigError(
                f"{', '.join(missing)} must be given ({missing[0]}=... on the command line); "
                "a ??? in the config marks a value without a default"
            )
    return argv


def _missing_keys(config: Any, prefix: str = "") -> list[str]:
    """Keys of a plain config (OmegaConf.to_container, unresolved) whose value is ???."""
    if not isinstance(config, dict):
        return [prefix.rstrip(".")] if config == "???" else []
    return [
        key for name, value in config.items() for key in _missing_keys(value, f"{prefix}{name}.")
    ]


def _freed(arg: str, free_keys: Sequence[str]) -> str:
    key = arg.split("=", 1)[0]
    if "=" in arg and any(key.startswith(f"{free}.") for free in free_keys):
        return f"++{arg}"
    return arg


def _null_choice(arg: str) -> str:
    """`group=null` turns a config group off, as `group: null` does in a defaults list (Hydra's
    command line refuses null for a group): the group's `none` option, or `~group`."""
    group, _, value = arg.partition("=")
    if value != "null" or group not in _groups():
        return arg
    has_none = Path(_config_dir(), group, "none.yaml").is_file()
    return f"{group}=none" if has_none else f"~{group}"


def _parse(line: str) -> Override:
    try:
        return OverridesParser.create().parse_overrides([line])[0]
    except OverrideParseException as err:
        raise ConfigError(
            f"{line!r} is not an override ({one_paragraph(err).split(' See https')[0]}); "
            "write group=option, key=value, key=[a,b] for a list, +key=value to add a key, "
            "and quote values with spaces or special characters"
        ) from err


def _variants(overrides: Sequence[Override], groups: Sequence[str]) -> Iterator[list[str]]:
    """Each option of a swept group once, the other sweeps at their first value (the values
    of a swept key compose alike: the first stands for all); values a sweeper draws
    (interval(), tag()) are left to it."""
    values: list[list[str]] = []
    for override in overrides:
        if not override.is_sweep_override():
            values.append([override.input_line])
            continue
        try:
            sweep = list(override.sweep_string_iterator())
        except Exception:  # an interval: no list of values to check
            sweep = []
        group = override.key_or_group
        if "/" not in group and group not in groups:
            sweep = sweep[:1]
        values.append([f"{override.get_key_element()}={value}" for value in sweep])
    first = [options[0] for options in values if options]
    yield first
    for index, options in enumerate(values):
        for option in options[1:]:
            variant = [opts[0] if i != index else option for i, opts in enumerate(values) if opts]
            yield variant


def compose_checked(config_name: str, overrides: Sequence[str]) -> DictConfig:
    """compose(config_name, overrides), each Hydra error turned into one ConfigError."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=_config_dir(), version_base="1.3"):
            try:
                return compose(config_name, overrides=list(overrides), return_hydra_config=True)
            except MissingConfigException as err:
                raise _missing_option(err) from err
            except HydraException as err:
                if isinstance(err.__cause__, ConfigKeyError | AttributeError):
                    raise _unknown_key(err.__cause__, config_name, overrides) from err
                raise ConfigError(one_paragraph(err)) from err
    finally:
        GlobalHydra.instance().clear()


def _missing_option(err: MissingConfigException) -> ConfigError:
    missing = str(err.missing_cfg_file or "")
    group, _, option = missing.rpartition("/")
    options = list(err.options or [])
    if not group or not options:
        return ConfigError(one_paragraph(err).split(" Config search path:")[0])
    return ConfigError(
        f"{group}={option} is not an option of {group}"
        f"{did_you_mean(option, options, f'{group}={{}}')}; the options are "
        f"{', '.join(options)} (files in conf/{group}/, or in a conf/{group}/ folder of the "
        "working directory)"
    )


def _unknown_key(cause: Exception, config_name: str, overrides: Sequence[str]) -> ConfigError:
    full_key = str(getattr(cause, "full_key", "") or "")
    parent, _, name = full_key.rpartition(".")
    line = _override_of(full_key, overrides)
    value = line.split("=", 1)[1] if "=" in line else "..."
    others = [o for o in overrides if o != line]
    cfg = None
    if len(others) < len(overrides):  # the same overrides again would fail the same way
        try:
            cfg = compose_checked(config_name, others)
        except ConfigError:
            pass
    setter = line.lstrip("+~").split("=", 1)[0]
    if setter != full_key and full_key.startswith(f"{setter}."):
        # `key={...}` merges into the node's keys; it does not replace the node
        keys = _keys_of(cfg, setter)
        known = f" (its keys are {', '.join(keys)})" if keys else ""
        return ConfigError(
            f"{line}: {parent} has no key '{name}'{known}; a {{...}} value is merged into "
            f"{setter}'s keys, it does not replace them. To replace {setter} whole, delete it "
            f"first: '~{setter}' '+{setter}={value}'"
        )
    if not parent:
        groups = list(_groups()) if cfg is not None else []
        keys = sorted(k for k in (cfg or {}) if k != "hydra" and k not in groups)
        return ConfigError(
            f"{line}: there is no config group or key '{name}'"
            f"{did_you_mean(name, groups + keys, f'{{}}={value}')}; the groups are "
            f"{', '.join(groups)}, the other top-level keys {', '.join(keys)}"
        )
    keys = _keys_of(cfg, parent)
    known = f"; its keys are {', '.join(keys)}" if keys else ""
    return ConfigError(
        f"{line}: {parent} has no key '{name}'"
        f"{did_you_mean(name, keys, f'{parent}.{{}}={value}')}{known} (to pass a new "
        f"argument to a class of your own, add it: +{full_key}={value})"
    )


def _keys_of(cfg: DictConfig | None, path: str) -> list[str]:
    """The sorted keys of the node at `path` of `cfg`; none if there is no such node."""
    node = OmegaConf.select(cfg, path) if cfg is not None else None
    return sorted(node) if isinstance(node, DictConfig) else []


def _override_of(full_key: str, overrides: Sequence[str]) -> str:
    """The override that set `full_key`: its key is `full_key`, one of its parents (a {...}
    value) or one of its children; `full_key` itself if none is."""

    def key(override: str) -> str:
        return override.lstrip("+~").split("=", 1)[0]

    for override in overrides:
        if key(override) == full_key or key(override).startswith(f"{full_key}."):
            return override
    parents = [o for o in overrides if full_key.startswith(f"{key(o)}.")]
    return max(parents, key=lambda o: len(key(o)), default=full_key)  # the nearest parent


def _config_dir() -> str:
    from ganlab.cli import CONFIG_DIR  # here, not at the top: ganlab.cli imports this module

    return CONFIG_DIR


@functools.cache
def _groups() -> tuple[str, ...]:
    with initialize_config_dir(config_dir=_config_dir(), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        groups = tuple(sorted(g for g in loader.list_groups("") if g != "hydra"))
    GlobalHydra.instance().clear()
    return groups


# ---------------------------------------------------------------------- the composed config
def check_targets(cfg: Any, path: str = "") -> None:
    """Every `_target_` in `cfg` imports, and every plain value given to it has a type its
    signature accepts (`trainer.max_epochs=abc` fails here, not inside Lightning's loop)."""
    if isinstance(cfg, DictConfig):
        target = cfg.get("_target_")
        if isinstance(target, str):
            arguments = {
                key: value
                for key, value in cfg.items()
                if not str(key).startswith("_") and not isinstance(value, DictConfig | ListConfig)
            }
            check_arguments(_importable(target, path), arguments, path)
        for key, value in cfg.items():
            check_targets(value, f"{path}.{key}" if path else str(key))
    elif isinstance(cfg, ListConfig):
        for index, value in enumerate(cfg):
            check_targets(value, f"{path}[{index}]")


def _importable(target: str, path: str) -> Any:
    try:
        return _locate(target)
    except Exception as err:
        module_name, _, name = target.rpartition(".")
        module = _module_or_none(module_name)
        if module is not None:
            names = [n for n in dir(module) if not n.startswith("_")]
            raise ConfigError(
                f"{path}._target_={target!r}: module {module_name!r} has no {name!r}"
                f"{did_you_mean(name, names, f'{module_name}.{{}}')}"
            ) from err
        reason = one_paragraph(err.__cause__ or err)
        raise ConfigError(
            f"{path}._target_={target!r} cannot be imported ({reason}); the module must be "
            "importable where the command runs: install its package (pip install -e .), "
            "run from the folder that holds it, or add that folder to PYTHONPATH"
        ) from err


def _module_or_none(name: str) -> types.ModuleType | None:
    try:
        return importlib.import_module(name) if name else None
    except Exception:
        return None


_PLAIN = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def check_arguments(target: Any, arguments: Mapping[str, Any], path: str = "") -> None:
    """Each value in `arguments` has a type `target`'s signature declares for it (checked
    where the annotation is made of int, float, bool, str and None alone)."""
    try:
        parameters = inspect.signature(target, eval_str=True).parameters
    except Exception:  # no signature to read (a builtin, an unresolvable annotation)
        return
    for key, value in arguments.items():
        parameter = parameters.get(str(key))
        if parameter is None or value is None and parameter.default is None:
            continue
        accepted = _plain_types(parameter.annotation)
        if accepted and not any(_is_a(value, kind) for kind in accepted):
            names = [_PLAIN.get(kind, "null") for kind in accepted]
            name = f"{path}.{key}" if path else str(key)
            raise ConfigError(
                f"{name}={value!r} must be {' or '.join(names)} "
                f"({getattr(target, '__qualname__', target)} takes {key}: "
                f"{_annotation_text(parameter.annotation)})"
            )


def _plain_types(annotation: Any) -> list[type]:
    """[int, NoneType] for `int | None`; [] when anything else is accepted too."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = list(typing.get_args(annotation))
    else:
        options = [annotation]
    plain = [*_PLAIN, type(None)]
    return options if all(option in plain for option in options) else []


def _is_a(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _annotation_text(annotation: Any) -> str:
    options = _plain_types(annotation)
    return " | ".join("None" if kind is type(None) else kind.__name__ for kind in options)
