"""Row bookkeeping shared by split, scale and window: series blocks, gap-free runs, checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SINGLE_SERIES_ID, SeriesSchema

# Mirrors `pipelines.validate.SEGMENT_COL` (tests check they agree): the int column that
# numbers the gap-free runs of each series when validation marks gaps instead of filling.
SEGMENT_COL = "_segment"
_SHOW = 5


def aligned_empty(shape: tuple[int, ...], dtype: Any, align: int = 64) -> np.ndarray:
    """An uninitialized C-contiguous array whose data starts on an `align`-byte boundary.

    TensorFlow can then share the buffer through DLPack instead of copying it.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buf = np.empty(nbytes + align, dtype=np.uint8)
    offset = (-buf.ctypes.data) % align
    return buf[offset : offset + nbytes].view(dtype).reshape(shape)


def index_dtype(n: int) -> type[np.integer]:
    """int32 when every row index fits (halves index memory), else int64."""
    return np.int32 if n < 2**31 - 1 else np.int64


def series_blocks(frame: pd.DataFrame, schema: SeriesSchema) -> tuple[tuple[Any, ...], np.ndarray]:
    """Series labels and the first row of each, checking the frame is sorted by (id, time).

    Raises:
        DataValidationError: the frame is empty, a series appears in separate blocks, or
            time does not increase within a series.
    """
    if len(frame) == 0:
        raise DataValidationError("The frame is empty (0 rows); expected at least one row.")
    if schema.id_col is None:
        labels: tuple[Any, ...] = (SINGLE_SERIES_ID,)
        starts = np.zeros(1, np.int64)
    else:
        ids = frame[schema.id_col].to_numpy()
        starts = np.flatnonzero(np.append(True, ids[1:] != ids[:-1])).astype(np.int64)
        heads = ids[starts]  # numpy's tolist gives what a Series's does, less its ~20 us,
        # save for times (Timestamps, not integers)
        labels = tuple(heads.tolist() if heads.dtype.kind not in "mM" else pd.Series(heads))
        if len(set(labels)) != len(labels):
            seen: dict[Any, int] = {}
            for row, label in zip(starts.tolist(), labels, strict=True):
                if label in seen:
                    raise DataValidationError(
                        f"Rows must be sorted by ({schema.id_col!r}, {schema.time_col!r}): "
                        f"series {label!r} appears in separate blocks starting at rows "
                        f"{seen[label]} and {row}. Sort the frame (pipelines.validate does)."
                    )
                seen[label] = row
    if schema.time_col in frame:
        times = frame[schema.time_col].to_numpy()
        bad = np.flatnonzero(times[1:] <= times[:-1]) + 1
        if len(bad):  # a series' first row may come before the last of the one above
            first = np.zeros(len(times), bool)
            first[starts] = True
            bad = bad[~first[bad]]
        if len(bad):
            s = np.searchsorted(starts, bad[0], side="right") - 1
            raise DataValidationError(
                f"Column {schema.time_col!r}: time must increase within each series; series "
                f"{labels[s]!r} has {times[bad[0]]} at row {bad[0]} after {times[bad[0] - 1]}."
            )
    return labels, starts


def runs_of(
    n_rows: int, series_rows: np.ndarray, segment: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """[start, stop) rows of each gap-free run: a new run at each series start and gap.

    Args:
        n_rows: rows in all.
        series_rows: first row of each series.
        segment: None, a boolean array (True on the first row after a gap) or run labels
            (a new run wherever the label changes).
    """
    breaks = np.zeros(n_rows, bool)
    breaks[np.asarray(series_rows, np.int64)] = True
    if segment is not None:
        seg = np.asarray(segment)
        if seg.dtype == bool:
            breaks |= seg
        else:
            breaks[1:] |= seg[1:] != seg[:-1]
    if n_rows:
        breaks[0] = True
    start = np.flatnonzero(breaks)
    stop = np.append(start[1:], n_rows)
    return start, stop


def check_finite(
    values: np.ndarray, names: Sequence[str], where: Callable[[int], str] | None = None
) -> None:
    """Raise naming the column and first rows of any NaN/inf in `values` (R, F).

    Args:
        values: array to check, one column per name.
        names: column names, for the message.
        where: describes a row position (its frame row and series), for the message.
    """
    for j, name in enumerate(names):
        finite = np.isfinite(values[:, j])
        if finite.all():
            continue
        bad = np.flatnonzero(~finite)
        at = where(int(bad[0])) if where else f"row {bad[0]}"
        raise DataValidationError(
            f"Column {name!r}: {len(bad)} NaN/inf values, the first at {at}; windows need "
            f"finite values. Fill them first (pipelines.validate non_finite='ffill' or "
            f"'interpolate')."
        )


def row_describer(
    labels: Sequence[Any], starts: np.ndarray, rows: np.ndarray | None = None
) -> Callable[[int], str]:
    """A function naming the frame row and series of a position (through `rows` if given)."""

    def where(pos: int) -> str:
        row = int(rows[pos]) if rows is not None else pos
        return f"row {row} (series {labels[np.searchsorted(starts, row, side='right') - 1]!r})"

    return where


def time_column(ns: np.ndarray, tz: Any) -> Any:
    """A frame's time column from int64 UTC ns: a datetime64[ns] array when naive (building
    a DatetimeIndex costs ~20 us), else the timestamps in zone `tz`."""
    ns = np.asarray(ns, dtype=np.int64)
    if tz is None:
        return ns.view("M8[ns]")
    return pd.DatetimeIndex(ns.view("M8[ns]")).tz_localize("UTC").tz_convert(tz)


def series_codes(ids: np.ndarray, *, sort: bool) -> tuple[np.ndarray, np.ndarray]:
    """`pd.factorize(ids, sort=sort)`: int64 codes (-1 where an id is missing) and labels.

    Missing ids (None, NaN, pd.NA) are found by the codes: `pd.isna` of 6,400 text ids
    alone costs more (0.6 ms) than this whole function.

    Rows of a series usually come in one block (a request, a validated frame), so only the
    first id of each block is factorized: ~2x faster than all rows on 100 series of 64 text
    ids. Ids that differ with `!=` start a new block, so the codes are the same.

    Raises:
        TypeError: `sort` and ids of types that cannot be ordered (as `pd.factorize`).
    """
    ids = np.asarray(ids)
    if len(ids) < 1024:  # below that, finding the blocks costs more than it saves
        codes, labels = pd.factorize(ids, sort=sort)
        return codes.astype(np.int64), np.asarray(labels)
    try:
        starts = np.flatnonzero(np.append(True, ids[1:] != ids[:-1]))
    except TypeError:  # pd.NA compares as neither equal nor not: factorize every row
        starts = np.arange(len(ids))
    codes, labels = pd.factorize(ids[starts], sort=sort)
    lengths = np.diff(np.append(starts, len(ids)))
    return np.repeat(codes.astype(np.int64), lengths), np.asarray(labels)


def fitted_series_codes(known: Sequence[Any], labels: Sequence[Any], fitted: str) -> np.ndarray:
    """Positions in `known` (the series a per-series state was fitted on) of `labels`;
    raises naming the unseen ones and what was fitted (`fitted`, e.g. "the target
    transform")."""
    codes = pd.Index(known).get_indexer(labels)
    if (codes < 0).any():
        unseen = pd.unique(np.asarray(labels, dtype=object)[codes < 0])[:5].tolist()
        raise DataValidationError(f"Series {unseen} were not seen when {fitted} was fitted.")
    return codes.astype(np.int64)


def require_columns(frame: pd.DataFrame, columns: Sequence[str], what: str = "frame") -> None:
    """Raise ConfigError listing the `columns` missing from `frame`."""
    missing = [c for c in columns if c not in frame]
    if missing:
        raise ConfigError(
            f"The following columns are missing from `{what}`: {missing}. "
            f"Found columns: {list(frame.columns)}"
        )


def segment_array(frame: pd.DataFrame, segment: str | np.ndarray | None) -> np.ndarray | None:
    """The gap marker as an array: a named column, the given array, or `SEGMENT_COL` if present."""
    if segment is None and SEGMENT_COL in frame:
        segment = SEGMENT_COL
    if isinstance(segment, str):
        require_columns(frame, [segment], "frame (segment)")
        return frame[segment].to_numpy()
    if segment is not None and len(segment) != len(frame):
        raise ConfigError(
            f"`segment` must have one entry per row ({len(frame)}). Received: {len(segment)}"
        )
    return segment


def window_origins(
    run_start: np.ndarray,
    run_stop: np.ndarray,
    min_history: int,
    horizon: int,
    stride: int,
    allowed: np.ndarray | None,
    dtype: type[np.integer],
) -> tuple[np.ndarray, np.ndarray]:
    """Last history row of every window, and the number of windows per run.

    A window ending at row r needs `min_history` rows of its run up to r and `horizon`
    rows after r in the same run; with `allowed`, all horizon rows must be allowed. Origins
    of a run are `stride` apart, starting from its first possible one.
    """
    counts = np.maximum(run_stop - run_start - (min_history + horizon) + 1, 0)
    first_origin = run_start + min_history - 1
    if allowed is None:
        per_run = -(-counts // stride)
        return _arithmetic_runs(first_origin, per_run, stride, dtype), per_run
    run_of = np.repeat(np.arange(len(counts)), counts)
    last = _arithmetic_runs(first_origin, counts, 1, np.int64)
    cum = np.concatenate([[0], np.cumsum(allowed, dtype=np.int64)])
    keep = cum[last + 1 + horizon] - cum[last + 1] == horizon
    last, run_of = last[keep], run_of[keep]
    # The stride grid restarts at each run's first allowed origin.
    per_run = np.bincount(run_of, minlength=len(counts))
    rank = np.arange(len(last)) - np.repeat(np.cumsum(per_run) - per_run, per_run)
    keep = rank % stride == 0
    return last[keep].astype(dtype), np.bincount(run_of[keep], minlength=len(counts))


def _arithmetic_runs(
    first: np.ndarray, count: np.ndarray, step: int, dtype: type[np.integer]
) -> np.ndarray:
    """Concatenated ``first[k] + step * arange(count[k])`` built in one array (no temporaries)."""
    nz = count > 0
    first, count = first[nz], count[nz]
    out = aligned_empty((int(count.sum()),), dtype)  # shared with TensorFlow without a copy
    out[...] = step
    if len(out) == 0:
        return out
    pos = np.cumsum(count) - count
    run_last = first + step * (count - 1)
    out[pos[0]] = first[0]
    out[pos[1:]] = first[1:] - run_last[:-1]
    np.cumsum(out, out=out)
    return out


def future_block(
    future: pd.DataFrame | None,
    schema: SeriesSchema,
    ids: Sequence[Any],
    last_time: np.ndarray,
    horizon: int,
) -> np.ndarray:
    """(S, H, F_fut) future covariates per series in `ids` order, checked against the history.

    Args:
        future: rows after the forecast origin: id, time and future covariate columns.
        schema: column roles.
        ids: series labels, in the order of the output.
        last_time: (S,) last history timestamp of each series.
        horizon: rows each series must have in `future`.
    """
    cols = list(schema.future_covariates)
    if future is None:
        raise ConfigError(
            f"The schema has future covariates {cols}: pass `future`, a frame with the next "
            f"{horizon} rows of each series holding them."
        )
    require_columns(
        future, [*cols, schema.time_col, *([schema.id_col] if schema.id_col else [])], "future"
    )
    if schema.id_col is None:
        codes = np.zeros(len(future), np.int64)
    else:
        codes = pd.Index(list(ids)).get_indexer(future[schema.id_col]).astype(np.int64)
        if (codes < 0).any():
            unknown = pd.unique(future[schema.id_col].to_numpy()[codes < 0])[:_SHOW].tolist()
            raise DataValidationError(f"`future` holds series absent from the history: {unknown}")
    counts = np.bincount(codes, minlength=len(ids))
    wrong = np.flatnonzero(counts != horizon)
    if len(wrong):
        listed = ", ".join(f"{ids[s]!r}: {counts[s]}" for s in wrong[:_SHOW])
        raise DataValidationError(
            f"`future` must hold exactly horizon={horizon} rows per series; got {listed}."
        )
    times = future[schema.time_col].to_numpy()
    order = np.lexsort((times, codes))  # series in `ids` order, time ascending
    first_time = times[order][::horizon]
    early = np.flatnonzero(first_time <= last_time)
    if len(early):
        s = early[0]
        raise DataValidationError(
            f"`future` rows must come after the history: series {ids[s]!r} has a future row "
            f"at {first_time[s]} but history up to {last_time[s]}."
        )
    block = np.stack([future[c].to_numpy(dtype=np.float32)[order] for c in cols], axis=-1)
    check_finite(block, cols, lambda pos: f"`future` row {int(order[pos])}")
    return block.reshape(len(ids), horizon, len(cols))


def blocks_view(values: np.ndarray, length: int, starts: np.ndarray) -> np.ndarray:
    """(N, length, F) blocks of `values` starting at `starts`; zero-copy if evenly spaced."""
    if len(values) < length:
        return np.zeros((0, length, values.shape[1]), dtype=values.dtype)
    view = sliding_window_view(values, length, axis=0).transpose(0, 2, 1)  # (R-len+1, len, F)
    if len(starts) == 0:
        return view[:0]
    step = int(starts[1] - starts[0]) if len(starts) > 1 else 1
    if step > 0 and np.array_equal(starts, starts[0] + step * np.arange(len(starts))):
        return view[int(starts[0]) :: step][: len(starts)]
    return view[starts]


def short_series_message(
    per_run: np.ndarray,
    run_start: np.ndarray,
    run_stop: np.ndarray,
    series_rows: np.ndarray,
    series_ids: Sequence[Any],
    spec: Any,
    allowed: np.ndarray | None,
) -> tuple[int, str] | None:
    """(count, message) naming the series that yield no window, or None when all do."""
    n_series = len(series_rows)
    run_series = np.searchsorted(series_rows, run_start, side="right") - 1
    got = np.bincount(run_series, weights=per_run, minlength=n_series)
    empty = np.flatnonzero(got == 0)
    if len(empty) == 0:
        return None
    size = run_stop - run_start
    total = np.bincount(run_series, weights=size, minlength=n_series).astype(np.int64)
    longest = np.zeros(n_series, np.int64)
    np.maximum.at(longest, run_series, size)
    stops = np.append(np.asarray(series_rows)[1:], run_stop[-1])
    parts = []
    for s in empty[:_SHOW]:
        text = f"{series_ids[s]!r} has {total[s]} rows"
        if longest[s] != total[s]:
            text += f" (longest gap-free run {longest[s]})"
        if allowed is not None:
            text += f", {int(allowed[series_rows[s] : stops[s]].sum())} of them target rows"
        parts.append(text)
    history = f"min_lookback={spec.min_lookback}" if spec.dynamic else f"lookback={spec.lookback}"
    message = (
        f"{len(empty)} of {n_series} series too short for the requested windows: "
        f"{'; '.join(parts)}{' ...' if len(empty) > _SHOW else ''}. "
        f"{'Dynamic' if spec.dynamic else 'Static'} windows with {history} and "
        f"horizon={spec.horizon} need at least {spec.min_history + spec.horizon} consecutive "
        f"rows{', with all horizon rows among the target rows' if allowed is not None else ''}."
    )
    if not spec.dynamic:
        message += " Set min_lookback for dynamic windows, or pass on_short='skip'."
    return len(empty), message
