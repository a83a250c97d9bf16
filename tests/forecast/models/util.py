"""Small helpers shared by the model tests: random weights and contract inputs."""

from __future__ import annotations

from typing import Any

import numpy as np

from forecast.models import ModelSpec, build_model


def randomize(model: Any, seed: int = 0, scale: float = 0.6) -> None:
    """Give every weight, biases included, random non-zero values.

    Zero biases keep a zero-padded step from moving the state and would hide masking bugs.
    """
    rng = np.random.default_rng(seed)
    model.set_weights(
        [rng.uniform(-scale, scale, w.shape).astype(w.dtype) for w in model.get_weights()]
    )


def make_inputs(
    model: Any,
    batch: int = 3,
    lookback: int = 6,
    seed: int = 1,
    mask: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Random contract inputs for `model` (a `ForecastModel`)."""
    rng = np.random.default_rng(seed)
    sizes = model.sizes
    lookback = sizes["lookback"] or lookback
    x = {"past": rng.normal(size=(batch, lookback, sizes["n_features"])).astype("float32")}
    if sizes["n_future"]:
        x["future"] = rng.normal(size=(batch, sizes["horizon"], sizes["n_future"])).astype(
            "float32"
        )
    if model.spec.mode == "dynamic":
        x["mask"] = np.ones((batch, lookback), bool) if mask is None else mask
    return x


def tiny_model(seed: int = 0, **spec: Any) -> Any:
    """A randomized model with 3 features (1 target), horizon 3, 2 future covariates, L=6."""
    sizes = {
        "n_features": spec.pop("n_features", 3),
        "n_targets": spec.pop("n_targets", 1),
        "horizon": spec.pop("horizon", 3),
        "n_future": spec.pop("n_future", 2),
        "lookback": spec.pop("lookback", 6),
    }
    spec.setdefault("units", (5,))
    model = build_model(ModelSpec(**spec), **sizes)
    randomize(model, seed)
    return model


def as_numpy(out: Any) -> Any:
    """Model output (tensor or dict of tensors) as numpy."""
    if isinstance(out, dict):
        return {k: np.asarray(v) for k, v in out.items()}
    return np.asarray(out)


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two outputs of the same structure."""
    a, b = as_numpy(a), as_numpy(b)
    if isinstance(a, dict):
        return max(float(np.abs(a[k] - b[k]).max()) for k in a)
    return float(np.abs(a - b).max())
