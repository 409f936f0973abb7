"""Alarms over the monitor's logged values: each watches one failure of GAN training over a
window of logging steps, and says once, with advice, when it holds.

- `d_wins`: D's accuracy on real and on fake samples both at least `d_accuracy` at every
  logging step of the window, while G's relative update size stays under `d_wins_g_update`:
  a generator that hardly moves cannot catch up with a discriminator that wins (D winning
  alone is common in runs that train well; docs/monitor.md gives the evidence).
- `vanishing_g_grad`: G's gradient norm below `vanishing_ratio` times its median over the first
  window of the run, at every logging step of the window (judged after the warm-up; the
  reference is not: a gradient that vanishes early, as under a discriminator whose units die
  where the fakes are, would otherwise be its own reference).
- `mode_collapse`: the diversity of a fixed latent batch (mean pairwise distance of cheap
  features) below `diversity_fraction` of the real data's, or on 2D mixtures fewer than
  `modes_fraction` of the modes reached by a batch with most of its points near modes
  (ganlab.monitor.views.modes_reached), at `collapse_window` consecutive checks, and below
  the same fraction of the highest value of the run so far: diversity that fell.
- `divergence`: a player's weight norm growing at every logging step of the window, by at least
  `divergence_growth` times over it, or a loss's magnitude growing at every step by at least
  `loss_growth` times: the trend that comes before NaN.

Values from the first `warmup_steps` D steps are not judged (every run starts out of balance).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from ganlab.errors import ConfigError

ALARMS = ("d_wins", "vanishing_g_grad", "mode_collapse", "divergence")

ADVICE = {
    "d_wins": "lower D's learning rate (TTUR, e.g. model.d_optimizer.lr=...), add R1 "
    "(regularizers=r1) or DiffAugment (augment=diffaugment)",
    "vanishing_g_grad": "use a non-saturating loss (loss=bce, loss=hinge), lower D's learning "
    "rate or add R1 (regularizers=r1), so that D's output keeps a slope at the fakes",
    "mode_collapse": "lower G's learning rate, add R1 (regularizers=r1) or DiffAugment, or use a "
    "loss that penalises missing modes (loss=wasserstein with regularizers=gp, model=unrolled)",
    "divergence": "lower the learning rates, clip gradients (model.g_grad_clip=..., "
    "model.d_grad_clip=...) or add R1 (regularizers=r1), before the values become NaN",
}


def check_number(option: str, value, low: float, high: float, integer: bool = False):
    """`value` in [low, high] (an int when `integer`), else a ConfigError naming the range."""
    kind = "an integer" if integer else "a number"
    ok = not isinstance(value, bool) and isinstance(value, int if integer else int | float)
    if not ok or not low <= value <= high:
        upper = "" if math.isinf(high) else f", at most {high:g}"
        raise ConfigError(f"callbacks.monitor.{option}={value!r} must be {kind} >= {low:g}{upper}")
    return value


@dataclass
class AlarmSettings:
    """Windows and thresholds of the alarms (documented in docs/monitor.md)."""

    warmup_steps: int = 200
    window: int = 10
    d_accuracy: float = 0.95
    d_wins_g_update: float | None = 1e-3  # None: D's accuracy alone
    vanishing_ratio: float = 0.01
    diversity_fraction: float = 0.25
    modes_fraction: float = 0.5
    collapse_window: int = 3
    divergence_growth: float = 2.0
    loss_growth: float = 10.0

    def __post_init__(self) -> None:
        check_number("warmup_steps", self.warmup_steps, 0, math.inf, integer=True)
        check_number("window", self.window, 2, math.inf, integer=True)
        check_number("collapse_window", self.collapse_window, 1, math.inf, integer=True)
        check_number("d_accuracy", self.d_accuracy, 0.5, 1.0)
        if self.d_wins_g_update is not None:
            try:
                check_number("d_wins_g_update", self.d_wins_g_update, 0.0, math.inf)
            except ConfigError as err:
                raise ConfigError(f"{err}, or null to judge D's accuracy alone") from None
        check_number("vanishing_ratio", self.vanishing_ratio, 0.0, 1.0)
        check_number("diversity_fraction", self.diversity_fraction, 0.0, 1.0)
        check_number("modes_fraction", self.modes_fraction, 0.0, 1.0)
        check_number("divergence_growth", self.divergence_growth, 1.0, math.inf)
        check_number("loss_growth", self.loss_growth, 1.0, math.inf)


def _rising(values: deque, growth: float) -> float | None:
    """last / first when the magnitudes rose at every step by `growth` times in all, else None."""
    magnitudes = [abs(v) for v in values]
    if len(magnitudes) < values.maxlen or magnitudes[0] <= 0:
        return None
    if any(b <= a for a, b in zip(magnitudes, magnitudes[1:], strict=False)):
        return None
    ratio = magnitudes[-1] / magnitudes[0]
    return ratio if ratio >= growth else None


@dataclass
class Alarms:
    """Feed `observe` the host values of each logging step (and `observe_diversity` the collapse
    checks); `state` holds each alarm's current 0/1, `fired` the first firing of each with its
    message."""

    settings: AlarmSettings = field(default_factory=AlarmSettings)
    state: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ALARMS, 0))
    fired: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        window = self.settings.window
        self._accuracy: deque = deque(maxlen=window)
        self._g_update: deque = deque(maxlen=window)  # G's relative update size, when logged
        self._g_grad: deque = deque(maxlen=window)
        self._g_grad_early: list[float] = []
        self._trends: dict[str, deque] = {}
        self._diversity: deque = deque(maxlen=self.settings.collapse_window)
        self._diversity_peak = -math.inf

    def _judge(self, name: str, step: int, problem: str | None) -> str | None:
        """Set the alarm's state; the message on its first firing, else None."""
        self.state[name] = int(problem is not None)
        if problem is None or name in self.fired:
            return None
        message = f"alarm {name} at D step {step}: {problem}; {ADVICE[name]}"
        self.fired[name] = {"step": step, "message": message}
        return message

    def observe(self, step: int, values: Mapping[str, float]) -> list[str]:
        """Judge the alarms on one logging step's values; returns the new firings' messages."""
        s = self.settings
        norm = values.get("monitor/g_grad_norm")
        reference = norm is not None and len(self._g_grad_early) < s.window
        if reference:  # G's gradient scale at the start, warm-up or not
            self._g_grad_early.append(norm)
        if step < s.warmup_steps:
            return []
        messages = [
            self._judge("d_wins", step, self._d_wins(values)),
            self._judge("vanishing_g_grad", step, None if reference else self._vanishing(values)),
            self._judge("divergence", step, self._divergence(values)),
        ]
        return [m for m in messages if m]

    def _d_wins(self, values: Mapping[str, float]) -> str | None:
        real, fake = values.get("monitor/d_acc_real"), values.get("monitor/d_acc_fake")
        if real is None or fake is None:
            return None
        self._accuracy.append(min(real, fake))
        self._g_update.append(values.get("monitor/g_update_size"))
        s = self.settings
        if len(self._accuracy) < s.window or min(self._accuracy) < s.d_accuracy:
            return None
        wins = (
            f"the discriminator classified at least {min(self._accuracy):.0%} of real and of "
            f"fake samples correctly at each of the last {s.window} logging steps (real "
            f"{real:.0%}, fake {fake:.0%} now)"
        )
        # A generator still moving is still learning (logging steps without a G step: no say).
        updates = [u for u in self._g_update if u is not None]
        if s.d_wins_g_update is None or not updates:
            return f"{wins}: the generator gets little signal"
        if max(updates) >= s.d_wins_g_update:
            return None
        return (
            f"{wins}, while the generator's relative update size stayed under "
            f"{s.d_wins_g_update:g} (at most {max(updates):.2g}): it is not catching up"
        )

    def _vanishing(self, values: Mapping[str, float]) -> str | None:
        norm = values.get("monitor/g_grad_norm")
        if norm is None:
            return None
        s = self.settings
        self._g_grad.append(norm)
        reference = statistics.median(self._g_grad_early)
        largest = max(self._g_grad)
        # zero throughout is vanished whatever the reference (a generator dead from the start)
        if len(self._g_grad) < s.window or (largest >= s.vanishing_ratio * reference and largest):
            return None
        return (
            f"the generator's gradient norm stayed below {s.vanishing_ratio:g} times its early "
            f"median ({reference:.3g}) for the last {s.window} logging steps (now {norm:.3g})"
        )

    def _divergence(self, values: Mapping[str, float]) -> str | None:
        s = self.settings
        found = None
        for key, value in values.items():
            growth = None
            if key.endswith("_weight_norm"):
                growth = s.divergence_growth
            elif key in ("train/d_loss", "train/g_loss"):
                growth = s.loss_growth
            if growth is None or not math.isfinite(value):
                continue
            trend = self._trends.setdefault(key, deque(maxlen=s.window))
            trend.append(value)
            ratio = _rising(trend, growth)
            if ratio is not None and found is None:
                found = (
                    f"{key} grew {ratio:.3g} times ({trend[0]:.3g} -> {trend[-1]:.3g}), rising "
                    f"at each of the last {s.window} logging steps"
                )
        return found

    def observe_diversity(
        self, step: int, value: float, reference: float, modes: bool = False
    ) -> list[str]:
        """Judge mode collapse on one check: `value` is the samples' diversity and `reference`
        the real data's, or with `modes` the modes captured and the mixture's number of modes."""
        s = self.settings
        self._diversity_peak = max(self._diversity_peak, value)  # warm-up checks count too
        if step < s.warmup_steps:
            return []
        fraction = s.modes_fraction if modes else s.diversity_fraction
        self._diversity.append(value)
        # Collapse is a fall: low against the data, and low against what G once reached (a
        # generator that starts with little variety and gains it is still learning).
        bound = fraction * min(reference, self._diversity_peak)
        low = len(self._diversity) == s.collapse_window and max(self._diversity) < bound
        problem = None
        if low and modes:
            problem = (
                f"a fixed latent batch reached {value:g} of the {reference:g} modes, fewer than "
                f"{fraction:g} of them and of the {self._diversity_peak:g} it reached before, at "
                f"{s.collapse_window} checks in a row"
            )
        elif low:
            problem = (
                f"the mean pairwise distance of a fixed latent batch's features fell to "
                f"{value:.3g}, under {fraction:g} times the real data's ({reference:.3g}) and "
                f"its own peak ({self._diversity_peak:.3g}), at {s.collapse_window} checks in a row"
            )
        message = self._judge("mode_collapse", step, problem)
        return [message] if message else []
