"""Read and write frames as CSV or Parquet (writes are atomic), and reshape wide frames to long."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.errors import ConfigError, DataValidationError, DiskFullError, is_disk_full
from pipelines.schema import SeriesSchema

__all__ = [
    "FORMATS",
    "atomic_write",
    "file_format",
    "long_to_wide",
    "read_frame",
    "wide_to_long",
    "write_frame",
]

# File suffix -> format name; compressed CSV is read by pandas from the suffix.
FORMATS = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".csv.zip": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def read_frame(
    source: pd.DataFrame | str | os.PathLike[str],
    *,
    schema: SeriesSchema | None = None,
    format: str | None = None,
) -> pd.DataFrame:
    """Return a new DataFrame from a frame or a CSV/Parquet path, checking schema columns.

    Timestamps are left as read; `pipelines.validate.validate` parses and checks them.

    Args:
        source: a DataFrame (copied) or the path of a ``.csv``/``.parquet`` file.
        schema: when given, every column it names must be present.
        format: ``"csv"`` or ``"parquet"``; None picks it from the file suffix.

    Returns:
        A DataFrame the caller owns.

    Raises:
        ConfigError: an unsupported source type, unknown format or suffix, or a missing file.
        DataValidationError: an empty or unreadable file, or columns the schema needs are missing.

    Example:
        >>> frame = read_frame("prices.csv", schema=SeriesSchema(time_col="date", targets="close"))
    """
    if format is not None and format not in set(FORMATS.values()):
        raise ConfigError(
            f"`format` must be one of {sorted(set(FORMATS.values()))} or None. "
            f"Received: format={format!r}"
        )
    if schema is not None and not isinstance(schema, SeriesSchema):
        raise ConfigError(f"`schema` must be a SeriesSchema. Received: {type(schema).__name__}")
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
    elif isinstance(source, str | os.PathLike):
        frame = _read_file(Path(source), format)
    else:
        raise ConfigError(
            "`source` must be a pandas DataFrame or the path of a CSV or Parquet file. "
            f"Received: {type(source).__name__} {source!r:.80}"
        )
    if schema is not None:
        required = [schema.time_col, *([schema.id_col] if schema.id_col else [])]
        required += list(schema.value_columns)
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"The following columns are missing: {missing}. Found columns: "
                f"{list(frame.columns)}"
            )
    return frame


def file_format(path: str | os.PathLike[str], *, hint: str = "Rename the file.") -> str:
    """``"csv"`` or ``"parquet"`` from the file's suffix (`FORMATS`).

    Raises:
        ConfigError: the suffix is none of `FORMATS`; the message ends with `hint`.
    """
    path = Path(path)
    name = path.name.lower()
    suffix = next((s for s in sorted(FORMATS, key=len, reverse=True) if name.endswith(s)), None)
    if suffix is None:
        raise ConfigError(
            f"{str(path)!r}: unsupported file type {''.join(path.suffixes) or '(none)'!r}; "
            f"allowed suffixes: {list(FORMATS)}. {hint}"
        )
    return FORMATS[suffix]


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside `path`, then rename it onto `path`.

    A reader sees the old file or the whole new one, never a part; a failed write leaves
    nothing behind. The one place the package writes user-facing files.

    Raises:
        DiskFullError: the disk filled up ("no space left on device writing <path>").
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(path) from None
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def write_frame(
    frame: pd.DataFrame, path: str | os.PathLike[str], *, overwrite: bool = False
) -> Path:
    """Write `frame` as CSV or Parquet (by suffix), atomically; no index column.

    Raises:
        ConfigError: an unknown suffix, or `path` exists and `overwrite` is false.
    """
    path = Path(path)
    fmt = file_format(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{str(path)!r} exists; pass --overwrite to replace it")
    if fmt == "csv":
        return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def read_parquet(path: str | Path) -> pd.DataFrame:
    """`pd.read_parquet` of a local file, read by pyarrow's own file system.

    Given a path alone, pandas opens the file in Python and hands pyarrow the file object,
    whose reads come back as Python buffers. pyarrow's I/O thread may drop the last of them a
    moment after the read returned; if the interpreter is exiting by then, the thread's
    `PyGILState_Ensure` ends it inside a C++ destructor and the process aborts ("terminate
    called without an active exception", SIGABRT after its work is done: 3 of 120 fresh
    processes that read a request and predicted once, apache/arrow#34314; see
    benchmarks/RESULTS.md, "Serving (issue 16)", session 4). pyarrow reading the path
    itself holds no Python objects, so nothing needs the interpreter at exit. The frame is
    the same.
    """
    from pyarrow import fs

    return pd.read_parquet(str(path), filesystem=fs.LocalFileSystem())


def _read_file(path: Path, format: str | None) -> pd.DataFrame:
    if format is None:
        format = file_format(path, hint="Rename the file or pass format='csv' or 'parquet'.")
    if not path.exists():
        raise ConfigError(
            f"File not found: {str(path)!r} (resolved to {str(path.resolve())!r}). "
            f"Expected an existing {format} file."
        )
    if path.is_dir():
        raise ConfigError(f"Expected a {format} file, got a directory: {str(path)!r}")
    try:
        if format == "csv":
            return pd.read_csv(path)
        return read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataValidationError(
            f"File {str(path)!r} is empty; expected a CSV header row."
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataValidationError(
            f"Cannot read {str(path)!r} as {format}: {type(exc).__name__}: {exc}"
        ) from None


def wide_to_long(
    frame: pd.DataFrame,
    *,
    time_col: str,
    value_cols: list[str] | tuple[str, ...] | None = None,
    id_name: str = "series",
    value_name: str = "value",
) -> pd.DataFrame:
    """Turn one column per series into long format: (time, id, value) rows.

    Args:
        frame: wide frame with a time column and one value column per series.
        time_col: the time column, kept as is.
        value_cols: the series columns, in the order their blocks appear in the output;
            None takes every column except `time_col`.
        id_name: name of the new id column (holds the former column names).
        value_name: name of the new value column.

    Returns:
        A new long frame with columns ``[time_col, id_name, value_name]``, one block of rows
        per series in the order of `value_cols`, rows within a block in input order.

    Raises:
        ConfigError: bad names (clashing or empty).
        DataValidationError: `time_col` or a value column is missing.

    Example:
        >>> wide_to_long(df, time_col="date", value_cols=["DAX", "SMI"])
    """
    _check_frame(frame)
    value_cols = [c for c in frame.columns if c != time_col] if value_cols is None else value_cols
    if isinstance(value_cols, str):
        value_cols = [value_cols]
    missing = [c for c in [time_col, *value_cols] if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"The following columns are missing: {missing}. Found columns: {list(frame.columns)}"
        )
    if not value_cols:
        raise ConfigError(
            f"`value_cols` must name at least one series column besides time_col={time_col!r}. "
            f"Received: value_cols={list(value_cols)}"
        )
    names = {"time_col": time_col, "id_name": id_name, "value_name": value_name}
    if len(set(names.values())) < 3:
        raise ConfigError(f"`time_col`, `id_name` and `value_name` must differ. Received: {names}")
    long = frame.melt(
        id_vars=[time_col], value_vars=list(value_cols), var_name=id_name, value_name=value_name
    )
    return long[[time_col, id_name, value_name]].reset_index(drop=True)


def long_to_wide(
    frame: pd.DataFrame, *, time_col: str, id_col: str, value_col: str
) -> pd.DataFrame:
    """Inverse of `wide_to_long`: one column per series, one row per timestamp.

    Args:
        frame: long frame.
        time_col: the time column; it becomes an ordinary column, sorted ascending.
        id_col: the column whose values become column names.
        value_col: the values to spread.

    Returns:
        A new wide frame ``[time_col, *series]``; a series without a row at some
        timestamp gets NaN there.

    Raises:
        DataValidationError: missing columns, or two rows for one (series, timestamp).
    """
    _check_frame(frame)
    missing = [c for c in (time_col, id_col, value_col) if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"The following columns are missing: {missing}. Found columns: {list(frame.columns)}"
        )
    dup = frame.duplicated([id_col, time_col], keep=False)
    if dup.any():
        first = frame.loc[dup, [id_col, time_col]].head(5).astype(str).values.tolist()
        raise DataValidationError(
            f"Cannot spread column {value_col!r}: {int(dup.sum())} rows share a "
            f"(series, timestamp), first {first}. Expected one row per ({id_col!r}, {time_col!r})."
        )
    wide = frame.pivot(index=time_col, columns=id_col, values=value_col).sort_index()
    wide.columns.name = None
    return wide.reset_index()


def _check_frame(frame: Any) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"`frame` must be a pandas DataFrame. Received: {type(frame).__name__}")
