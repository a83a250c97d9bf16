"""The sections of a job config: data, split, scale, evaluation, calibration, backtest, tracking.

Each is a small frozen dataclass that checks its own values; `forecast.config.job` puts them
together. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from forecast.config.checks import check_bool
from forecast.config.mlflow_names import (
    check_alias,
    check_experiment_name,
    check_model_name,
    check_store_uri,
)
from forecast.evaluation.baselines import BASELINES
from forecast.evaluation.classical import CLASSICAL
from pipelines import datasets
from pipelines.calendars import Calendar
from pipelines.errors import ConfigError, did_you_mean
from pipelines.features import FeatureSpec
from pipelines.validate import ValidationPolicy

_SPLIT_VALUE = (float, int, str)


@dataclass(frozen=True)
class DataConfig:
    """Where the series come from and how they are cleaned.

    Args:
        dataset: name of a bundled dataset (`forecast datasets` lists them); or None.
        path: CSV or Parquet file in long format; used when `dataset` is None.
        schema: column roles (`pipelines.SeriesSchema` fields); overrides the dataset's.
        series: keep only these series ids (empty keeps all).
        start: keep rows at or after this timestamp (a date or timestamp string; a YAML
            date such as ``1997-07-24`` is kept as its ISO text).
        end: keep rows at or before this timestamp (likewise).
        last_n: keep the last `last_n` rows of each series (quick runs, CI).
        validation: `pipelines.validate.ValidationPolicy` fields; overrides the dataset's.
        features: `pipelines.features.FeatureSpec` fields.
        calendar: the calendar the series follow (`pipelines.calendars.Calendar.from_spec`):
            ``regular``, ``business``, an exchange such as ``XNYS``, working days
            ``{days: Mon-Fri, holidays: US}`` or opening hours ``{open: "09:30", close:
            "16:00", days: Mon-Fri, holidays: US}``. None: the dataset's, else opening
            hours inferred from intraday history, else the regular grid.
    """

    dataset: str | None = None
    path: str | None = None
    schema: dict[str, Any] = field(default_factory=dict)
    series: tuple[str, ...] = ()
    start: str | None = None
    end: str | None = None
    last_n: int | None = None
    validation: dict[str, Any] = field(default_factory=dict)
    features: FeatureSpec = field(default_factory=FeatureSpec)
    calendar: str | dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.calendar is not None:
            Calendar.from_spec(self.calendar, "data.calendar")  # fail at load, not in training
        if (self.dataset is None) == (self.path is None):
            raise ConfigError(
                "Set exactly one of `data.dataset` (a bundled dataset) and `data.path` "
                f"(a CSV or Parquet file). Received: dataset={self.dataset!r}, path={self.path!r}"
            )
        if self.dataset is not None and (
            not isinstance(self.dataset, str) or self.dataset.lower() not in datasets.names()
        ):
            raise ConfigError(
                f"Unknown dataset {self.dataset!r} in `data.dataset`."
                + did_you_mean(str(self.dataset).lower(), datasets.names(), cutoff=0.5)
                + f" Available datasets: {datasets.names()}"
            )
        if self.path is not None and not self.schema:
            raise ConfigError(
                "`data.schema` is required with `data.path`: name at least `time_col` and "
                "`targets` (and `id_col` for many series)."
            )
        if self.last_n is not None and (
            not isinstance(self.last_n, int) or isinstance(self.last_n, bool) or self.last_n < 2
        ):
            raise ConfigError(
                f"`data.last_n` must be an integer >= 2 or null. Received: last_n={self.last_n!r}"
            )
        object.__setattr__(self, "series", tuple(str(s) for s in (self.series or ())))
        for name in ("start", "end"):
            object.__setattr__(self, name, _timestamp_text(name, getattr(self, name)))
        if (
            self.start is not None
            and self.end is not None
            and pd.Timestamp(self.start) > pd.Timestamp(self.end)
        ):
            raise ConfigError(
                f"`data.start` must not be after `data.end`: no row would be kept. "
                f"Received: start={self.start!r}, end={self.end!r}"
            )
        ValidationPolicy.from_dict(dict(self.validation))  # fail early on bad policy keys
        if (
            self.path is not None
            and self.validation.get("calendar") == "observed"
            and not self.schema.get("freq")
        ):
            # The observed calendar infers no frequency, and a served model needs one to
            # know its forecasts' timestamps: say so now, not after training.
            raise ConfigError(
                "`data.validation.calendar: observed` takes the grid from the data and infers "
                "no frequency, so the model could not date its forecasts: set "
                "`data.schema.freq` (e.g. 'B' for business days, 'h' for hours)."
            )


def _timestamp_text(name: str, value: Any) -> str | None:
    """`data.start` / `data.end` as text that parses as a timestamp (YAML dates become ISO)."""
    if value is None:
        return None
    if isinstance(value, datetime.date):  # also datetime and pd.Timestamp
        return value.isoformat()
    if isinstance(value, str) and value.strip():
        try:
            parsed = pd.Timestamp(value)
        except (TypeError, ValueError):
            parsed = pd.NaT
        if not pd.isna(parsed):  # "NaT" parses, to a missing timestamp
            return value.strip()
    raise ConfigError(
        f"`data.{name}` must be a date or timestamp such as '1997-07-24' or "
        f"'1997-07-24 16:00', or null. Received: {name}={value!r}"
    )


@dataclass(frozen=True)
class SplitConfig:
    """Chronological split: fractions of the calendar, step counts, or start timestamps.

    A YAML date (``test: 1958-01-01``, also from ``--set split.test=1958-01-01``) is kept as
    its ISO text; text must parse as a timestamp. ``test: 0`` leaves no test part (the
    validation part is then the last); fractions must leave training rows.
    """

    validation: float | int | str = 0.15
    test: float | int | str = 0.15

    def __post_init__(self) -> None:
        for name in ("validation", "test"):
            value = getattr(self, name)
            if isinstance(value, datetime.date):  # also datetime: YAML reads dates itself
                object.__setattr__(self, name, value.isoformat())
            elif isinstance(value, str):
                object.__setattr__(self, name, _split_timestamp(name, value))
            elif not isinstance(value, _SPLIT_VALUE) or isinstance(value, bool):
                raise ConfigError(
                    f"`split.{name}` must be a fraction, a number of steps or a timestamp. "
                    f"Received: {name}={value!r}"
                )
            elif value < 0 or (isinstance(value, float) and not value < 1):
                raise ConfigError(
                    f"`split.{name}` must be a fraction in [0, 1), a number of steps >= 0 or a "
                    f"timestamp. Received: {name}={value!r}"
                )
        fractions = [v for v in (self.validation, self.test) if isinstance(v, float)]
        if sum(fractions) >= 1:
            raise ConfigError(
                "`split.validation` and `split.test` fractions must sum to less than 1 so that "
                f"training keeps rows. Received: validation={self.validation!r}, "
                f"test={self.test!r}"
            )
        if isinstance(self.validation, str) and isinstance(self.test, str):
            try:
                later = pd.Timestamp(self.validation) >= pd.Timestamp(self.test)
            except TypeError:
                raise ConfigError(
                    "`split.validation` and `split.test` must both carry a UTC offset or "
                    f"neither. Received: validation={self.validation!r}, test={self.test!r}"
                ) from None
            if later:
                raise ConfigError(
                    "`split.validation` must start before `split.test`. Received: "
                    f"validation={self.validation!r}, test={self.test!r}"
                )


def _split_timestamp(name: str, value: str) -> str:
    try:
        parsed = pd.Timestamp(value.strip())
    except (TypeError, ValueError):
        parsed = pd.NaT
    if pd.isna(parsed):
        raise ConfigError(
            f"`split.{name}` as text must be a timestamp such as '1958-01-01' or "
            f"'2024-03-01 09:30'. Received: {name}={value!r}"
        )
    return value.strip()


@dataclass(frozen=True)
class ScaleConfig:
    """Scikit-learn scaler fit on training rows only."""

    method: str = "standard"
    per_series: bool = True

    def __post_init__(self) -> None:
        check_bool("scale.per_series", self.per_series)
        allowed = ("standard", "minmax", "robust")
        if self.method not in allowed:
            raise ConfigError(
                f"`scale.method` must be one of {list(allowed)}. Received: method={self.method!r}"
            )


@dataclass(frozen=True)
class EvaluationConfig:
    """Baselines to report beside the model, and the season for MASE and seasonal naive.

    Args:
        season: steps per season; None derives it from the data frequency.
        baselines: names from `forecast.evaluation.baselines.BASELINES`.
        classical: statsforecast models fitted on training rows and compared with the model
            on the same windows (`forecast.evaluation.classical.CLASSICAL`); empty for none.
        classical_timeout: seconds each classical model may take (fit on every series plus
            every forecast) before it is stopped and reported as not finished; null: no limit.
        classical_step: steps between the origins the classical models forecast from (each
            series' first window of the part, then every `classical_step`); null uses the
            horizon, so each target is forecast once. The model is scored on the same windows.
        classical_history: rows before each origin the classical models read; null reads
            every row of the series up to the origin.
        seasons: MSTL's seasons; empty derives them from the frequency (a day and a week
            of sub-daily steps, a week and a year of days, else `season`).
    """

    season: int | None = None
    baselines: tuple[str, ...] = ("naive", "seasonal_naive", "drift", "moving_average", "ridge")
    classical: tuple[str, ...] = tuple(CLASSICAL)
    classical_timeout: float | None = 60.0
    classical_step: int | None = None
    classical_history: int | None = None
    seasons: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "baselines", tuple(self.baselines))
        for name in self.baselines:
            if name not in BASELINES:
                hint = did_you_mean(name, BASELINES)
                raise ConfigError(
                    f"Unknown baseline '{name}' in `evaluation.baselines`.{hint} "
                    f"Allowed: {sorted(BASELINES)}"
                )
        if self.season is not None and (not isinstance(self.season, int) or self.season < 1):
            raise ConfigError(
                f"`evaluation.season` must be an integer >= 1 or null. Received: {self.season!r}"
            )
        self._check_classical()

    def _check_classical(self) -> None:
        if isinstance(self.classical, str) or not isinstance(self.classical, list | tuple):
            raise ConfigError(
                f"`evaluation.classical` must be a list of names from {list(CLASSICAL)}. "
                f"Received: classical={self.classical!r}"
            )
        object.__setattr__(self, "classical", tuple(self.classical))
        for name in self.classical:
            if name not in CLASSICAL:
                raise ConfigError(
                    f"Unknown classical model {name!r} in `evaluation.classical`."
                    f"{did_you_mean(str(name), CLASSICAL)} Allowed: {list(CLASSICAL)}"
                )
        timeout = self.classical_timeout
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ConfigError(
                "`evaluation.classical_timeout` must be a number of seconds > 0 or null "
                f"(no limit). Received: classical_timeout={timeout!r}"
            )
        for name in ("classical_step", "classical_history"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ConfigError(
                    f"`evaluation.{name}` must be an integer >= 1 or null. Received: {value!r}"
                )
        seasons = self.seasons
        if not isinstance(seasons, list | tuple) or any(
            not isinstance(s, int) or isinstance(s, bool) or s < 2 for s in seasons
        ):
            raise ConfigError(
                "`evaluation.seasons` must be a list of integers >= 2 (steps per season), "
                f"or empty. Received: seasons={seasons!r}"
            )
        object.__setattr__(self, "seasons", tuple(sorted(set(seasons))))


@dataclass(frozen=True)
class BacktestConfig:
    """Rolling-origin backtest.

    Args:
        folds: number of forecast origins.
        window: ``expanding`` (train from the start) or ``sliding`` (fixed-length training).
        step: steps between origins; None uses `test_steps`.
        test_steps: steps scored after each origin; None uses 4 horizons.
        validation_steps: steps before each origin held out for early stopping; None uses
            `test_steps`.
        min_train: training steps of the first fold (of every fold when sliding); None
            uses a third of the data.
    """

    folds: int = 3
    window: str = "expanding"
    step: int | None = None
    test_steps: int | None = None
    validation_steps: int | None = None
    min_train: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.folds, int) or isinstance(self.folds, bool) or self.folds < 1:
            raise ConfigError(
                f"`backtest.folds` must be an integer >= 1. Received: folds={self.folds!r}"
            )
        if self.window not in ("expanding", "sliding"):
            raise ConfigError(
                "`backtest.window` must be one of ['expanding', 'sliding']. "
                f"Received: window={self.window!r}"
            )
        for name in ("step", "test_steps", "validation_steps", "min_train"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ConfigError(
                    f"`backtest.{name}` must be an integer >= 1 or null. Received: {value!r}"
                )


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow: where runs go and how models are registered and promoted.

    Args:
        tracking_uri: None uses MLFLOW_TRACKING_URI or the local `sqlite:///mlflow.db`.
        experiment: experiment name; None uses the job name.
        registered_model: registry name; None uses the job name.
        alias: the alias moved to a version that beats the current holder.
        promote_metric: validation metric compared for promotion (lower is better).
        register: register (and maybe promote) the model after training.
    """

    tracking_uri: str | None = None
    experiment: str | None = None
    registered_model: str | None = None
    alias: str = "champion"
    promote_metric: str = "val_mase"
    register: bool = True

    def __post_init__(self) -> None:
        check_bool("tracking.register", self.register)
        for name in ("tracking_uri", "experiment", "registered_model"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(
                    f"`tracking.{name}` must be a non-empty string or null. "
                    f"Received: {name}={value!r}"
                )
        if self.tracking_uri is not None:
            check_store_uri("tracking.tracking_uri", self.tracking_uri)
        if self.experiment is not None:
            check_experiment_name("tracking.experiment", self.experiment)
        if self.registered_model is not None:
            check_model_name("tracking.registered_model", self.registered_model)
        check_alias("tracking.alias", self.alias)
        if self.promote_metric not in PROMOTE_METRICS:
            raise ConfigError(
                f"`tracking.promote_metric` must be a validation metric, one of "
                f"{list(PROMOTE_METRICS)} (lower is better; the champion is never chosen on "
                f"test data). Received: promote_metric={self.promote_metric!r}."
                + did_you_mean(self.promote_metric, PROMOTE_METRICS)
            )


# Validation scores a train job always logs (`val_` + the metric), all lower-is-better;
# `val_pinball_mean` needs a quantile head (checked by `ForecastConfig`).
PROMOTE_METRICS = ("val_mase", "val_mae", "val_rmse", "val_smape", "val_pinball_mean")


@dataclass(frozen=True)
class CalibrationConfig:
    """Rolling recalibration of the quantile head (`forecast.evaluation.calibration`).

    Args:
        windows: K, the recent forecasts with known outcomes that correct each forecast;
            0 turns recalibration off. Needs ``model.quantiles``.
    """

    windows: int = 0

    def __post_init__(self) -> None:
        k = self.windows
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise ConfigError(
                f"`calibration.windows` must be an integer >= 0 (0 turns recalibration off). "
                f"Received: windows={k!r}"
            )
