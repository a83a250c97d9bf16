"""Monotone target transforms (log, Box-Cox) fitted on training rows, with JSON state.

`TargetTransform` maps each target column of a long frame through Box-Cox with one lambda
per (series, target): ``log`` fixes lambda at 0, ``boxcox`` fits it on the training rows
with Guerrero's method (coreforecast, Nixtla's implementation; the season is the data's),
within [0, 2] so that every forecast has an inverse.
It runs before the scaler, so the model sees transformed, then scaled, targets, and the
forecasts come back through the scaler's inverse and then `inverse_target`.

The transform is strictly increasing, so a quantile of the transformed target maps to the
same quantile of the target: quantile forecasts are inverted value by value. The mean is
not preserved: the inverse of a point forecast made in log space is (close to) the median
of the target, below its mean for a right-skewed distribution; no bias adjustment is made.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from coreforecast.scalers import boxcox, boxcox_lambda, inv_boxcox

from pipelines._frames import fitted_series_codes, require_columns, series_blocks
from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SINGLE_SERIES_ID, SeriesSchema

__all__ = ["TRANSFORMS", "TargetTransform"]

TRANSFORMS = ("none", "log", "boxcox")
_FORMAT = 1
# Lambdas searched: below 0 the inverse exists only under -1/lambda, so a forecast above it
# would have no value; from 0 (the log) up it is defined and increasing everywhere.
LAMBDA_RANGE = (0.0, 2.0)


class TargetTransform:
    """Log or Box-Cox of the target columns, one lambda per (series, target).

    Args:
        method: ``none``, ``log`` or ``boxcox``.
        season: steps per season, for Guerrero's choice of lambda (``boxcox`` only).

    Attributes:
        targets_: the target columns.
        id_col_: the id column (None for one series).
        series_ids_: series seen in `fit`, one row of `lambda_` each.
        lambda_: (S, T) float64 Box-Cox lambdas (0 is the log).
    """

    def __init__(self, *, method: str = "none", season: int = 1) -> None:
        if method not in TRANSFORMS:
            raise ConfigError(
                f"`target_transform` must be one of {list(TRANSFORMS)}. Received: {method!r}"
            )
        self.method, self.season = method, int(season)

    def fit(self, frame: pd.DataFrame, schema: SeriesSchema) -> TargetTransform:
        """Learn the lambdas from `frame`, which must hold training rows only."""
        require_columns(frame, [*schema.targets, *([schema.id_col] if schema.id_col else [])])
        ids, starts = series_blocks(frame, schema)
        self.targets_, self.id_col_ = list(schema.targets), schema.id_col
        self.series_ids_ = [s.item() if isinstance(s, np.generic) else s for s in ids]
        self._check_positive(frame)
        values = frame[self.targets_].to_numpy(np.float64)
        stops = np.append(starts[1:], len(frame))
        lam = np.zeros((len(ids), len(self.targets_)))
        if self.method == "boxcox":
            for s, (a, b) in enumerate(zip(starts, stops, strict=True)):
                for t in range(len(self.targets_)):
                    lam[s, t] = boxcox_lambda(
                        values[a:b, t],
                        "guerrero",
                        season_length=max(self.season, 2),
                        lower=LAMBDA_RANGE[0],
                        upper=LAMBDA_RANGE[1],
                    )
        self.lambda_ = lam
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of `frame` with its targets transformed (positive values required)."""
        if self.method == "none":
            return frame
        self._check_fitted()
        self._check_positive(frame)
        rows = self._rows(frame)
        out = frame.copy()
        for t, col in enumerate(self.targets_):
            x = frame[col].to_numpy(np.float64)
            out[col] = _apply(boxcox, x, self.lambda_[rows, t])
        return out

    def inverse_target(
        self, values: np.ndarray, series_index: np.ndarray, *, series_ids: Any
    ) -> np.ndarray:
        """Transformed (N, H, T) or (N, H, T, Q) values back to the target's units.

        Args:
            values: transformed targets, axis 2 in `targets_` order.
            series_index: (N,) positions in `series_ids` of each row's series.
            series_ids: labels that `series_index` refers to.
        """
        values = np.asarray(values, dtype=np.float64)
        if self.method == "none":
            return values
        self._check_fitted()
        codes = self.series_index(list(series_ids))[np.asarray(series_index, np.int64)]
        out = np.empty_like(values)
        for t in range(values.shape[2]):
            lam = self.lambda_[codes, t]  # (N,)
            flat = values[:, :, t].reshape(len(values), -1)  # (N, H[*Q])
            out[:, :, t] = _apply(inv_boxcox, flat, lam[:, None]).reshape(values[:, :, t].shape)
        return out

    def series_index(self, labels: list[Any]) -> np.ndarray:
        """Positions in `series_ids_` of `labels`; raises naming unseen series."""
        return fitted_series_codes(self.series_ids_, labels, "the target transform")

    def to_dict(self) -> dict[str, Any]:
        """Parameters and learned state as plain JSON types (no pickle)."""
        d: dict[str, Any] = {"format": _FORMAT, "method": self.method, "season": self.season}
        if self.method != "none":
            self._check_fitted()
            d.update(
                targets=self.targets_,
                id_col=self.id_col_,
                series_ids=self.series_ids_,
                lambda_=self.lambda_.tolist(),
            )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TargetTransform:
        """Rebuild a fitted transform from `to_dict` output."""
        if not isinstance(d, dict) or d.get("format") != _FORMAT:
            raise ConfigError(f"Unknown target transform state; this code reads format {_FORMAT}.")
        out = cls(method=d["method"], season=d["season"])
        if out.method != "none":
            out.targets_, out.id_col_ = list(d["targets"]), d["id_col"]
            out.series_ids_ = list(d["series_ids"])
            out.lambda_ = np.asarray(d["lambda_"], dtype=np.float64)
        return out

    def _rows(self, frame: pd.DataFrame) -> np.ndarray:
        if self.id_col_ is None:
            return np.zeros(len(frame), np.int64)
        return self.series_index(frame[self.id_col_].tolist())

    def _check_positive(self, frame: pd.DataFrame) -> None:
        """Box-Cox and the log need targets > 0: name the first row that is not."""
        if self.method == "none":
            return
        for col in self.targets_:
            x = frame[col].to_numpy(np.float64)
            bad = np.flatnonzero(~(x > 0))
            if len(bad):
                row = int(bad[0])
                sid = frame[self.id_col_].iloc[row] if self.id_col_ else SINGLE_SERIES_ID
                sid = sid.item() if isinstance(sid, np.generic) else sid
                raise DataValidationError(
                    f"`model.target_transform: {self.method}` needs positive targets, but "
                    f"column '{col}' holds {float(x[row])!r} in row {row} (series {sid!r}); "
                    f"{len(bad)} rows are <= 0. Use target_transform 'none' for such series."
                )

    def _check_fitted(self) -> None:
        if not hasattr(self, "lambda_"):
            raise ConfigError("This TargetTransform is not fitted yet: call fit(train, schema).")


def _apply(func: Any, x: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """`func(x, lambda)` with one lambda per element (grouped by distinct lambda)."""
    # A lambda within 1e-12 of 0 is the log: Box-Cox equals it there to ~1e-11, and
    # coreforecast's inverse at a subnormal lambda (5e-324, drawn by hypothesis) overflows
    # 1/lambda and returns 0.368 for 0.5.
    lam = np.where(np.abs(lam) < 1e-12, 0.0, np.broadcast_to(lam, x.shape))
    out = np.empty_like(x, dtype=np.float64)
    for value in np.unique(lam):
        where = lam == value
        out[where] = func(x[where].astype(np.float64), float(value))
    return out
