"""From a job config to model-ready windows: load, validate, featurize, split, scale, window."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from forecast.config import DataConfig, ForecastConfig
from forecast.evaluation.baselines import season_from_freq
from forecast.evaluation.classical import mstl_seasons
from forecast.evaluation.metrics import seasonal_naive_scale
from pipelines import datasets
from pipelines.calendars import REGULAR, Calendar, fixed_step
from pipelines.deseason import Deseasonalizer, check_calendar
from pipelines.errors import ConfigError, DataValidationError
from pipelines.features import add_features
from pipelines.scale import SeriesScaler
from pipelines.schema import SeriesSchema
from pipelines.sources import read_frame
from pipelines.split import FrameSplit, split_by_time
from pipelines.transform import TargetTransform
from pipelines.validate import ValidationPolicy, data_timestamp, parse_timestamps, validate
from pipelines.window import Windows, make_windows

log = logging.getLogger(__name__)

PARTS = ("train", "validation", "test")


@dataclass(frozen=True)
class Source:
    """Raw data as the user gives it, with its column roles and validation policy."""

    frame: pd.DataFrame
    schema: SeriesSchema
    policy: ValidationPolicy
    description: str
    origin: str
    calendar: Calendar | None = None  # None: inferred by `validate`


@dataclass(frozen=True, eq=False)
class Prepared:
    """Everything a training or evaluation step reads, fitted on training rows only.

    Attributes:
        raw_schema: column roles of the user's data (what serving receives).
        policy: validation policy applied to raw history.
        schema: column roles after features (what the model sees).
        frame: validated, featurized frame in original units.
        split: chronological parts of `frame`.
        scaler: fitted on the training rows of `frame` only.
        windows: scaled windows per part; targets of each part lie inside it. A part
            split off as 0 steps (``split.test: 0``) has no entry.
        freq: the data frequency, as validated.
        season: steps per season for seasonal naive and MASE.
        mase_scale: (S, T) in-sample seasonal-naive MAE per series, from training rows only.
        transform: the target transform (log / Box-Cox), fitted on training rows only; it
            runs before the scaler.
        calendar: the calendar the rows sit on (given or inferred); it ships with the model.
        skipped: series left out as too young to train on -> their training rows.
        deseason: the seasonal profile (`model.deseasonalize`), fitted on training rows
            only; it runs between the target transform and the scaler.
    """

    raw_schema: SeriesSchema
    policy: ValidationPolicy
    schema: SeriesSchema
    frame: pd.DataFrame
    split: FrameSplit
    scaler: SeriesScaler
    windows: dict[str, Windows]
    freq: str | None
    season: int
    mase_scale: np.ndarray
    transform: TargetTransform
    calendar: Calendar = REGULAR
    skipped: dict[Any, int] = field(default_factory=dict)
    deseason: Deseasonalizer = field(default_factory=Deseasonalizer)

    def y_true(self, part: str) -> np.ndarray:
        """(N, H, T) targets of `part` in original units."""
        w = self.windows[part]
        return self.to_original(w.target, w)

    def to_original(self, values: np.ndarray, windows: Windows) -> np.ndarray:
        """Scaled (N, H, T[, Q]) outputs for `windows` back to original units."""
        return to_original(self.scaler, self.transform, values, windows, self.deseason)

    def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows in the model's units: target transform, seasonal profile, then scaler."""
        return encode(self.scaler, self.transform, self.deseason, frame)

    def with_seasons(self, windows: Windows) -> Windows:
        """`windows` with the seasonal profile added back to their targets (still scaled):
        what the baselines read, so that they forecast the series, not its remainder."""
        return with_seasons(self.scaler, self.deseason, windows)

    def scale_for(self, windows: Windows) -> np.ndarray:
        """(N, T) MASE scale of each window's series."""
        index = pd.Index(self.series_ids).get_indexer(list(windows.series_ids))
        return self.mase_scale[index[windows.series]]

    @property
    def series_ids(self) -> tuple[str, ...]:
        return tuple(self.windows["train"].series_ids)


def load_source(data: DataConfig) -> Source:
    """Read the configured data and apply the row filters (series, start, end, last_n)."""
    calendar = None
    if data.dataset is not None:
        ds = datasets.load(data.dataset)
        frame, schema, policy, description = ds.frame, ds.schema, ds.policy, ds.description
        origin, calendar = ds.source, ds.calendar
    else:
        schema = SeriesSchema.from_dict(dict(data.schema))
        frame = read_frame(data.path, schema=schema)
        policy, description = ValidationPolicy(), f"file {data.path}"
        origin = str(Path(data.path).resolve())
    if data.calendar is not None:
        calendar = Calendar.from_spec(data.calendar)
        # A named calendar sets the grid: it replaces a dataset's observed-calendar default.
        policy = ValidationPolicy.from_dict({**policy.to_dict(), "calendar": "regular"})
    if data.dataset is not None and data.schema:
        schema = SeriesSchema.from_dict({**schema.to_dict(), **data.schema})
    if data.validation:
        policy = ValidationPolicy.from_dict({**policy.to_dict(), **data.validation})
    frame = _filter(frame, schema, data)
    return Source(
        frame=frame,
        schema=schema,
        policy=policy,
        description=description,
        origin=origin,
        calendar=calendar,
    )


def _filter(frame: pd.DataFrame, schema: SeriesSchema, data: DataConfig) -> pd.DataFrame:
    if data.series:
        if schema.id_col is None:
            raise ConfigError("`data.series` needs a dataset with several series (an id column).")
        known = set(frame[schema.id_col].astype(str))
        missing = [s for s in data.series if s not in known]
        if missing:
            raise ConfigError(
                f"`data.series` names unknown series {missing}; known: {sorted(known)[:10]}"
            )
        frame = frame[frame[schema.id_col].astype(str).isin(data.series)]
    if data.start is not None or data.end is not None:
        times = parse_timestamps(frame[schema.time_col])
        keep = np.ones(len(frame), bool)
        if data.start is not None:
            keep &= (times >= data_timestamp(data.start, times.dt.tz, "data.start")).to_numpy()
        if data.end is not None:
            keep &= (times <= data_timestamp(data.end, times.dt.tz, "data.end")).to_numpy()
        frame = frame[keep]
    if data.last_n is not None:
        keys = [schema.id_col] if schema.id_col else []
        # By time, not by its text: "1939 Feb" sorts before "1939 Jan".
        order = frame.assign(_time=parse_timestamps(frame[schema.time_col]))
        frame = frame.loc[order.sort_values([*keys, "_time"], kind="stable").index]
        frame = frame.groupby(keys).tail(data.last_n) if keys else frame.tail(data.last_n)
    if frame.empty:
        raise DataValidationError("No rows left after the `data` filters (series/start/end).")
    return frame.reset_index(drop=True)


def featurize(
    frame: pd.DataFrame,
    schema: SeriesSchema,
    policy: ValidationPolicy,
    features: Any,
    calendar: Calendar | None = None,
) -> tuple[pd.DataFrame, SeriesSchema, str | None]:
    """Validate raw rows and add features: the one path shared by training and serving.

    The calendar used (given, else inferred) is in ``frame.attrs["calendar"]``.
    """
    clean = validate(frame, schema, policy=policy, calendar=calendar)
    freq = clean.attrs.get("freq") or schema.freq
    out, model_schema = add_features(clean, schema, features)
    return out, model_schema, (str(freq) if freq is not None else None)


def prepare(config: ForecastConfig, source: Source | None = None) -> Prepared:
    """Run the data path of `config` up to scaled windows for train, validation and test."""
    source = source or load_source(config.data)
    frame, schema, freq = featurize(
        source.frame, source.schema, source.policy, config.data.features, source.calendar
    )
    spec = config.window
    split = split_by_time(
        frame,
        schema,
        validation=config.split.validation,
        test=config.split.test,
        horizon=spec.horizon,
    )
    return prepare_split(config, source, frame, schema, freq, split)


def check_lookback_season(config: ForecastConfig, season: int, freq: str) -> None:
    """The seasonal-naive baseline reads a season of each window, so lookback > season.

    An explicit `evaluation.season` is checked when the config loads; a season from the
    frequency is checked here, before any fitting, and by `forecast tune` before it offers
    a lookback."""
    lookback = config.window.lookback
    if season >= lookback and "seasonal_naive" in config.evaluation.baselines:
        raise ConfigError(
            f"The season of frequency {freq!r} ({season} steps) must be shorter than "
            f"`window.lookback` ({lookback}) for the seasonal-naive baseline: set "
            f"`window.lookback` above {season} or a shorter `evaluation.season`."
        )


def prepare_split(
    config: ForecastConfig,
    source: Source,
    frame: pd.DataFrame,
    schema: SeriesSchema,
    freq: str | None,
    split: FrameSplit,
) -> Prepared:
    """Fit the scaler on the training part of `split` and window every part.

    Every series is cut at the same timestamps (no part sees another series' future). A
    series that starts too late to have one complete training window, or a season of
    training history for MASE, is left out of training and scoring and reported in
    ``Prepared.skipped`` (a young series in a panel of ragged starts).
    """
    spec = config.window
    calendar = Calendar.from_dict(frame.attrs.get("calendar"))
    # Sessions: a season is a trading day's slots (78 five-minute bars), or a working week.
    step = fixed_step(to_offset(freq)) if freq else None
    season = config.evaluation.season or calendar.season(step)
    season = season or (season_from_freq(freq) if freq else 1)
    split, skipped = _without_young_series(split, schema, spec, season)
    frame = split.frame
    train = split.train
    deseason = _deseasonalizer(config, calendar, season, freq)  # refused before any fit
    transform = TargetTransform(method=config.model.target_transform, season=season)
    transform.fit(train, schema)  # training rows only, like the scaler
    deseason.fit(transform.transform(train), schema, freq=freq)  # training rows only
    scaler = SeriesScaler(method=config.scale.method, per_series=config.scale.per_series)
    scaler.fit(deseason.transform(transform.transform(train)), schema)
    lengths = train.groupby(schema.id_col, sort=False).size() if schema.id_col else None
    shortest = int(lengths.min()) if lengths is not None else len(train)
    if season >= shortest:
        who = f"series {lengths.idxmin()!r}" if lengths is not None else "the series"
        raise ConfigError(
            f"The season ({season} steps) is longer than the training part of {who} "
            f"({shortest} steps): seasonal naive and MASE need at least one full season "
            "of training history. Set `evaluation.season` or use more data."
        )
    check_lookback_season(config, season, freq)
    windows = {}
    for part in PARTS:
        if part == "train":
            rows = split.rows("train")
            part_frame, target_rows = split.frame, rows
        else:
            part_frame, target_rows = split.with_history(part, spec.lookback)
        if not target_rows.any():
            continue
        encoded = encode(scaler, transform, deseason, part_frame)
        windows[part] = make_windows(
            encoded, schema, spec, target_rows=target_rows, on_short="skip"
        )
    for part in PARTS:
        if part != "train" and len(split.ranges.part(part)) == 0:
            windows.pop(part, None)  # `split.test: 0`, or a refit on all rows
            continue
        if part not in windows or len(windows[part]) == 0:
            raise DataValidationError(
                f"The {part} part holds no complete window (lookback={spec.lookback}, "
                f"horizon={spec.horizon}); split sizes: {split.describe()}. Use more data, "
                "a larger split fraction or a shorter horizon."
            )
    mase_scale = _mase_scale(train, schema, windows["train"].series_ids, season)
    return Prepared(
        raw_schema=source.schema,
        policy=source.policy,
        schema=schema,
        frame=frame,
        split=split,
        scaler=scaler,
        windows=windows,
        freq=freq,
        season=season,
        mase_scale=mase_scale,
        transform=transform,
        calendar=calendar,
        skipped=skipped,
        deseason=deseason,
    )


def _deseasonalizer(
    config: ForecastConfig, calendar: Calendar, season: int, freq: str | None
) -> Deseasonalizer:
    """The configured decomposition with the data's seasons (MSTL's of the comparison)."""
    method = config.model.deseasonalize
    if method == "none":
        return Deseasonalizer()
    check_calendar(method, calendar)  # an inferred calendar: before anything is fitted
    if freq is None:
        raise ConfigError(
            f"`model.deseasonalize: {method}` places each timestamp in its season on the "
            "grid of the data frequency; these data have none. Set `data.schema.freq`."
        )
    seasons = config.evaluation.seasons or mstl_seasons(season, freq)
    return Deseasonalizer(method=method, seasons=tuple(seasons))


def encode(
    scaler: SeriesScaler,
    transform: TargetTransform,
    deseason: Deseasonalizer,
    frame: pd.DataFrame,
) -> pd.DataFrame:
    """Rows in the model's units: the one encoding that training and serving share."""
    return scaler.transform(deseason.transform(transform.transform(frame)))


def to_original(
    scaler: SeriesScaler,
    transform: TargetTransform,
    values: np.ndarray,
    windows: Windows,
    deseason: Deseasonalizer | None = None,
) -> np.ndarray:
    """Model outputs (N, H, T[, Q]) for `windows` back to original units: the one inverse
    that evaluation and serving share (scaler, seasonal profile at the horizon's
    timestamps, then target transform)."""
    out = scaler.inverse_transform_target(values, windows.series, series_ids=windows.series_ids)
    if deseason is not None and deseason.active:
        seas = _horizon_seasons(deseason, windows)  # (N, H, T)
        out = out + seas.reshape(seas.shape + (1,) * (out.ndim - 3))
    return transform.inverse_target(out, windows.series, series_ids=windows.series_ids)


def _horizon_seasons(deseason: Deseasonalizer, windows: Windows) -> np.ndarray:
    times = windows.horizon_times  # (N, H)
    if (times == np.iinfo(np.int64).min).any():
        raise DataValidationError("The horizon's timestamps are unknown: cannot add the seasons.")
    labels = list(np.asarray(windows.series_ids, dtype=object)[windows.series])
    codes = np.repeat(deseason.series_index(labels), times.shape[1])
    n, h = times.shape
    return deseason.seasonal(times.reshape(-1), codes).reshape(n, h, -1)


def with_seasons(scaler: SeriesScaler, deseason: Deseasonalizer, windows: Windows) -> Windows:
    """`windows` whose target columns hold the series again (profile added, in scaled units)."""
    if not deseason.active:
        return windows
    rows = np.arange(len(windows.values))
    series = np.searchsorted(windows.series_rows, rows, side="right") - 1
    labels = list(np.asarray(windows.series_ids, dtype=object)[series])
    seas = deseason.seasonal(windows.times, deseason.series_index(labels))  # (R, T)
    # The scaler is affine per (series, target): its spread turns a seasonal amount into
    # scaled units.
    s = len(windows.series_ids)
    ones = np.ones((s, 1, windows.n_targets))
    index = np.arange(s)
    spread = scaler.inverse_transform_target(
        ones, index, series_ids=windows.series_ids
    ) - scaler.inverse_transform_target(ones * 0, index, series_ids=windows.series_ids)
    values = windows.values.copy()
    values[:, : windows.n_targets] += (seas / spread[series, 0]).astype(np.float32)
    return replace(windows, values=values)


def _without_young_series(
    split: FrameSplit, schema: SeriesSchema, spec: Any, season: int
) -> tuple[FrameSplit, dict[Any, int]]:
    """`split` without the series too young to train on, and those series' training rows."""
    if schema.id_col is None:
        return split, {}
    need = max(spec.min_history + spec.horizon, season + 1)
    ids = split.frame[schema.id_col]
    rows = ids[split.rows("train")].value_counts().reindex(pd.unique(ids), fill_value=0)
    young = rows[rows < need]
    if young.empty:
        return split, {}
    listed = ", ".join(f"{sid!r} ({n})" for sid, n in young.head(10).items())
    more = f" and {len(young) - 10} more" if len(young) > 10 else ""
    if len(young) == len(rows):
        raise DataValidationError(
            f"No series has the {need} training rows it needs (one window of "
            f"{spec.min_history} + {spec.horizon} steps, a season of {season}); training rows: "
            f"{listed}{more}. Use a later `split.validation` / `split.test` or a shorter "
            "lookback."
        )
    log.warning(
        "Left out %d of %d series too young to train on (fewer than %d training rows "
        "before the validation part): %s%s",
        len(young),
        len(rows),
        need,
        listed,
        more,
    )
    kept = split.frame[~ids.isin(young.index).to_numpy()].reset_index(drop=True)
    return replace(split, frame=kept), {k: int(v) for k, v in young.items()}


def _mase_scale(
    train: pd.DataFrame, schema: SeriesSchema, series_ids: tuple[str, ...], season: int
) -> np.ndarray:
    """(S, T) in-sample seasonal-naive MAE of each training series."""
    out = np.empty((len(series_ids), len(schema.targets)))
    groups = dict(tuple(train.groupby(schema.id_col, sort=False))) if schema.id_col else None
    for s, sid in enumerate(series_ids):
        rows = train if groups is None else groups[_key(groups, sid)]
        for t, col in enumerate(schema.targets):
            out[s, t] = seasonal_naive_scale(rows[col].to_numpy(np.float64), season)
    return out


def _key(groups: dict, sid: str) -> Any:
    if sid in groups:
        return sid
    for key in groups:
        if str(key) == str(sid):
            return key
    raise DataValidationError(f"Series {sid!r} has no training rows.")
