"""`model: auto`: `forecast train` chooses the model with `forecast tune` first, then trains it.

The search reads the rows before the config's test part only (`forecast.jobs.tune.pre_test`),
with the budget of the config's ``tuning`` section; the chosen config (all rows, `auto` off)
is trained as any other, and its train run names the tune run and holds the chosen YAML.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from forecast.config import ForecastConfig
from forecast.jobs.train import TrainOutcome, train_job
from forecast.jobs.tune import TuneResult, tune_job
from pipelines.errors import ConfigError

log = logging.getLogger(__name__)


def choose_model(config: ForecastConfig) -> tuple[ForecastConfig, TuneResult]:
    """Tune `config` within its `tuning` budget; the chosen config and the tune result."""
    budget = config.tuning
    with tempfile.TemporaryDirectory() as folder:
        result = tune_job(
            config,
            output=Path(folder) / "chosen.yaml",
            trials=budget.trials,
            timeout=budget.timeout,
            seed=budget.seed,
            space=budget.space or None,
        )
    log.info(
        "model: auto chose %s (mean pre-test MASE %.4f)", result.config.model, result.best_value
    )
    return result.config, result


def train_auto(config: ForecastConfig, *, resume: str | None = None, **kwargs: Any) -> TrainOutcome:
    """`train_job` for any config: a `model: auto` one is tuned first (see module docstring)."""
    if not config.auto:
        return train_job(config, resume=resume, **kwargs)
    if resume is not None:
        raise ConfigError(
            "A `model: auto` run is resumed with the config it chose: download its "
            "`chosen_config.yaml` artifact and pass that file with --resume."
        )
    chosen, tuned = choose_model(config)
    return train_job(chosen, tuned=tuned, **kwargs)
