"""Score a model and the baselines on the same windows, in original units."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd

from forecast.config import CalibrationConfig
from forecast.data import Prepared, to_original
from forecast.evaluation.baselines import make_baseline
from forecast.evaluation.calibration import correcting_windows, recalibrate, warn_short
from forecast.evaluation.metrics import evaluate, evaluate_by_step
from forecast.models import check_mask
from pipelines.errors import ConfigError, DataValidationError
from pipelines.window import Windows, make_windows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Forecasts:
    """Forecasts for a set of windows in original units."""

    point: np.ndarray  # (N, H, T)
    quantiles: np.ndarray | None  # (N, H, T, Q) or None
    levels: tuple[float, ...]


def predict_windows(
    model: keras.Model, windows: Windows, *, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray | None]:
    """Scaled outputs (N, H, T) and quantiles (N, H, T, Q) or None, batch by batch.

    Each batch goes to the concrete function of the model's predict function traced for any
    batch size (`_predict_function`): `Model.predict` builds a tf.data pipeline on every call
    (~0.1 s, most of a one-series request) and `predict_on_batch` looks the trace up again on
    every call (~0.3 ms of a 0.5 ms one-window call). It keeps no per-call state on the model,
    so serving threads may call it at once.
    """
    inputs = windows.inputs()
    if "mask" in inputs:
        check_mask(inputs["mask"])
    predict = _predict_function(model, inputs)
    parts = []
    for start in range(0, len(windows), batch_size):
        chunk = {k: v[start : start + batch_size] for k, v in inputs.items()}
        out = predict(chunk)
        parts.append(out if isinstance(out, dict) else {"forecast": out})
    point = np.concatenate([np.asarray(p["forecast"]) for p in parts])
    if "quantiles" not in parts[0]:
        return point, None
    return point, np.concatenate([np.asarray(p["quantiles"]) for p in parts])


def _predict_function(model: keras.Model, inputs: dict[str, np.ndarray]) -> Any:
    """A callable ``batch -> outputs`` (numpy or tensors) for batches shaped like `inputs`.

    With TensorFlow, two functions kept on the model per input layout, both made on first
    use: `_trace_any_batch_size` for any batch, and `_OneWindow` for a batch of exactly one
    window (a one-series request). Else `predict_on_batch`.
    """
    if keras.backend.backend() != "tensorflow":
        return model.predict_on_batch
    key = tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(inputs.items()))
    concrete = model.__dict__.setdefault("_forecast_concrete", {})
    if key not in concrete:
        concrete[key] = (_trace_any_batch_size(model, inputs), _trace_one_window(model, inputs))
    any_batch, one = concrete[key]

    def predict(batch: dict[str, np.ndarray]) -> Any:
        if len(next(iter(batch.values()))) == 1:
            return one(batch)
        return any_batch([(batch,)])

    return predict


def _trace_one_window(model: keras.Model, inputs: dict[str, np.ndarray]) -> Any:
    """The model's inference call for a batch of one window, XLA-compiled on a CPU.

    Mixed-precision models keep the plain trace: XLA computes their float16 / bfloat16
    steps in float32, which would move served forecasts ~1e-3 from the evaluated ones.
    """
    from forecast.models.layers import gpu_visible

    float32 = all(layer.compute_dtype == "float32" for layer in model._flatten_layers())
    return _OneWindow(model, inputs, compile=float32 and not gpu_visible())


class _OneWindow:
    """The model's inference call traced for a batch of exactly one window.

    On a CPU the whole call is one XLA computation (compiled on the first call, as the
    fused layers' own loops would be, so a cold start pays no more; see
    benchmarks/RESULTS.md, "Session 3"): per-op dispatch of the TensorFlow graph is what
    a one-window call spends most of its time on, 0.27 against 0.54 ms in a tight loop and
    1.2 against 1.7 ms after the few milliseconds of pandas work of a request. A model
    XLA cannot compile (an op without an XLA kernel) falls back, once, to the plain trace.
    On a GPU the plain trace keeps cuDNN. Results equal the any-batch trace's to ~1e-7.
    """

    def __init__(self, model: keras.Model, inputs: dict[str, np.ndarray], *, compile: bool):
        import tensorflow as tf

        self._spec = {
            k: tf.TensorSpec((1, *v.shape[1:]), tf.as_dtype(v.dtype)) for k, v in inputs.items()
        }
        self._model = model
        self._call = self._trace(jit_compile=compile)
        self._untried = compile  # an XLA trace not yet called: its first call may fail

    def _trace(self, *, jit_compile: bool) -> Any:
        import tensorflow as tf

        model = self._model
        function = tf.function(lambda batch: model(batch, training=False), jit_compile=jit_compile)
        return function.get_concrete_function(self._spec)

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        if not self._untried:
            return self._call(batch)
        import tensorflow as tf

        try:
            out = self._call(batch)
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as err:
            # XLA refuses the graph at its first call; a genuine error raises again below.
            log.info("One-window XLA compilation failed (%s); using the plain trace.", err)
            self._call = self._trace(jit_compile=False)
            out = self._call(batch)
        self._untried = False
        return out


def _trace_any_batch_size(model: keras.Model, inputs: dict[str, np.ndarray]) -> Any:
    """Give the model's predict function one trace whose batch axis is unknown; return it.

    Keras traces `predict_on_batch` for the first batch shape it sees and again, relaxed, for
    the second (a last chunk of 533 windows after 1024, a one-series request after a part),
    and TensorFlow warns when several models in one process keep doing so. A trace made with
    `get_concrete_function` up front is reused by every batch size and is not a call, so
    nothing is traced twice. The fused RNN layers pad the batch to a few sizes themselves.
    """
    import tensorflow as tf

    model.make_predict_function()
    spec = {k: tf.TensorSpec((None, *v.shape[1:]), tf.as_dtype(v.dtype)) for k, v in inputs.items()}
    return model.predict_function.get_concrete_function([(spec,)])


def model_forecasts(
    model: keras.Model,
    prepared: Prepared,
    part: str,
    *,
    calibration: int = 0,
    batch_size: int = 1024,
) -> Forecasts:
    """The model's forecasts for the windows of `part`, in original units.

    Args:
        calibration: K of `forecast.evaluation.calibration` (``calibration.windows``); 0 leaves the
            quantiles as the network gives them. With K > 0 each window's quantiles are
            corrected with the last K forecasts of its series whose outcomes are known at
            its origin, read from the whole prepared frame: the same history a served
            model reads, so evaluation scores exactly what serving returns.
    """
    CalibrationConfig(windows=calibration)  # a bad K fails here, named as the config key
    levels = tuple(getattr(getattr(model, "spec", None), "quantiles", ()) or ())
    if calibration and not levels:
        raise ConfigError("`calibration.windows` > 0 needs a quantile head (`model.quantiles`).")
    if calibration:
        return _calibrated_forecasts(model, prepared, part, calibration, levels, batch_size)
    windows = prepared.windows[part]
    point, quantiles = predict_windows(model, windows, batch_size=batch_size)
    point = prepared.to_original(point, windows)
    _check_finite(point, part)
    if quantiles is not None:
        quantiles = prepared.to_original(quantiles, windows)
    return Forecasts(point=point, quantiles=quantiles, levels=levels)


def _check_finite(point: np.ndarray, part: str) -> None:
    if not np.isfinite(point).all():
        raise DataValidationError(
            f"The model produced {int((~np.isfinite(point)).sum())} non-finite forecasts on "
            f"the {part} part; training diverged (lower the learning rate)."
        )


def _calibrated_forecasts(
    model: keras.Model,
    prepared: Prepared,
    part: str,
    k: int,
    levels: tuple[float, ...],
    batch_size: int,
) -> Forecasts:
    """Forecasts of `part` recalibrated on earlier windows of the whole frame (any part)."""
    split, spec = prepared.split, prepared.windows[part].spec
    time_col = prepared.schema.time_col
    times = split.frame[time_col].to_numpy()
    stop = split.ranges.part(part).stop
    observed = times < split.times[stop] if stop < len(split.times) else np.ones(len(times), bool)
    every = make_windows(
        prepared.encode(split.frame),
        prepared.schema,
        spec,
        target_rows=observed,
        on_short="skip",
    )
    scored = times[every.last + 1] >= split.times[split.ranges.part(part).start]
    # Earlier windows that can correct a scored one: origins from (first origin - H - K).
    first = np.full(len(every.series_ids), np.iinfo(np.int64).max)
    np.minimum.at(first, every.series[scored], every.origin[scored])
    needed = correcting_windows(every.origin, first[every.series], horizon=spec.horizon, windows=k)
    every = every.take(needed)
    scored = scored[needed]
    if int(scored.sum()) != len(prepared.windows[part]):
        raise RuntimeError(
            f"Recalibration found {int(scored.sum())} windows of the {part} part, "
            f"windowing found {len(prepared.windows[part])}."
        )
    point, quantiles = predict_windows(model, every, batch_size=batch_size)
    point = prepared.to_original(point, every)
    quantiles = prepared.to_original(quantiles, every)
    y = prepared.to_original(every.target, every)
    _check_finite(point[scored], part)
    calibrated, used = recalibrate(
        quantiles[scored],
        levels,
        series=every.series[scored],
        origin=every.origin[scored],
        past_series=every.series,
        past_origin=every.origin,
        past_quantiles=quantiles,
        past_y=y,
        horizon=spec.horizon,
        windows=k,
    )
    warn_short(used, k, f"{part} windows")
    return Forecasts(point=point[scored], quantiles=calibrated, levels=levels)


RANDOM_WALK = "random_walk"


def is_return_target(name: str) -> bool:
    """Targets that are returns of a price (from `FeatureSpec.target`)."""
    return name.endswith(("_log_return", "_return"))


def baseline_forecasts(
    prepared: Prepared, part: str, names: tuple[str, ...] | list[str]
) -> dict[str, np.ndarray]:
    """Each baseline's forecasts for the windows of `part`, fitted on training windows.

    For return targets the random walk of the price (a zero return, in original units) is
    always added: it is the forecast a price model has to beat.
    """
    # With `model.deseasonalize` the windows hold the remainder: the baselines read the
    # series itself, so that their scores do not depend on the model's options.
    train = prepared.with_seasons(prepared.windows["train"])
    windows = prepared.with_seasons(prepared.windows[part])
    horizon, n_targets = windows.spec.horizon, windows.n_targets
    out = {}
    if all(is_return_target(t) for t in prepared.schema.targets):
        out[RANDOM_WALK] = np.zeros((len(windows), horizon, n_targets))
    for name in names:
        kwargs: dict[str, Any] = {"horizon": horizon, "n_targets": n_targets}
        if name == "seasonal_naive":
            kwargs["season"] = prepared.season
        baseline = make_baseline(name, **kwargs)
        baseline.fit(train.past, train.target, train.mask)
        scaled = baseline.predict(windows.past, windows.mask)
        out[name] = to_original(prepared.scaler, prepared.transform, scaled, windows)
    return out


def score(
    prepared: Prepared,
    part: str,
    forecasts: Forecasts,
    baselines: dict[str, np.ndarray],
    *,
    directional: bool = False,
) -> pd.DataFrame:
    """Tidy table: one row per (model, metric) on `part`, the model first."""
    windows = prepared.windows[part]
    y = prepared.y_true(part)
    scale = prepared.scale_for(windows)
    rows = []
    model_metrics = evaluate(
        y,
        forecasts.point,
        scale=scale,
        quantiles=forecasts.levels or None,
        q_pred=forecasts.quantiles,
        directional=directional,
    )
    rows += [("model", k, v) for k, v in model_metrics.items()]
    for name, pred in baselines.items():
        metrics = evaluate(y, pred, scale=scale, directional=directional)
        rows += [(name, k, v) for k, v in metrics.items()]
    return pd.DataFrame(rows, columns=["model", "metric", "value"])


def is_returns(prepared: Prepared) -> bool:
    """Whether every target is a return of a price (scored with directional accuracy too)."""
    return all(is_return_target(t) for t in prepared.schema.targets)


def score_part(
    model: keras.Model,
    prepared: Prepared,
    part: str,
    *,
    baselines: tuple[str, ...] | list[str],
    calibration: int = 0,
) -> tuple[pd.DataFrame, Forecasts]:
    """The model and `baselines` on the windows of `part`: the one way a part is scored.

    Train and backtest jobs both call it, so their tables hold the same metrics (directional
    accuracy for return targets, the random walk beside every return model).

    Returns:
        The tidy score table (model, metric, value) and the model's forecasts.
    """
    forecasts = model_forecasts(model, prepared, part, calibration=calibration)
    base = baseline_forecasts(prepared, part, baselines)
    table = score(prepared, part, forecasts, base, directional=is_returns(prepared))
    return table, forecasts


def per_step(prepared: Prepared, part: str, forecasts: Forecasts) -> pd.DataFrame:
    """Model metrics per horizon step (step x metric)."""
    windows = prepared.windows[part]
    return evaluate_by_step(
        prepared.y_true(part), forecasts.point, scale=prepared.scale_for(windows)
    )


def wide(table: pd.DataFrame) -> pd.DataFrame:
    """The tidy score table as model x metric."""
    out = table.pivot(index="model", columns="metric", values="value")
    order = ["model", *[m for m in out.index if m != "model"]]
    return out.loc[order]
