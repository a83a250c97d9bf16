"""`tuning:` — the search budget of `model: auto` (`forecast train` tunes, then trains)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from forecast.config.checks import check_number
from pipelines.errors import ConfigError

MAX_TRIALS = 200
# The search space of `forecast tune` (`forecast.jobs.tune`), kept here so that a narrowed
# space in a config is checked when it loads. Lookback and learning rate are searched too.
SPACE: dict[str, tuple[Any, ...]] = {
    "cell": ("lstm", "gru"),
    "units": (16, 32, 64),
    "head_layers": ("none", "64", "256"),
    "target_centre": ("none", "last", "mean"),
    "target_scaling": ("none", "window_rms"),
    "target_transform": ("none", "log", "boxcox"),
    "residual": ("none", "seasonal_naive", "exp_smoothing"),
    "deseasonalize": ("none", "mstl"),
    "loss": ("mae", "mse"),
}


def narrowed(narrow: dict[str, Any] | None) -> dict[str, tuple[Any, ...]]:
    """`SPACE` with the choices of `narrow` (a subset of each) in place of their keys'."""
    space = dict(SPACE)
    if narrow is not None and not isinstance(narrow, dict):
        raise ConfigError(f"`space` maps keys of {sorted(SPACE)} to choices. Received: {narrow!r}")
    for name, choices in (narrow or {}).items():
        allowed = SPACE.get(name)
        choices = tuple(choices) if isinstance(choices, list | tuple) else (choices,)
        if allowed is None or not choices or not set(choices) <= set(allowed):
            raise ConfigError(
                f"`space` narrows the keys {sorted(SPACE)} to some of their choices. "
                f"Received: {name}={list(choices)!r}"
                + (f"; allowed: {list(allowed)}" if allowed is not None else "")
            )
        space[name] = choices
    return space


@dataclass(frozen=True)
class TuningConfig:
    """How long `model: auto` searches `forecast.jobs.tune.SPACE` before training.

    Args:
        trials: the most Optuna trials (each a rolling-origin backtest on pre-test rows),
            1 to `MAX_TRIALS`.
        timeout: stop starting trials after this many seconds; None: no time limit.
        seed: seeds the TPE sampler (a rerun proposes the same trials).
        space: narrower choices for some keys of `SPACE`, e.g. ``{cell: [gru]}``.
    """

    trials: int = 10
    timeout: float | None = 600.0
    seed: int = 0
    space: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("trials", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"`tuning.{name}` must be an integer. Received: {value!r}")
        if not 1 <= self.trials <= MAX_TRIALS:
            raise ConfigError(
                f"`tuning.trials` must be between 1 and {MAX_TRIALS}. Received: {self.trials}"
            )
        if self.timeout is not None:
            check_number("tuning.timeout", self.timeout, low=1.0)
        narrowed(self.space)  # a key or choice outside the space fails at load
