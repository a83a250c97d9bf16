"""The job configuration: one YAML file, validated once, round-tripping to a plain dict.

Loading a config imports no TensorFlow: a typo is reported in well under a second.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from forecast.config.checks import check_keys
from forecast.config.mlflow_names import check_model_name
from forecast.config.model import ModelSpec, OptimizerSpec
from forecast.config.sections import (
    BacktestConfig,
    CalibrationConfig,
    DataConfig,
    EvaluationConfig,
    ScaleConfig,
    SplitConfig,
    TrackingConfig,
)
from forecast.config.training import TrainConfig
from forecast.config.tuning import TuningConfig
from pipelines.calendars import Calendar
from pipelines.deseason import check_calendar
from pipelines.errors import ConfigError
from pipelines.features import FeatureSpec
from pipelines.window import WindowSpec

# A config is a few kB; anything far larger is a data or model file given by mistake.
MAX_CONFIG_BYTES = 1 << 20
MAX_NESTING = 100  # levels of flow brackets; a config needs three or four
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
    "tuning": TuningConfig,
}
AUTO = "auto"  # `model: auto`: `forecast train` runs `forecast tune` first
# The model keys `forecast tune` leaves as the config sets them, so `model: {auto: true,
# quantiles: [0.1, 0.5, 0.9]}` tunes a quantile model; every other key is searched or set
# by the search (`tuning.space` narrows a searched one).
AUTO_KEPT = (
    "quantiles",
    "ensemble",
    "dropout",
    "recurrent_dropout",
    "l1",
    "l2",
    "layer_norm",
    "precision",
    "kernel_initializer",
    "recurrent_initializer",
    "future_mode",
)


@dataclass(frozen=True)
class ForecastConfig:
    """A whole job: data, split, scale, windows, model, training, evaluation and tracking.

    Also the calibration and backtest settings; each section is validated by its dataclass.
    ``model: auto`` in YAML sets `auto`: `forecast train` then chooses the model, optimizer
    and lookback with `forecast tune` (budget: the `tuning` section) on pre-test rows first.
    """

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
    tuning: TuningConfig = field(default_factory=TuningConfig)
    auto: bool = False

    def __post_init__(self) -> None:
        if not self.auto and self.tuning != TuningConfig():
            raise ConfigError(
                "`tuning` is the search budget of `model: auto`; set `model: auto` or leave "
                f"`tuning` out. Received: tuning={self.tuning}"
            )
        if self.tracking.promote_metric == "val_pinball_mean" and not self.model.quantiles:
            raise ConfigError(
                "`tracking.promote_metric: val_pinball_mean` needs a quantile head: set "
                "`model.quantiles` or promote on `val_mase`."
            )
        if self.calibration.windows and not self.model.quantiles:
            raise ConfigError(
                "`calibration.windows` recalibrates a quantile head: set `model.quantiles` "
                f"(with 0.5), or set `calibration.windows: 0`. Received: "
                f"windows={self.calibration.windows}, quantiles={list(self.model.quantiles)}"
            )
        if self.split.validation == 0:
            raise ConfigError(
                "`split.validation: 0` leaves no validation part, which early stopping and "
                "promotion (`tracking.promote_metric`) read: give it a fraction, a number of "
                "steps or a start timestamp. To train the registered model on all rows, set "
                "`training.refit: full`."
            )
        season, lookback = self.evaluation.season, self.window.lookback
        if (
            season is not None
            and season >= lookback
            and "seasonal_naive" in self.evaluation.baselines
        ):
            raise ConfigError(
                f"`evaluation.season` ({season}) must be shorter than `window.lookback` "
                f"({lookback}): the seasonal-naive baseline repeats the last season of each "
                f"window. Set `window.lookback` above {season}, a shorter `evaluation.season`, "
                "or leave 'seasonal_naive' out of `evaluation.baselines`."
            )
        if self.calibration.windows and self.window.stride != 1:
            # With a stride the grid of earlier forecasts would start wherever a history
            # starts, so a served forecast would depend on how many rows a request sends.
            raise ConfigError(
                "`calibration.windows` needs `window.stride: 1` (a forecast is corrected "
                f"with the forecasts of the K origins before it). Received: "
                f"stride={self.window.stride}"
            )
        if self.model.deseasonalize != "none" and self.data.calendar is not None:
            check_calendar(
                self.model.deseasonalize, Calendar.from_spec(self.data.calendar, "data.calendar")
            )
        if self.tracking.register and self.tracking.registered_model is None:
            # The job name is the registry name then: refuse it now, not after training.
            check_model_name("name", self.name)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ForecastConfig:
        """Validate a plain dict (from YAML); unknown keys are errors with a did-you-mean."""
        if "auto" in d:  # a field, but written `model: auto`
            raise ConfigError(
                "Unknown key 'auto'. To let `forecast train` choose the model, write `model: auto`."
            )
        check_keys(d, cls, "config")
        for required in ("name", "data", "window"):
            if required not in d:
                raise ConfigError(f"Missing required key '{required}' in the config.")
        if not isinstance(d["name"], str) or not d["name"]:
            raise ConfigError(f"`name` must be a non-empty string. Received: {d['name']!r}")
        kwargs: dict[str, Any] = {"name": d["name"]}
        model = d.get("model")
        if isinstance(model, dict) and AUTO in model:
            d = {**d, "model": _auto_model(model)}
            kwargs["auto"] = True
        elif isinstance(model, str):
            if model != AUTO:
                raise ConfigError(
                    f"`model` must be a mapping of model settings, or '{AUTO}' to let "
                    f"`forecast train` choose one with `forecast tune`. Received: {model!r}"
                )
            d = {k: v for k, v in d.items() if k != "model"}
            kwargs["auto"] = True
        for key, section_cls in _SECTIONS.items():
            if key in d:
                kwargs[key] = _section(section_cls, key, d[key])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict that `from_dict` turns back into an equal config."""
        out: dict[str, Any] = {"name": self.name}
        for key in _SECTIONS:
            out[key] = _plain(getattr(self, key))
        if self.auto:
            kept = {k: v for k, v in out["model"].items() if v != _plain(ModelSpec())[k]}
            out["model"] = {AUTO: True, **kept} if kept else AUTO
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def experiment(self) -> str:
        return self.tracking.experiment or self.name

    @property
    def registered_model(self) -> str:
        return self.tracking.registered_model or self.name


def _auto_model(model: dict[str, Any]) -> dict[str, Any]:
    """`model: {auto: true, ...}`: the kept keys of `AUTO_KEPT`, checked before any work."""
    if model[AUTO] is not True:
        raise ConfigError(
            f"`model.auto` must be true (or write `model: auto`). Received: {model[AUTO]!r}"
        )
    searched = sorted(k for k in model if k != AUTO and k not in AUTO_KEPT)
    if searched:
        raise ConfigError(
            f"`model: auto` chooses {searched} itself; with `auto: true` the model section may "
            f"only fix {list(AUTO_KEPT)}. Narrow a searched key with `tuning.space`, e.g. "
            "`tuning: {space: {cell: [gru]}}`."
        )
    return {k: v for k, v in model.items() if k != AUTO}


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
        node[parts[-1]] = _parse_yaml(raw, f"--set {key.strip()}={raw}")
    return out


def _parse_yaml(text: str, what: str) -> Any:
    """`yaml.safe_load`, with its errors as one line naming `what` and the position."""
    if _flow_depth(text) > MAX_NESTING:  # PyYAML takes seconds on deep `[[[`, then recurses out
        raise ConfigError(
            f"{what} is not valid YAML: nested too deeply (more than {MAX_NESTING} levels of "
            "[ and {)"
        )
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} is not valid YAML: {_yaml_problem(err)}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError(f"{what} is not valid YAML: nested too deeply") from None


def _flow_depth(text: str) -> int:
    """The deepest nesting of YAML flow brackets in `text` (brackets inside quotes count too)."""
    depth = deepest = 0
    for char in re.sub(r"[^\[\]{}]", "", text):
        depth = depth + 1 if char in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: the problem and where it is."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def load_config(path: str | os.PathLike[str], overrides: tuple[str, ...] = ()) -> ForecastConfig:
    """Read, override and validate a YAML config file."""
    p = Path(path)
    shown = repr(os.fspath(path))
    if p.is_dir():
        raise ConfigError(f"Config file {shown} is a folder; expected a YAML file.")
    if not p.is_file():
        raise ConfigError(f"Config file not found: {shown}")
    size = p.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"Config file {shown} is {size:,} bytes; a YAML config is at most "
            f"{MAX_CONFIG_BYTES:,} (is it a data or model file?)."
        )
    data = p.read_bytes()
    if b"\0" in data:
        raise ConfigError(
            f"Config file {shown} is a binary file (it holds NUL bytes); expected YAML text."
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"Config file {shown} is not UTF-8 text (byte {data[err.start]:#04x} at offset "
            f"{err.start}); expected a YAML file."
        ) from None
    d = _parse_yaml(text, f"Config file {shown}")
    if not isinstance(d, dict):
        got = "nothing (the file is empty)" if d is None else f"a {type(d).__name__}"
        raise ConfigError(
            f"Config file {shown} must hold a mapping of sections (name, data, window, ...) at "
            f"the top; it holds {got}."
        )
    return ForecastConfig.from_dict(apply_overrides(d, overrides))
