"""Errors a user can fix. Entry points print their message alone, without a traceback."""


class GanlabError(Exception):
    """Base class: the message names the bad value and what is accepted."""


class ConfigError(GanlabError, ValueError):
    """A config value that cannot work (bad option, shape mismatch, unknown name)."""


class CheckpointError(GanlabError, FileNotFoundError):
    """A checkpoint that is missing or not a ganlab checkpoint."""


class NonFiniteLossError(GanlabError, FloatingPointError):
    """A loss became NaN or infinite; training stops before the update that would spread it."""
