"""Learning-rate schedules the official recipes use that torch does not ship as one class."""

from __future__ import annotations

from ganlab.errors import ConfigError


class LinearDecay:
    """pix2pix/CycleGAN's 'linear' policy, a factor for `torch.optim.lr_scheduler.LambdaLR`:
    1 for `constant_epochs` epochs, then linearly down over `decay_epochs` epochs
    (1 - max(0, epoch - constant_epochs) / (decay_epochs + 1), as the official code).

    A class, not a lambda: LambdaLR checkpoints an object's attributes, so resuming keeps it.
    """

    def __init__(self, constant_epochs: int = 100, decay_epochs: int = 100) -> None:
        for name, value in (("constant_epochs", constant_epochs), ("decay_epochs", decay_epochs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"LinearDecay {name}={value!r} must be an integer >= 0")
        self.constant_epochs = constant_epochs
        self.decay_epochs = decay_epochs

    def __call__(self, epoch: int) -> float:
        return 1.0 - max(0, epoch - self.constant_epochs) / (self.decay_epochs + 1)
