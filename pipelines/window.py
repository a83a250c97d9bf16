"""Cut long-format series into (history, horizon) windows without crossing series or gaps.

A `Windows` object keeps one contiguous float32 base array and, per window, the row of
its last history step; `past`, `target` and `future` are numpy views of that base where the
windows are evenly spaced (static windows of one run) and gathered copies otherwise.
`pipelines.dataset.to_dataset` gathers whole batches from the same base, so large data is
never materialized window by window.

Row layout of the base (``values``): columns are `SeriesSchema.input_columns` (targets,
past covariates, future covariates), rows are the frame's rows in (series, time) order.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from pipelines._frames import (
    aligned_empty,
    blocks_view,
    check_finite,
    future_block,
    index_dtype,
    require_columns,
    row_describer,
    runs_of,
    segment_array,
    series_blocks,
    short_series_message,
    window_origins,
)
from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SeriesSchema

__all__ = ["WindowSpec", "Windows", "inference_windows", "make_windows", "windows_from_array"]

logger = logging.getLogger(__name__)

_PADDINGS = ("right", "left")
_SHOW = 5  # series quoted in one error message


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")


@dataclass(frozen=True)
class WindowSpec:
    """How windows are cut.

    Args:
        lookback: history steps per window (the maximum for dynamic windows).
        horizon: steps forecast after the last history step.
        stride: steps between consecutive window origins within a gap-free run.
        min_lookback: None for static windows of exactly `lookback` steps; an integer for
            dynamic windows whose history runs from `min_lookback` to `lookback` steps, so
            the start of each series and series shorter than `lookback` are kept.
        padding: where dynamic windows are padded: ``"right"`` (valid steps first, the
            layout cuDNN needs) or ``"left"``.
    """

    lookback: int
    horizon: int
    stride: int = 1
    min_lookback: int | None = None
    padding: str = "right"

    def __post_init__(self) -> None:
        for name in ("lookback", "horizon", "stride"):
            _positive_int(name, getattr(self, name))
        if self.min_lookback is not None:
            _positive_int("min_lookback", self.min_lookback)
            if self.min_lookback > self.lookback:
                raise ConfigError(
                    f"`min_lookback` must be between 1 and lookback={self.lookback}. "
                    f"Received: min_lookback={self.min_lookback}"
                )
        if self.padding not in _PADDINGS:
            raise ConfigError(
                f"`padding` must be one of {list(_PADDINGS)}. Received: padding={self.padding!r}"
            )

    @property
    def dynamic(self) -> bool:
        """True when histories may be shorter than `lookback` (padded and masked)."""
        return self.min_lookback is not None

    @property
    def min_history(self) -> int:
        """Fewest history steps a window may have."""
        return self.lookback if self.min_lookback is None else self.min_lookback

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WindowSpec:
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ConfigError(f"Unknown window spec keys {unknown}; allowed: {allowed}")
        return cls(**d)


@dataclass(frozen=True, eq=False)
class Windows:
    """Windows over one base array; see docs/contracts.md for the public fields.

    Attributes:
        values: (R, F_in) float32 base, C-contiguous; columns are targets, past covariates,
            future covariates. Treat it as read-only: every window reads from it.
        last: (N,) row in `values` of each window's last history step.
        first: (N,) row of each window's first real history step; None for static windows.
        spec: the `WindowSpec` the windows were cut with.
        n_targets: T, the leading columns of `values` that are targets.
        n_future: F_fut, the trailing columns of `values` known over the horizon.
        series_ids: name of each series; `series` indexes into it.
        series_rows: (S,) first row in `values` of each series.
        series_offset: (S,) position within its series of that first row (nonzero when the
            base holds only the tail of a series, as for inference).
        has_target: False for inference windows, whose horizon rows hold no targets.
        times: (R,) int64 ns timestamp of each base row (UTC when tz-aware), for what is
            a function of time (`pipelines.deseason`); None when the rows came without
            one, and the int64 minimum (NaT) on horizon rows given no times.
    """

    values: np.ndarray
    last: np.ndarray
    first: np.ndarray | None
    spec: WindowSpec
    n_targets: int
    n_future: int
    series_ids: tuple[str, ...]
    series_rows: np.ndarray
    series_offset: np.ndarray
    has_target: bool = True
    times: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.last)

    @property
    def n_features(self) -> int:
        """F_in, the width of `past`."""
        return self.values.shape[1]

    @cached_property
    def series(self) -> np.ndarray:
        """(N,) index into `series_ids` of each window."""
        return np.searchsorted(self.series_rows, self.last, side="right") - 1

    @cached_property
    def origin(self) -> np.ndarray:
        """(N,) position, within its series, of each window's last history step."""
        s = self.series
        return self.last - self.series_rows[s] + self.series_offset[s]

    @cached_property
    def lengths(self) -> np.ndarray:
        """(N,) real history steps of each window."""
        if self.first is None:
            return np.full(len(self), self.spec.lookback, dtype=self.last.dtype)
        return self.last - self.first + 1

    @cached_property
    def past(self) -> np.ndarray:
        """(N, L, F_in) history; padded steps are 0. A read-only view where possible."""
        lookback = self.spec.lookback
        if self.first is None:
            return blocks_view(self.values, lookback, self.last - (lookback - 1))
        steps = np.arange(lookback)
        if self.spec.padding == "right":
            rows = self.first[:, None] + steps  # (N, L)
            mask = steps < self.lengths[:, None]
        else:
            rows = self.last[:, None] - (lookback - 1) + steps
            mask = rows >= self.first[:, None]
        out = self.values[np.where(mask, rows, self.last[:, None])]  # (N, L, F_in)
        out[~mask] = 0.0
        return out

    @cached_property
    def mask(self) -> np.ndarray | None:
        """(N, L) bool, True on real steps; None for static windows."""
        if self.first is None:
            return None
        steps = np.arange(self.spec.lookback)
        if self.spec.padding == "right":
            return steps < self.lengths[:, None]
        return steps >= (self.spec.lookback - self.lengths)[:, None]

    @cached_property
    def target(self) -> np.ndarray | None:
        """(N, H, T) targets over the horizon; None for inference windows."""
        if not self.has_target:
            return None
        return blocks_view(self.values[:, : self.n_targets], self.spec.horizon, self.last + 1)

    @cached_property
    def future(self) -> np.ndarray:
        """(N, H, F_fut) known-future covariates over the horizon (F_fut may be 0)."""
        if self.n_future == 0:
            return np.zeros((len(self), self.spec.horizon, 0), dtype=np.float32)
        cols = self.values[:, self.n_features - self.n_future :]
        return blocks_view(cols, self.spec.horizon, self.last + 1)

    def inputs(self) -> dict[str, np.ndarray]:
        """Model inputs: ``past``, plus ``future`` when F_fut > 0 and ``mask`` when dynamic."""
        out = {"past": self.past}
        if self.n_future:
            out["future"] = self.future
        if self.mask is not None:
            out["mask"] = self.mask
        return out

    def take(self, index: np.ndarray | slice) -> Windows:
        """The windows at `index` (positions or a boolean mask), sharing the same base."""
        return Windows(
            values=self.values,
            last=self.last[index],
            first=None if self.first is None else self.first[index],
            spec=self.spec,
            n_targets=self.n_targets,
            n_future=self.n_future,
            series_ids=self.series_ids,
            series_rows=self.series_rows,
            series_offset=self.series_offset,
            has_target=self.has_target,
            times=self.times,
        )

    @property
    def horizon_times(self) -> np.ndarray:
        """(N, H) int64 ns timestamps of each window's horizon rows."""
        if self.times is None:
            raise ConfigError("These windows were built without timestamps (`times`).")
        return self.times[self.last[:, None] + 1 + np.arange(self.spec.horizon)]


def make_windows(
    frame: pd.DataFrame,
    schema: SeriesSchema,
    spec: WindowSpec,
    *,
    segment: str | np.ndarray | None = None,
    target_rows: np.ndarray | None = None,
    on_short: str = "error",
) -> Windows:
    """Windows over a validated long frame (sorted by id then time, regular grid).

    Args:
        frame: long frame with the columns of `schema`.
        schema: column roles; `past` columns are `schema.input_columns`.
        spec: window lengths.
        segment: gap marker, so that no window crosses a gap: a column name or an (R,)
            array, either boolean (True on the first row after a gap) or run labels (a new
            run starts wherever the label changes). None uses the ``"_segment"`` column
            that `pipelines.validate` adds under ``gaps="segment"``, when present.
        target_rows: (R,) bool, rows that may be forecast targets: a window is kept only when
            all its horizon rows are True, while its history may read any earlier row of the
            run (see `pipelines.split.FrameSplit.with_history`).
        on_short: ``"error"`` or ``"skip"`` (with a warning) for series that yield no window.

    Returns:
        `Windows` whose base holds the frame's `schema.input_columns` as float32.

    Raises:
        ConfigError: a column named in `schema` or `segment` is missing, or bad arguments.
        DataValidationError: unsorted series, NaN/inf values, or series too short.

    Example:
        >>> spec = WindowSpec(lookback=48, horizon=12)
        >>> w = make_windows(frame, schema, spec)
        >>> w.past.shape, w.target.shape   # (N, 48, F_in), (N, 12, T)
    """
    _check_call(spec, on_short)
    require_columns(frame, (*schema.input_columns, *_opt(schema.id_col)))
    segment = segment_array(frame, segment)
    ids, starts = series_blocks(frame, schema)
    columns = list(schema.input_columns)
    values = aligned_empty((len(frame), len(columns)), np.float32)  # TF can share it
    for j, col in enumerate(columns):
        values[:, j] = frame[col].to_numpy(dtype=np.float32)
    check_finite(values, columns, row_describer(ids, starts))
    times = _row_times(frame, schema)
    windows = _build(
        values,
        spec,
        n_targets=len(schema.targets),
        n_future=len(schema.future_covariates),
        series_ids=ids,
        series_rows=starts,
        segment=segment,
        target_rows=target_rows,
        on_short=on_short,
    )
    return windows if times is None else replace(windows, times=times)


def windows_from_array(
    values: np.ndarray,
    spec: WindowSpec,
    *,
    n_targets: int = 1,
    n_future: int = 0,
    series_rows: np.ndarray | None = None,
    series_ids: tuple[Any, ...] | None = None,
    segment: np.ndarray | None = None,
    target_rows: np.ndarray | None = None,
    on_short: str = "error",
) -> Windows:
    """Windows over a plain (R, F) or (R,) array: targets, past then future covariates.

    A float32 C-contiguous array becomes the base without a copy.

    Args:
        values: rows in time order, series after series.
        spec: window lengths.
        n_targets: leading columns that are targets.
        n_future: trailing columns known over the horizon.
        series_rows: first row of each series (starting at 0, increasing); None for one.
        series_ids: a label per series; defaults to ``"series_<k>"``.
        segment, target_rows, on_short: as in `make_windows`.
    """
    _check_call(spec, on_short)
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or len(values) == 0:
        raise ConfigError(
            f"`values` must be a non-empty 1-D or 2-D (rows, features) array. "
            f"Received shape {values.shape}"
        )
    width = values.shape[1]
    if not 1 <= n_targets <= width or not 0 <= n_future <= width - n_targets:
        raise ConfigError(
            f"`n_targets` and `n_future` must fit in the {width} columns with at least one "
            f"target. Received: n_targets={n_targets}, n_future={n_future}"
        )
    if values.dtype != np.float32 or not values.flags.c_contiguous:
        converted = aligned_empty(values.shape, np.float32)  # TF can share it
        converted[...] = values
        values = converted
    rows = np.zeros(1, np.int64) if series_rows is None else np.asarray(series_rows, np.int64)
    if rows.ndim != 1 or rows[0] != 0 or np.any(np.diff(rows) <= 0) or rows[-1] >= len(values):
        raise ConfigError(
            f"`series_rows` must start at 0 and increase strictly below {len(values)}. "
            f"Received: series_rows={rows.tolist()[:10]}"
        )
    ids = (
        tuple(series_ids)
        if series_ids is not None
        else tuple(f"series_{k}" for k in range(len(rows)))
    )
    if len(ids) != len(rows):
        raise ConfigError(f"`series_ids` has {len(ids)} labels for {len(rows)} series.")
    check_finite(values, [f"column {j}" for j in range(width)], row_describer(ids, rows))
    return _build(
        values,
        spec,
        n_targets=n_targets,
        n_future=n_future,
        series_ids=ids,
        series_rows=rows,
        segment=segment,
        target_rows=target_rows,
        on_short=on_short,
    )


def _row_times(frame: pd.DataFrame, schema: SeriesSchema) -> np.ndarray | None:
    """(R,) int64 ns of the time column, when the frame has one holding datetimes."""
    col = frame.get(schema.time_col)
    if col is None or not pd.api.types.is_datetime64_any_dtype(col):
        return None
    if col.dtype == "M8[ns]":  # as validate leaves it: read as is, no index built (~20 us)
        return col.to_numpy().view(np.int64)
    return pd.DatetimeIndex(col).as_unit("ns").asi8


def _opt(name: str | None) -> tuple[str, ...]:
    return () if name is None else (name,)


def _check_call(spec: Any, on_short: str = "error") -> None:
    """Argument checks shared by the window builders, before any work."""
    if not isinstance(spec, WindowSpec):
        raise ConfigError(f"`spec` must be a WindowSpec. Received: {type(spec).__name__}")
    if on_short not in ("error", "skip"):
        raise ConfigError(f"`on_short` must be 'error' or 'skip'. Received: on_short={on_short!r}")


def _build(
    values: np.ndarray,
    spec: WindowSpec,
    *,
    n_targets: int,
    n_future: int,
    series_ids: tuple[Any, ...],
    series_rows: np.ndarray,
    segment: np.ndarray | None,
    target_rows: np.ndarray | None,
    on_short: str,
) -> Windows:
    n_rows = len(values)
    for name, arr in (("segment", segment), ("target_rows", target_rows)):
        if arr is not None and len(arr) != n_rows:
            raise ConfigError(
                f"`{name}` must have one entry per row ({n_rows}). Received: {len(arr)}"
            )
    dtype = index_dtype(n_rows + spec.lookback + spec.horizon)
    run_start, run_stop = runs_of(n_rows, series_rows, segment)
    allowed = None if target_rows is None else np.asarray(target_rows, bool)
    last, per_run = window_origins(
        run_start, run_stop, spec.min_history, spec.horizon, spec.stride, allowed, dtype
    )
    first = None
    if spec.dynamic:  # histories start no earlier than their run
        first = aligned_empty(last.shape, dtype)
        np.subtract(last, spec.lookback - 1, out=first)
        np.maximum(first, np.repeat(run_start.astype(dtype), per_run), out=first)
    short = short_series_message(
        per_run, run_start, run_stop, series_rows, series_ids, spec, allowed
    )
    if short is not None:
        count, message = short
        if on_short == "error" or count == len(series_rows):
            raise DataValidationError(message)
        logger.warning("Skipping %s", message)
    return Windows(
        values=values,
        last=last,
        first=first,
        spec=spec,
        n_targets=n_targets,
        n_future=n_future,
        series_ids=tuple(series_ids),
        series_rows=np.asarray(series_rows, dtype),
        series_offset=np.zeros(len(series_rows), dtype),
    )


def inference_windows(
    frame: pd.DataFrame,
    schema: SeriesSchema,
    spec: WindowSpec,
    *,
    future: pd.DataFrame | None = None,
    segment: str | np.ndarray | None = None,
    horizon_times: np.ndarray | None = None,
) -> Windows:
    """The last history window of each series, to forecast the `horizon` steps after it.

    Args:
        frame: validated long history frame, ending at the forecast origin.
        schema: column roles.
        spec: the window spec the model was trained with.
        future: required when `schema.future_covariates` is not empty: exactly `horizon`
            rows per series, later than its history, with the id, time and future
            covariate columns.
        segment: as in `make_windows`; only the last gap-free run of a series is read.
        horizon_times: (S, H) int64 ns timestamps of each series' horizon, in series
            order, for `Windows.horizon_times`; None leaves them NaT.

    Returns:
        `Windows` with one window per series, in series order, and ``target`` None.

    Raises:
        ConfigError: missing columns, or `future` missing while the schema needs it.
        DataValidationError: a series has fewer rows than the spec needs, or `future` does
            not hold `horizon` later rows for each series.
    """
    _check_call(spec)
    require_columns(frame, (*schema.input_columns, *_opt(schema.id_col)))
    seg = segment_array(frame, segment)
    ids, starts = series_blocks(frame, schema)
    n_rows, horizon = len(frame), spec.horizon
    stops = np.append(starts[1:], n_rows)
    run_start, _ = runs_of(n_rows, starts, seg)
    tail = stops - run_start[np.searchsorted(run_start, stops - 1, side="right") - 1]
    short = np.flatnonzero(tail < spec.min_history)
    if len(short):
        listed = "; ".join(f"{ids[s]!r} has {tail[s]}" for s in short[:_SHOW])
        raise DataValidationError(
            f"{len(short)} series too short to forecast: {listed}"
            f"{' ...' if len(short) > _SHOW else ''} rows since its last gap. The window spec "
            f"needs at least {spec.min_history} (lookback={spec.lookback}, "
            f"min_lookback={spec.min_lookback})."
        )
    k = np.minimum(tail, spec.lookback)  # history rows read per series
    block = np.cumsum(k + horizon) - (k + horizon)  # first base row of each series
    within = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)
    src = np.repeat(stops - k, k) + within  # frame rows read
    dst = np.repeat(block, k) + within  # their base rows
    columns = list(schema.input_columns)
    values = aligned_empty((int(np.sum(k + horizon)), len(columns)), np.float32)
    values[...] = 0.0  # horizon rows hold no targets; only future covariates are filled
    for j, col in enumerate(columns):
        values[dst, j] = frame[col].to_numpy(dtype=np.float32)[src]
    check_finite(values[dst], columns, row_describer(ids, starts, src))
    if schema.future_covariates:
        fut = future_block(
            future, schema, ids, frame[schema.time_col].to_numpy()[stops - 1], horizon
        )
        values[(block + k)[:, None] + np.arange(horizon), len(columns) - fut.shape[-1] :] = fut
    dtype = index_dtype(len(values) + spec.lookback + horizon)
    times = np.full(len(values), np.iinfo(np.int64).min, np.int64)  # NaT
    given = _row_times(frame, schema)
    if given is not None:
        times[dst] = given[src]
    if horizon_times is not None:
        times[(block + k)[:, None] + np.arange(horizon)] = horizon_times
    return Windows(
        values=values,
        last=(block + k - 1).astype(dtype),
        first=block.astype(dtype) if spec.dynamic else None,
        spec=spec,
        n_targets=len(schema.targets),
        n_future=len(schema.future_covariates),
        series_ids=ids,
        series_rows=block.astype(dtype),
        series_offset=(stops - starts - k).astype(dtype),
        has_target=False,
        times=times,
    )
