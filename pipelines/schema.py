"""Which columns of a long-format frame play which role."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pipelines.errors import ConfigError

# The id given to every row when a frame holds a single series and has no id column.
SINGLE_SERIES_ID = "series_0"


def _as_tuple(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    try:
        out = tuple(value)
    except TypeError:
        raise ConfigError(
            f"`{name}` must be a column name or a list of column names. Received: {name}={value!r}"
        ) from None
    for item in out:
        if not isinstance(item, str) or not item:
            raise ConfigError(
                f"`{name}` must hold non-empty column names. Received: {name}={value!r}"
            )
    return out


@dataclass(frozen=True)
class SeriesSchema:
    """Column roles of a long-format frame: one row per (series, timestamp).

    Args:
        time_col: column holding timestamps.
        id_col: column naming the series; None when the frame holds one series.
        targets: columns to forecast.
        past_covariates: columns known only up to the forecast origin.
        future_covariates: columns known over the horizon too (calendar, planned values).
        freq: pandas frequency string (``"D"``, ``"B"``, ``"30min"``, ``"MS"``); None to infer.
    """

    time_col: str = "timestamp"
    id_col: str | None = None
    targets: tuple[str, ...] = ("value",)
    past_covariates: tuple[str, ...] = field(default_factory=tuple)
    future_covariates: tuple[str, ...] = field(default_factory=tuple)
    freq: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", _as_tuple(self.targets, "targets"))
        object.__setattr__(
            self, "past_covariates", _as_tuple(self.past_covariates, "past_covariates")
        )
        object.__setattr__(
            self, "future_covariates", _as_tuple(self.future_covariates, "future_covariates")
        )
        if not self.targets:
            raise ConfigError("`targets` must name at least one column. Received: targets=()")
        if not isinstance(self.time_col, str) or not self.time_col:
            raise ConfigError(
                f"`time_col` must be a column name. Received: time_col={self.time_col!r}"
            )
        roles = [self.time_col, *([self.id_col] if self.id_col else []), *self.value_columns]
        dupes = sorted({c for c in roles if roles.count(c) > 1})
        if dupes:
            raise ConfigError(
                f"Each column may play one role only; these appear twice: {dupes}. "
                f"Received: time_col={self.time_col!r}, id_col={self.id_col!r}, "
                f"targets={list(self.targets)}, past_covariates={list(self.past_covariates)}, "
                f"future_covariates={list(self.future_covariates)}"
            )

    @property
    def value_columns(self) -> tuple[str, ...]:
        """Every numeric column the pipeline reads, in model-input order."""
        return (*self.targets, *self.past_covariates, *self.future_covariates)

    @property
    def input_columns(self) -> tuple[str, ...]:
        """Columns of the `past` model input: targets, past covariates, future covariates."""
        return self.value_columns

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("targets", "past_covariates", "future_covariates"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeriesSchema:
        allowed = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ConfigError(f"Unknown schema keys {unknown}; allowed: {sorted(allowed)}")
        return cls(**d)
