"""A trained model with its fitted pipeline state: raw history in, forecast rows out.

The same `featurize` path that prepared the training data runs again here, so training
and serving inputs cannot drift apart. A `Forecaster` saves to a directory
(`model.keras` + `pipeline.json`, no pickle) that ships inside the MLflow model.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

import forecast.models  # noqa: F401 - registers the custom Keras objects for loading
from forecast.data import encode, featurize, to_original
from forecast.evaluation.calibration import correcting_windows, recalibrate
from forecast.evaluation.scoring import predict_windows
from forecast.serving.artifacts import ModelLoadError, check_keras_file, read_json
from forecast.serving.input_range import check_in_range
from pipelines._frames import series_codes, time_column
from pipelines.calendars import REGULAR, Calendar
from pipelines.deseason import Deseasonalizer
from pipelines.errors import DataValidationError
from pipelines.features import FeatureSpec, future_features
from pipelines.scale import SeriesScaler
from pipelines.schema import SINGLE_SERIES_ID, SeriesSchema
from pipelines.sources import atomic_write
from pipelines.transform import TargetTransform
from pipelines.validate import ValidationPolicy
from pipelines.window import Windows, WindowSpec, inference_windows, make_windows

log = logging.getLogger(__name__)

_FORMAT = "rnn-forecast/pipeline-v1"
SERIES_COL, TIME_COL, STEP_COL, TARGET_COL, FORECAST_COL = (
    "series",
    "timestamp",
    "step",
    "target",
    "forecast",
)


def _plain(value: Any) -> Any:
    """numpy scalars as Python ones, so messages read 3.5 and 'DAX', not np.float64(3.5)."""
    return value.item() if isinstance(value, np.generic) else value


def _numeric(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """(rows, columns) float64 values; what is not a number (text, None) becomes NaN."""
    out = np.empty((len(frame), len(columns)))
    for j, col in enumerate(columns):
        values = frame[col]
        if not pd.api.types.is_numeric_dtype(values):
            values = pd.to_numeric(values, errors="coerce")
        out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def _times(col: pd.Series) -> pd.DatetimeIndex:
    """A time column as timestamps, NaT where it holds none; `validate` reports those.

    Columns that already hold datetimes skip `pd.to_datetime`, which iterates over every
    value of one to decide whether to cache (most of a 100-series request's split otherwise).
    """
    if pd.api.types.is_datetime64_any_dtype(col):
        return pd.DatetimeIndex(col)
    return pd.DatetimeIndex(pd.to_datetime(col, errors="coerce"))


_NAT = np.iinfo(np.int64).min


def _time_order(col: pd.Series) -> np.ndarray:
    """(R,) int64 that orders a time column like its timestamps (any unit); NaT is `_NAT`.

    A numpy datetime column is read as it is: building a DatetimeIndex of it costs more
    than the rest of splitting a one-series request.
    """
    if isinstance(col.dtype, np.dtype) and col.dtype.kind == "M":
        return col.to_numpy().view(np.int64)
    return _times(col).asi8


@dataclass(frozen=True)
class _SeriesEnds:
    """Each series' last history timestamp, in the validated frame's series order."""

    ids: np.ndarray  # (S,) object: series labels
    ns: np.ndarray  # (S,) int64 UTC nanoseconds
    tz: Any  # the time column's zone; None when naive

    def at(self, label: Any) -> pd.Timestamp:
        """The last timestamp of series `label` (for messages)."""
        return _to_index(self.ns[list(self.ids).index(label)][None], self.tz)[0]


@functools.lru_cache(maxsize=4096)
def _horizon_ns(calendar: Calendar, last_ns: int, tz: Any, n: int, freq: str) -> np.ndarray:
    """UTC nanoseconds of the `n` calendar timestamps after `last_ns`, read-only (shared)."""
    last = pd.Timestamp(last_ns) if tz is None else pd.Timestamp(last_ns, tz="UTC").tz_convert(tz)
    out = calendar.next_times(last, n, freq).as_unit("ns").asi8.copy()
    out.flags.writeable = False
    return out


def _to_index(ns: np.ndarray, tz: Any) -> pd.DatetimeIndex:
    times = pd.DatetimeIndex(ns.view("M8[ns]"))
    return times if tz is None else times.tz_localize("UTC").tz_convert(tz)


def quantile_column(level: float) -> str:
    """Column name of a quantile level: 0.1 -> ``p10``, 0.025 -> ``p2_5``."""
    return "p" + f"{level * 100:g}".replace(".", "_")


@dataclass(frozen=True, eq=False)
class PipelineState:
    """Everything between raw history and model inputs, fitted on training rows only."""

    raw_schema: SeriesSchema
    policy: ValidationPolicy
    features: FeatureSpec
    schema: SeriesSchema
    scaler: SeriesScaler
    window: WindowSpec
    freq: str | None
    quantiles: tuple[float, ...] = ()
    calibration_windows: int = 0  # K of `forecast.evaluation.calibration`; 0 = off
    transform: TargetTransform = TargetTransform()  # log / Box-Cox before the scaler
    calendar: Calendar = REGULAR  # states saved before calendars: the regular grid
    deseason: Deseasonalizer = Deseasonalizer()  # seasonal profile (`model.deseasonalize`)

    def encode(self, frame: pd.DataFrame) -> pd.DataFrame:
        """History rows in the model's units (`forecast.data.encode`)."""
        return encode(self.scaler, self.transform, self.deseason, frame)

    def to_original(self, values: np.ndarray, windows: Windows) -> np.ndarray:
        """Model outputs for `windows` back to original units (`forecast.data.to_original`)."""
        return to_original(self.scaler, self.transform, values, windows, self.deseason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "raw_schema": self.raw_schema.to_dict(),
            "policy": self.policy.to_dict(),
            "features": self.features.to_dict(),
            "schema": self.schema.to_dict(),
            "scaler": self.scaler.to_dict(),
            "window": self.window.to_dict(),
            "freq": self.freq,
            "quantiles": list(self.quantiles),
            "calibration_windows": self.calibration_windows,
            "transform": self.transform.to_dict(),
            "calendar": self.calendar.to_dict(),
            "deseason": self.deseason.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PipelineState:
        if d.get("format") != _FORMAT:
            raise DataValidationError(
                f"Unknown pipeline state format {d.get('format')!r}; expected {_FORMAT!r}."
            )
        return cls(
            raw_schema=SeriesSchema.from_dict(d["raw_schema"]),
            policy=ValidationPolicy.from_dict(d["policy"]),
            features=FeatureSpec.from_dict(d["features"]),
            schema=SeriesSchema.from_dict(d["schema"]),
            scaler=SeriesScaler.from_dict(d["scaler"]),
            window=WindowSpec.from_dict(d["window"]),
            freq=d["freq"],
            quantiles=tuple(d.get("quantiles", ())),
            calibration_windows=int(d.get("calibration_windows", 0)),
            transform=TargetTransform.from_dict(d["transform"])
            if "transform" in d
            else TargetTransform(),
            calendar=Calendar.from_dict(d.get("calendar")),
            deseason=Deseasonalizer.from_dict(d["deseason"])
            if "deseason" in d
            else Deseasonalizer(),
        )

    @property
    def min_rows(self) -> int:
        """Raw history rows a series needs: the window's minimum plus the feature warm-up,
        plus ``K + H - 1`` rows for the K earlier forecasts that recalibrate the quantiles."""
        return self.window.min_history + self.features.warmup + self.calibration_rows

    @property
    def calibration_rows(self) -> int:
        k = self.calibration_windows
        return k + self.window.horizon - 1 if k else 0

    @property
    def output_columns(self) -> list[str]:
        """The forecast rows' columns, in order: the one list `predict` and the signature use."""
        return [
            SERIES_COL,
            TIME_COL,
            STEP_COL,
            TARGET_COL,
            FORECAST_COL,
            *(quantile_column(q) for q in self.quantiles),
        ]


class Forecaster:
    """A trained Keras model plus the pipeline state that feeds it.

    Args:
        model: the trained `keras.Model` (inputs and outputs per docs/contracts.md).
        state: the fitted pipeline state of the training run.
    """

    def __init__(self, model: keras.Model, state: PipelineState) -> None:
        self.model = model
        self.state = state

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write `model.keras` and `pipeline.json` into `directory` (created if needed)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save(out / "model.keras")
        state = json.dumps(self.state.to_dict(), indent=2)
        atomic_write(out / "pipeline.json", lambda tmp: tmp.write_text(state))
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Forecaster:
        """Load a saved forecaster; needs only this package imported.

        Raises:
            ModelLoadError: ``pipeline.json`` or ``model.keras`` is missing, truncated or
                corrupted; the message names the folder and the file.
        """
        d = Path(directory)
        where = str(d)
        raw = read_json(d / "pipeline.json", model=where, artifact="pipeline.json")
        try:
            state = PipelineState.from_dict(raw)
        except (KeyError, TypeError, ValueError) as exc:
            what = f"lacks key {exc}" if isinstance(exc, KeyError) else f"is invalid: {exc}"
            raise ModelLoadError(where, "pipeline.json", f"is incomplete: it {what}") from None
        check_keras_file(d / "model.keras", model=where, artifact="model.keras")
        try:
            model = keras.saving.load_model(d / "model.keras", compile=False)
        except Exception as exc:  # a well-formed archive Keras still cannot read
            raise ModelLoadError(
                where, "model.keras", f"cannot be read by Keras {keras.__version__}: {exc}"
            ) from None
        return cls(model, state)

    # ------------------------------------------------------------------ prediction
    def predict(self, frame: pd.DataFrame, *, batch_size: int = 1024) -> pd.DataFrame:
        """Forecast the `horizon` steps after each series' last observed target.

        Args:
            frame: raw history rows (time, optional id, targets, covariates), several
                series allowed. Rows after the last observed target of a series whose
                target is missing are future rows: they carry known-future covariates.

        Returns:
            One row per (series, step, target): ``series``, ``timestamp``, ``step``,
            ``target``, ``forecast`` and one column per quantile (``p10``, ...).

        Raises:
            DataValidationError: the payload breaks a rule; the message names the
                column, the series and what was expected.
        """
        st = self.state
        history, future_raw = self._split_rows(frame)
        self._check_lengths(history)
        hist, schema, _ = featurize(history, st.raw_schema, st.policy, st.features, st.calendar)
        # pandas deep-copies a frame's attrs into every column it hands out (~10 us each,
        # a dozen times below); the state holds what they say (freq, calendar).
        hist.attrs = {}
        if tuple(schema.input_columns) != tuple(st.schema.input_columns):
            raise DataValidationError(
                f"The history produced features {list(schema.input_columns)}, but the model "
                f"was trained on {list(st.schema.input_columns)}."
            )
        schema = st.schema
        last = self._last_times(hist)
        st.scaler.series_index(last.ids)  # unknown series -> clear error
        scaled = st.encode(hist)
        check_in_range(hist, scaled, st.scaler, self._ids(hist), time_col=schema.time_col)
        times = self._future_times(last)
        future = self._future_frame(last, times, future_raw) if schema.future_covariates else None
        windows = inference_windows(
            scaled, schema, st.window, future=future, horizon_times=times.reshape(len(last.ns), -1)
        )
        point, quantiles = predict_windows(self.model, windows, batch_size=batch_size)
        point = st.to_original(point, windows)
        if quantiles is not None:
            quantiles = st.to_original(quantiles, windows)
        if not np.isfinite(point).all():
            raise DataValidationError("The model produced non-finite forecasts.")
        if quantiles is not None and st.calibration_windows:
            quantiles = self._recalibrate(scaled, windows, quantiles, batch_size)
        return self._rows(windows.series_ids, time_column(times, last.tz), point, quantiles)

    def _last_times(self, hist: pd.DataFrame) -> _SeriesEnds:
        """Last history timestamp of each series, in frame order.

        `featurize` leaves the rows sorted by (series, time), so each series' last row is the
        one before its id changes: no groupby needed.
        """
        ids = self._ids(hist)
        ends = np.flatnonzero(np.append(ids[1:] != ids[:-1], True))
        times = hist[self.state.schema.time_col]
        tz = getattr(times.dtype, "tz", None)  # validate leaves datetime64[ns] (in UTC)
        ns = (times.to_numpy() if tz is None else times.array.asi8).view(np.int64)[ends]
        return _SeriesEnds(np.asarray(ids[ends], dtype=object), ns, tz)

    def _recalibrate(
        self, scaled: pd.DataFrame, windows: Windows, quantiles: np.ndarray, batch_size: int
    ) -> np.ndarray:
        """Quantiles corrected with the last K forecasts whose outcomes the history holds."""
        st = self.state
        k, h = st.calibration_windows, st.window.horizon
        try:
            past = make_windows(scaled, st.schema, st.window, on_short="skip")
        except DataValidationError:  # no series has a complete earlier window since a gap
            past = None
        if past is None or len(past) == 0:
            raise self._no_earlier_forecasts(list(windows.series_ids), k, h) from None
        origin = windows.origin
        keys = np.asarray(windows.series_ids, dtype=object)
        past_keys = np.asarray(past.series_ids, dtype=object)[past.series]
        t = dict(zip(keys, origin, strict=True))
        first = np.array([t[key] for key in past_keys])  # past windows come from these series
        keep = correcting_windows(past.origin, first, horizon=h, windows=k)
        past = past.take(keep)
        counts = pd.Series(past_keys[keep]).value_counts()
        missing = [key for key in keys if counts.get(key, 0) == 0]
        if missing:  # history long enough, but cut by a gap just before the origin
            raise self._no_earlier_forecasts(missing, k, h)
        _, past_q = predict_windows(self.model, past, batch_size=batch_size)
        past_q = st.to_original(past_q, past)
        past_y = st.to_original(past.target, past)
        calibrated, _ = recalibrate(
            quantiles,
            st.quantiles,
            series=keys[windows.series],
            origin=origin,
            past_series=np.asarray(past.series_ids, dtype=object)[past.series],
            past_origin=past.origin,
            past_quantiles=past_q,
            past_y=past_y,
            horizon=h,
            windows=k,
        )
        return calibrated

    @staticmethod
    def _no_earlier_forecasts(series: list[Any], k: int, h: int) -> DataValidationError:
        return DataValidationError(
            f"Series {[_plain(s) for s in series[:5]]} have no earlier forecast with a known "
            f"outcome since their last gap: this model recalibrates its quantiles with the "
            f"last {k} (calibration.windows), so it needs at least {h} rows after the gap "
            f"beyond its window ({k + h - 1} to use all {k})."
        )

    def _ids(self, frame: pd.DataFrame) -> np.ndarray:
        id_col = self.state.raw_schema.id_col
        if id_col is None:
            return np.full(len(frame), SINGLE_SERIES_ID, dtype=object)
        return frame[id_col].to_numpy()

    def _codes(self, frame: pd.DataFrame) -> np.ndarray:
        """(R,) series codes in order of appearance; -1 where the id is missing."""
        if self.state.raw_schema.id_col is None:
            return np.zeros(len(frame), np.int64)
        return series_codes(self._ids(frame), sort=False)[0]

    def _split_rows(self, frame: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """History rows, and trailing rows without targets that carry future covariates."""
        raw = self.state.raw_schema
        if not isinstance(frame, pd.DataFrame):
            raise DataValidationError(
                f"Expected a pandas DataFrame of history rows. Received: {type(frame).__name__}"
            )
        if frame.empty:
            raise DataValidationError(
                "The request holds no rows; send the recent history of each series "
                f"(columns {self.required_columns})."
            )
        missing = [c for c in self.required_columns if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"The following columns are missing: {missing}. Expected columns: "
                f"{self.required_columns}"
            )
        if not frame.index.equals(pd.RangeIndex(len(frame))):
            frame = frame.reset_index(drop=True)  # validate names rows by their position
        if not raw.future_covariates:
            self._check_no_future_rows(frame)
            return frame, None
        has_target = ~np.isnan(_numeric(frame, list(raw.targets))).any(axis=1)
        codes = self._codes(frame)
        # A row is a future row when no later row of its series (in time order) has a target.
        t = _time_order(frame[raw.time_col])
        t = np.where(t == _NAT, np.iinfo(np.int64).max, t)  # NaT last, as numpy
        order = np.lexsort((t, codes))
        seen = (
            pd.Series(has_target[order][::-1]).groupby(codes[order][::-1]).cummax().to_numpy()[::-1]
        )
        is_future = np.empty(len(frame), bool)
        is_future[order] = ~seen
        future = frame[is_future]
        return frame[~is_future], (future if len(future) else None)

    def _check_no_future_rows(self, frame: pd.DataFrame) -> None:
        """A model without known-future covariates takes history rows only: say so plainly."""
        raw = self.state.raw_schema
        times = _time_order(frame[raw.time_col])
        codes = self._codes(frame)  # series in order of appearance
        # Rows without a timestamp or a series id are `validate`'s to report.
        ok = np.flatnonzero((times != _NAT) & (codes >= 0))
        codes, times = codes[ok], times[ok]
        # Each series' latest row (the first of equal latest times), in series order: its
        # latest time, then the first row holding it (no sort: 2.5x less than a lexsort).
        latest = np.full(codes.max(initial=-1) + 1, _NAT)
        np.maximum.at(latest, codes, times)
        at_latest = np.flatnonzero(times == latest[codes])
        _, first_row = np.unique(codes[at_latest], return_index=True)
        last = ok[at_latest[first_row]]
        targets = _numeric(frame, list(raw.targets))[last]
        empty = np.isnan(targets).any(axis=1)
        if empty.any():
            sid = _plain(self._ids(frame)[last[int(np.flatnonzero(empty)[0])]])
            raise DataValidationError(
                f"Series {sid!r} ends with a row without target {list(raw.targets)}: this model "
                "reads no known-future covariates, so send history rows only, each with its "
                "target."
            )

    def _check_lengths(self, history: pd.DataFrame) -> None:
        need = self.state.min_rows
        codes, labels = series_codes(self._ids(history), sort=False)
        counts = np.bincount(codes, minlength=len(labels))
        if counts.min(initial=need) >= need:
            return
        counts = pd.Series(counts, index=pd.Index(labels, dtype=object))
        short = counts[counts < need].sort_values(ascending=False, kind="stable")
        if len(short):
            listed = ", ".join(f"{k!r} has {v}" for k, v in short.head(5).items())
            kind = "dynamic (min_lookback)" if self.state.window.dynamic else "static"
            raise DataValidationError(
                f"History too short: {listed} rows. This {kind} model needs at least "
                f"{need} rows per series ({self.state.window.min_history} for the window, "
                f"{self.state.features.warmup} for feature warm-up"
                + (
                    f", {self.state.calibration_rows} for the "
                    f"{self.state.calibration_windows} earlier forecasts that recalibrate "
                    "its quantiles (calibration.windows)"
                    if self.state.calibration_windows
                    else ""
                )
                + ")."
            )

    def _future_times(self, last: _SeriesEnds) -> np.ndarray:
        """(S * H,) UTC ns of the horizon, series after series in the order of `last`.

        The next sessions/slots of the series' calendar, so that the horizon's calendar
        features and the returned timestamps are the data's real future ones. Series that end
        at the same time share one timeline, and timelines are cached across requests: a
        calendar's next sessions cost 0.2-1 ms each (a `pd.date_range` of business days is a
        Python loop), most of a 100-series request when computed per series.
        """
        freq = self.state.freq or self.state.raw_schema.freq
        if freq is None:
            raise DataValidationError("The model has no frequency to extend the timeline.")
        h, cal, tz = self.state.window.horizon, self.state.calendar, last.tz
        ends, inverse = np.unique(last.ns, return_inverse=True)
        lines = np.stack([_horizon_ns(cal, int(t), tz, h, freq) for t in ends])  # (U, H)
        return lines[inverse.reshape(-1)].reshape(-1)

    def _future_frame(
        self,
        last: _SeriesEnds,
        ns: np.ndarray,
        future_raw: pd.DataFrame | None,
    ) -> pd.DataFrame:
        """Scaled future covariates over the horizon: user-given values + calendar columns.

        `ns` is `_future_times(last)`: (S * H,), series after series.
        """
        st = self.state
        raw, schema = st.raw_schema, st.schema
        times = _to_index(ns, last.tz)
        ids = np.repeat(last.ids, st.window.horizon)
        fut = pd.DataFrame({schema.time_col: times})
        if raw.id_col is not None:
            fut[raw.id_col] = ids
        if raw.future_covariates:
            given = self._user_future(future_raw, ids, times, last)
            for j, col in enumerate(raw.future_covariates):
                fut[col] = given[:, j]
        cal = future_features(times, st.features)
        for col in cal.columns:
            fut[col] = cal[col].to_numpy()
        for col in schema.value_columns:
            if col not in fut.columns:
                fut[col] = 0.0  # placeholders so the scaler sees its columns; not model inputs
        scaled = st.scaler.transform(fut)
        keep = [schema.time_col, *([raw.id_col] if raw.id_col else []), *schema.future_covariates]
        return scaled[keep]

    def _user_future(
        self,
        future_raw: pd.DataFrame | None,
        ids: np.ndarray,
        times: pd.DatetimeIndex,
        last: _SeriesEnds,
    ) -> np.ndarray:
        """(len(ids), C) known-future covariates the user sent for each (series, time) needed."""
        raw = self.state.raw_schema
        cols = list(raw.future_covariates)
        h = self.state.window.horizon
        if future_raw is None:
            raise DataValidationError(
                f"This model needs known-future covariates {cols} for the next {h} steps: "
                f"add {h} rows per series after its history, with the target left empty."
            )
        given_times = _times(future_raw[raw.time_col])
        given_ids = self._ids(future_raw).astype(object)
        values = _numeric(future_raw, cols)
        bad = ~np.isfinite(values)
        if bad.any():
            row, j = np.argwhere(bad)[0]
            value = future_raw[cols[j]].iloc[row]
            shown = "no value" if pd.isna(value) else repr(_plain(value))
            raise DataValidationError(
                f"Future covariate '{cols[j]}' must be a finite number in every future row "
                f"(the rows after the last target); series {_plain(given_ids[row])!r} at "
                f"{given_times[row]} has {shown}."
            )
        keys = pd.MultiIndex.from_arrays([given_ids, given_times])
        repeated = np.flatnonzero(keys.duplicated())
        if len(repeated):
            row = repeated[0]
            raise DataValidationError(
                f"Future rows repeat series {_plain(given_ids[row])!r} at {given_times[row]}"
                f"; send one row per (series, timestamp)."
            )
        pos = keys.get_indexer(pd.MultiIndex.from_arrays([ids, times]))
        if (pos < 0).any():
            i = int(np.flatnonzero(pos < 0)[0])
            raise DataValidationError(
                f"Future covariates {cols} are missing for series {_plain(ids[i])!r} at "
                f"{times[i]}: send one row per step for the {h} steps after the last history "
                f"timestamp ({last.at(ids[i])})."
            )
        return values[pos]

    def _rows(
        self,
        series_ids: tuple[Any, ...],
        times: Any,
        point: np.ndarray,
        quantiles: np.ndarray | None,
    ) -> pd.DataFrame:
        """Forecast rows; `times` (n * h,) is `_future_times` as a time column, in the
        windows' series order (both follow the validated frame's series blocks)."""
        st = self.state
        n, h, t = point.shape
        columns = {
            SERIES_COL: np.repeat(np.asarray([str(s) for s in series_ids], object), h * t),
            TIME_COL: times.repeat(t) if t > 1 else times,
            STEP_COL: np.tile(np.repeat(np.arange(1, h + 1, dtype=np.int64), t), n),
            TARGET_COL: np.tile(np.asarray(st.schema.targets, object), n * h),
            FORECAST_COL: point.reshape(-1).astype(np.float64),
        }
        if quantiles is not None:
            flat = quantiles.reshape(n * h * t, -1).astype(np.float64)
            for j, q in enumerate(st.quantiles):
                columns[quantile_column(q)] = flat[:, j]
        # One block per dtype, built once: column by column insertion costs ~0.1 ms each, and
        # naming the columns again (they are in `output_columns` order) 0.2 ms more.
        return pd.DataFrame(columns, copy=False)

    # ------------------------------------------------------------------ description
    @property
    def required_columns(self) -> list[str]:
        raw = self.state.raw_schema
        cols = [raw.time_col, *([raw.id_col] if raw.id_col else []), *raw.value_columns]
        cols += [c for c in self._feature_inputs() if c not in cols]
        return cols

    def _feature_inputs(self) -> list[str]:
        f = self.state.features
        return [*f.log_returns, *f.simple_returns, *f.ohlc, *f.lag_columns]
