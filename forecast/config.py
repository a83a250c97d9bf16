"""The job configuration: one YAML file, validated once, round-tripping to a plain dict."""

from __future__ import annotations

import datetime
import difflib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from forecast._config_utils import check_keys
from forecast.baselines import BASELINES
from forecast.calibration import CalibrationConfig
from forecast.models.spec import ModelSpec, OptimizerSpec
from forecast.train import TrainConfig
from pipelines.errors import ConfigError
from pipelines.features import FeatureSpec
from pipelines.validate import ValidationPolicy
from pipelines.window import WindowSpec

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

    def __post_init__(self) -> None:
        if (self.dataset is None) == (self.path is None):
            raise ConfigError(
                "Set exactly one of `data.dataset` (a bundled dataset) and `data.path` "
                f"(a CSV or Parquet file). Received: dataset={self.dataset!r}, path={self.path!r}"
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
    """Chronological split: fractions of the calendar, step counts, or start timestamps."""

    validation: float | int | str = 0.15
    test: float | int | str = 0.15

    def __post_init__(self) -> None:
        for name in ("validation", "test"):
            value = getattr(self, name)
            if not isinstance(value, _SPLIT_VALUE) or isinstance(value, bool):
                raise ConfigError(
                    f"`split.{name}` must be a fraction, a number of steps or a timestamp. "
                    f"Received: {name}={value!r}"
                )


@dataclass(frozen=True)
class ScaleConfig:
    """Scikit-learn scaler fit on training rows only."""

    method: str = "standard"
    per_series: bool = True

    def __post_init__(self) -> None:
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
        baselines: names from `forecast.baselines.BASELINES`.
    """

    season: int | None = None
    baselines: tuple[str, ...] = ("naive", "seasonal_naive", "drift", "moving_average", "ridge")

    def __post_init__(self) -> None:
        object.__setattr__(self, "baselines", tuple(self.baselines))
        for name in self.baselines:
            if name not in BASELINES:
                close = difflib.get_close_matches(name, list(BASELINES), n=1)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise ConfigError(
                    f"Unknown baseline '{name}' in `evaluation.baselines`.{hint} "
                    f"Allowed: {sorted(BASELINES)}"
                )
        if self.season is not None and (not isinstance(self.season, int) or self.season < 1):
            raise ConfigError(
                f"`evaluation.season` must be an integer >= 1 or null. Received: {self.season!r}"
            )


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


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "split": SplitConfig,
    "scale": ScaleConfig,
    "window": WindowSpec,
    "model": ModelSpec,
    "optimizer": OptimizerSpec,
    "training": TrainConfig,
    "evaluation": EvaluationConfig,
    "calibration": CalibrationConfig,
    "backtest": BacktestConfig,
    "tracking": TrackingConfig,
}


@dataclass(frozen=True)
class ForecastConfig:
    """A whole job: data, split, scale, windows, model, training, evaluation, calibration,
    backtest, tracking."""

    name: str
    data: DataConfig
    window: WindowSpec
    split: SplitConfig = field(default_factory=SplitConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    training: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        if self.calibration.windows and not self.model.quantiles:
            raise ConfigError(
                "`calibration.windows` recalibrates a quantile head: set `model.quantiles` "
                f"(with 0.5), or set `calibration.windows: 0`. Received: "
                f"windows={self.calibration.windows}, quantiles={list(self.model.quantiles)}"
            )
        if self.calibration.windows and self.window.stride != 1:
            # With a stride the grid of earlier forecasts would start wherever a history
            # starts, so a served forecast would depend on how many rows a request sends.
            raise ConfigError(
                "`calibration.windows` needs `window.stride: 1` (a forecast is corrected "
                f"with the forecasts of the K origins before it). Received: "
                f"stride={self.window.stride}"
            )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ForecastConfig:
        """Validate a plain dict (from YAML); unknown keys are errors with a did-you-mean."""
        check_keys(d, cls, "config")
        for required in ("name", "data", "window"):
            if required not in d:
                raise ConfigError(f"Missing required key '{required}' in the config.")
        if not isinstance(d["name"], str) or not d["name"]:
            raise ConfigError(f"`name` must be a non-empty string. Received: {d['name']!r}")
        kwargs: dict[str, Any] = {"name": d["name"]}
        for key, section_cls in _SECTIONS.items():
            if key in d:
                kwargs[key] = _section(section_cls, key, d[key])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict that `from_dict` turns back into an equal config."""
        out: dict[str, Any] = {"name": self.name}
        for key in _SECTIONS:
            out[key] = _plain(getattr(self, key))
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def registered_model(self) -> str:
        return self.tracking.registered_model or self.name


def _section(section_cls: type, key: str, value: Any) -> Any:
    value = {} if value is None else value
    if key == "data":
        check_keys(value, DataConfig, key)
        value = dict(value)
        value["features"] = _section(FeatureSpec, "data.features", value.get("features"))
        return DataConfig(**value)
    if hasattr(section_cls, "from_dict") and section_cls not in (TrainConfig,):
        if not isinstance(value, dict):
            raise ConfigError(f"`{key}` must be a mapping of settings. Received: {value!r}")
        check_keys(value, section_cls, key)
        return section_cls.from_dict(value)
    check_keys(value, section_cls, key)
    return section_cls(**value)


def _plain(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return _plain(obj.to_dict())
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def apply_overrides(d: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides (values parsed as YAML) to a config dict copy."""
    out = yaml.safe_load(yaml.safe_dump(d))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"Overrides look like key=value. Received: {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"Override key must be dotted names. Received: {key!r}")
        node = out
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"Cannot set '{key}': '{part}' is not a section.")
            node = nxt
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def load_config(path: str | os.PathLike[str], overrides: tuple[str, ...] = ()) -> ForecastConfig:
    """Read, override and validate a YAML config file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"Config file not found: {os.fspath(path)!r}")
    try:
        d = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"Config file {os.fspath(path)!r} is not valid YAML: {err}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"Config file {os.fspath(path)!r} must hold a mapping at the top.")
    return ForecastConfig.from_dict(apply_overrides(d, overrides))
