"""Per-series scaling fitted on training rows only, with JSON state that ships with a model.

`SeriesScaler` wraps scikit-learn's StandardScaler, MinMaxScaler and RobustScaler. All three
are affine per column, so the learned state is an offset and a scale per (series, column):
``scaled = (value - offset_) / scale_``. That is all that is saved, as plain JSON.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from pipelines._frames import check_finite, require_columns, row_describer, series_blocks
from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SeriesSchema
from pipelines.split import FrameSplit

__all__ = ["SeriesScaler"]

_METHODS = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}
_STATE = ("columns_", "targets_", "id_col_", "series_ids_", "offset_", "scale_")
_FORMAT = 1  # bump when the JSON layout changes
_SHOW = 5


class SeriesScaler(BaseEstimator):
    """Scale value columns of a long frame, per series or globally.

    Args:
        method: ``"standard"`` (mean 0, std 1), ``"minmax"`` (to [0, 1]) or ``"robust"``
            (median 0, interquartile range 1).
        per_series: learn one offset and scale per series (else one for all rows).
        columns: columns to scale; None scales `schema.value_columns`. Columns left out
            (e.g. calendar features already in range) pass through unchanged.

    Attributes:
        columns_: scaled columns, in order.
        targets_: the schema's target columns.
        id_col_: the schema's id column (None for one series).
        series_ids_: series seen in `fit`; one row of `offset_`/`scale_` each (a single
            row ``[None]`` when ``per_series=False``).
        offset_, scale_: (S, C) float64; constant columns get scale 1, never 0.

    Example:
        >>> scaler = SeriesScaler(method="robust").fit(split.train, schema)
        >>> train = scaler.transform(split.train)
        >>> forecast = scaler.inverse_transform_target(model.predict(x), windows.series)
    """

    def __init__(
        self, *, method: str = "standard", per_series: bool = True, columns: list[str] | None = None
    ) -> None:
        self.method = method
        self.per_series = per_series
        self.columns = columns

    def fit(self, frame: Any, schema: SeriesSchema | None = None) -> SeriesScaler:
        """Learn offsets and scales from `frame`, which must hold training rows only.

        Args:
            frame: the training frame, or a `pipelines.split.FrameSplit`, whose ``train``
                part (and schema) is then used, so test rows cannot leak in.
            schema: column roles (taken from the split when `frame` is one).

        Returns:
            self.
        """
        if isinstance(frame, FrameSplit):
            schema, frame = schema or frame.schema, frame.train
        self._check_params(schema)
        columns = list(self.columns) if self.columns is not None else list(schema.value_columns)
        require_columns(frame, [*columns, *([schema.id_col] if schema.id_col else [])])
        ids, starts = series_blocks(frame, schema)
        values = frame[columns].to_numpy(dtype=np.float64)
        check_finite(values, columns, row_describer(ids, starts))
        if not self.per_series:
            ids, starts = (None,), np.zeros(1, np.int64)
        offset, scale = _fit_blocks(_METHODS[self.method], values, starts)
        self.columns_, self.targets_, self.id_col_ = columns, list(schema.targets), schema.id_col
        self.series_ids_ = [_plain(s) for s in ids]
        self.offset_, self.scale_ = offset, scale
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of `frame` with `columns_` scaled; other columns unchanged."""
        return self._apply(frame, inverse=False)

    def inverse_transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of `frame` with `columns_` mapped back to original units."""
        return self._apply(frame, inverse=True)

    def inverse_transform_target(
        self,
        values: np.ndarray,
        series_index: np.ndarray | None = None,
        *,
        series_ids: Any = None,
    ) -> np.ndarray:
        """Model outputs (N, H, T) or quantiles (N, H, T, Q) back to original units.

        Args:
            values: scaled targets, axis 2 in `targets_` order.
            series_index: (N,) series of each row: positions in `series_ids` when given
                (e.g. ``windows.series`` with ``series_ids=windows.series_ids``), else in
                `series_ids_`. May be None when ``per_series=False``.
            series_ids: labels that `series_index` refers to.
        """
        self._check_fitted()
        values = np.asarray(values, dtype=np.float64)
        if values.ndim not in (3, 4) or values.shape[2] != len(self.targets_):
            raise ConfigError(
                f"`values` must be (N, H, T) or (N, H, T, Q) with T={len(self.targets_)} "
                f"targets {self.targets_}. Received shape {values.shape}"
            )
        rows = self._rows_for(series_index, series_ids, len(values))
        offset, scale = (
            np.zeros((len(rows), len(self.targets_))),
            np.ones((len(rows), len(self.targets_))),
        )
        for t, col in enumerate(self.targets_):
            if col in self.columns_:  # unscaled targets pass through
                c = self.columns_.index(col)
                offset[:, t], scale[:, t] = self.offset_[rows, c], self.scale_[rows, c]
        shape = (len(rows), 1, len(self.targets_)) + (1,) * (values.ndim - 3)
        return values * scale.reshape(shape) + offset.reshape(shape)

    def series_index(self, labels: Any) -> np.ndarray:
        """Positions in `series_ids_` of series `labels`; raises naming unseen series."""
        self._check_fitted()
        if not self.per_series:
            return np.zeros(len(labels), np.int64)
        codes = pd.Index(self.series_ids_).get_indexer(list(labels)).astype(np.int64)
        if (codes < 0).any():
            unseen = pd.unique(np.asarray(list(labels), dtype=object)[codes < 0])
            raise DataValidationError(
                f"Series {unseen[:_SHOW].tolist()}{' ...' if len(unseen) > _SHOW else ''} were "
                f"not seen when the scaler was fitted (it knows {len(self.series_ids_)} series, "
                f"e.g. {self.series_ids_[:_SHOW]}). Refit on training data that includes them, "
                f"or use per_series=False."
            )
        return codes

    def to_dict(self) -> dict[str, Any]:
        """Parameters and learned state as plain JSON types (no pickle)."""
        self._check_fitted()
        state = {k: getattr(self, k) for k in _STATE}
        state["offset_"], state["scale_"] = self.offset_.tolist(), self.scale_.tolist()
        return {"format": _FORMAT, "params": self.get_params(), "state": state}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeriesScaler:
        """Rebuild a fitted scaler from `to_dict` output."""
        if not isinstance(d, dict) or set(d) != {"format", "params", "state"}:
            raise ConfigError(
                "A scaler dict needs exactly the keys ['format', 'params', 'state']. "
                f"Received keys: {sorted(d) if isinstance(d, dict) else type(d).__name__}"
            )
        if d["format"] != _FORMAT:
            raise ConfigError(f"Unknown scaler format {d['format']!r}; this code reads {_FORMAT}.")
        missing = sorted(set(_STATE) - set(d["state"]))
        if missing:
            raise ConfigError(f"The scaler state lacks {missing}.")
        scaler = cls(**d["params"])
        for key in _STATE:
            setattr(scaler, key, d["state"][key])
        scaler.offset_ = np.asarray(scaler.offset_, dtype=np.float64)
        scaler.scale_ = np.asarray(scaler.scale_, dtype=np.float64)
        shape = (len(scaler.series_ids_), len(scaler.columns_))
        if scaler.offset_.shape != shape or scaler.scale_.shape != shape:
            raise ConfigError(
                f"offset_ and scale_ must be {shape} (series, columns). Received "
                f"{scaler.offset_.shape} and {scaler.scale_.shape}"
            )
        return scaler

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> SeriesScaler:
        return cls.from_dict(json.loads(text))

    def _apply(self, frame: pd.DataFrame, *, inverse: bool) -> pd.DataFrame:
        self._check_fitted()
        require_columns(frame, [*self.columns_, *([self.id_col_] if self.id_col_ else [])])
        if self.per_series and self.id_col_ is not None:
            rows = self.series_index(frame[self.id_col_].to_numpy())
        else:
            rows = np.zeros(len(frame), np.int64)
        out = frame.copy()
        for c, col in enumerate(self.columns_):
            x = frame[col].to_numpy(dtype=np.float64)
            offset, scale = self.offset_[rows, c], self.scale_[rows, c]
            out[col] = x * scale + offset if inverse else (x - offset) / scale
        return out

    def _rows_for(self, series_index: Any, series_ids: Any, n: int) -> np.ndarray:
        if not self.per_series:
            return np.zeros(n, np.int64)
        if series_index is None:
            if len(self.series_ids_) != 1:
                raise ConfigError(
                    f"`series_index` is required: the scaler holds {len(self.series_ids_)} series."
                )
            return np.zeros(n, np.int64)
        index = np.asarray(series_index, dtype=np.int64)
        if index.shape != (n,):
            raise ConfigError(f"`series_index` must have shape ({n},). Received {index.shape}")
        if series_ids is not None:
            return self.series_index(list(series_ids))[index]
        if index.min(initial=0) < 0 or index.max(initial=0) >= len(self.series_ids_):
            raise ConfigError(
                f"`series_index` must lie in [0, {len(self.series_ids_)}). Received values from "
                f"{index.min()} to {index.max()}"
            )
        return index

    def _check_params(self, schema: Any) -> None:
        if self.method not in _METHODS:
            raise ConfigError(
                f"`method` must be one of {list(_METHODS)}. Received: method={self.method!r}"
            )
        if not isinstance(schema, SeriesSchema):
            raise ConfigError(f"`schema` must be a SeriesSchema. Received: {type(schema).__name__}")
        if self.columns is not None and (isinstance(self.columns, str) or not self.columns):
            raise ConfigError(
                f"`columns` must be a non-empty list of column names or None. "
                f"Received: columns={self.columns!r}"
            )

    def _check_fitted(self) -> None:
        if not hasattr(self, "scale_"):
            raise ConfigError(
                "This SeriesScaler is not fitted yet: call fit(train_frame, schema) first."
            )


def _fit_blocks(
    kind: type, values: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(S, C) offset and scale of each block of rows starting at `starts`."""
    stops = np.append(starts[1:], len(values))
    lengths = stops - starts
    n_blocks, n_cols = len(starts), values.shape[1]
    if n_blocks > 1 and lengths.max() * n_blocks <= 4 * len(values):
        # One scikit-learn fit for all series: each series becomes its own columns of a
        # NaN-padded (max_len, S * C) matrix; the scalers skip NaN when fitting.
        wide = np.full((lengths.max(), n_blocks, n_cols), np.nan)
        pos = np.arange(len(values)) - np.repeat(starts, lengths)
        wide[pos, np.repeat(np.arange(n_blocks), lengths)] = values
        offset, scale = _affine(kind().fit(wide.reshape(len(wide), -1)))
        return offset.reshape(n_blocks, n_cols), scale.reshape(n_blocks, n_cols)
    pairs = [_affine(kind().fit(values[a:b])) for a, b in zip(starts, stops, strict=True)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _affine(fitted: Any) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) with ``transform(x) == (x - offset) / scale`` for a fitted scaler."""
    if isinstance(fitted, StandardScaler):
        return fitted.mean_.copy(), fitted.scale_.copy()
    if isinstance(fitted, MinMaxScaler):  # x * scale_ + min_ == (x - (-min_/scale_)) * scale_
        return -fitted.min_ / fitted.scale_, 1.0 / fitted.scale_
    return fitted.center_.copy(), fitted.scale_.copy()


def _plain(label: Any) -> Any:
    """A series label as a JSON-friendly Python value."""
    return label.item() if isinstance(label, np.generic) else label
