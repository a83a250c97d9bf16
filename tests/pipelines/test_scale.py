"""SeriesScaler: scikit-learn statistics per series, from training rows only, JSON state."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

from pipelines.errors import ConfigError, DataValidationError
from pipelines.scale import SeriesScaler
from pipelines.schema import SeriesSchema
from pipelines.split import split_by_time
from pipelines.window import WindowSpec, make_windows

SCHEMA = SeriesSchema(id_col="id", targets=("y", "z"), past_covariates="x")
SKLEARN = {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}


def _panel(lengths=(30, 12, 50), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for k, n in enumerate(lengths):
        parts.append(
            pd.DataFrame(
                {
                    "id": f"s{k}",
                    "timestamp": pd.date_range("2021-01-01", periods=n, freq="D"),
                    "y": rng.normal(10 * k, k + 1, n),
                    "z": rng.exponential(k + 1, n),
                    "x": 3.0,  # constant: must not become NaN or inf
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("method", list(SKLEARN))
def test_per_series_state_matches_sklearn_fitted_on_each_series(method):
    frame = _panel()
    scaler = SeriesScaler(method=method).fit(frame, SCHEMA)
    out = scaler.transform(frame)
    for sid, rows in frame.groupby("id").groups.items():
        block = frame.loc[rows, ["y", "z", "x"]].to_numpy()
        expected = SKLEARN[method]().fit(block).transform(block)
        np.testing.assert_allclose(out.loc[rows, ["y", "z", "x"]].to_numpy(), expected, atol=1e-12)
        assert sid in scaler.series_ids_
    assert np.isfinite(out[["y", "z", "x"]].to_numpy()).all()
    np.testing.assert_array_equal(scaler.scale_[:, 2], 1.0)  # constant column
    np.testing.assert_allclose(
        scaler.inverse_transform(out)[["y", "z", "x"]], frame[["y", "z", "x"]]
    )


def test_global_scaling_and_column_subset():
    frame = _panel()
    scaler = SeriesScaler(per_series=False, columns=["y"]).fit(frame, SCHEMA)
    out = scaler.transform(frame)
    expected = StandardScaler().fit_transform(frame[["y"]].to_numpy())
    np.testing.assert_allclose(out[["y"]].to_numpy(), expected)
    pd.testing.assert_series_equal(out["z"], frame["z"])  # not in `columns`: unchanged


@given(
    method=st.sampled_from(list(SKLEARN)),
    seed=st.integers(0, 2**16),
    bump=st.floats(-1e6, 1e6, allow_nan=False),
)
def test_statistics_come_from_training_rows_only(method, seed, bump):
    frame = _panel(seed=seed)
    changed = frame.copy()
    late = changed.timestamp >= pd.Timestamp("2021-02-01")  # the test period below
    changed.loc[late, ["y", "z", "x"]] += bump
    states = []
    for f in (frame, changed):
        split = split_by_time(f, SCHEMA, validation=0, test="2021-02-01")
        states.append(SeriesScaler(method=method).fit(split).to_dict())
    assert states[0] == states[1]


@given(
    method=st.sampled_from(list(SKLEARN)),
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=40),
)
def test_transform_round_trips(method, values):
    n = len(values)
    frame = pd.DataFrame(
        {
            "id": ["a"] * n,
            "timestamp": pd.date_range("2020", periods=n, freq="h"),
            "y": values,
            "z": 0.0,
            "x": values[::-1],
        }
    )
    scaler = SeriesScaler(method=method).fit(frame, SCHEMA)
    out = scaler.transform(frame)
    assert np.isfinite(out[["y", "z", "x"]].to_numpy()).all()
    back = scaler.inverse_transform(out)
    np.testing.assert_allclose(back[["y", "z", "x"]], frame[["y", "z", "x"]], rtol=1e-9, atol=1e-6)


def test_json_state_round_trips_without_pickle():
    frame = _panel()
    scaler = SeriesScaler(method="robust").fit(frame, SCHEMA)
    text = scaler.to_json()
    assert json.loads(text)["params"] == {"columns": None, "method": "robust", "per_series": True}
    loaded = SeriesScaler.from_json(text)
    pd.testing.assert_frame_equal(loaded.transform(frame), scaler.transform(frame))
    assert SeriesScaler.from_dict(scaler.to_dict()).series_ids_ == ["s0", "s1", "s2"]


def test_inverse_transform_target_maps_model_outputs_back():
    frame = _panel()
    scaler = SeriesScaler().fit(frame, SCHEMA)
    scaled = scaler.transform(frame)
    test = scaled[scaled.id != "s0"].reset_index(drop=True)  # other series order than in fit
    w = make_windows(test, SCHEMA, WindowSpec(4, 3))
    back = scaler.inverse_transform_target(w.target, w.series, series_ids=w.series_ids)
    original = make_windows(
        frame[frame.id != "s0"].reset_index(drop=True), SCHEMA, WindowSpec(4, 3)
    )
    np.testing.assert_allclose(back, original.target, rtol=1e-5, atol=1e-4)
    quantiles = np.repeat(w.target[..., None], 3, axis=-1)  # (N, H, T, Q)
    np.testing.assert_allclose(
        scaler.inverse_transform_target(quantiles, w.series, series_ids=w.series_ids)[..., 1], back
    )


def test_errors_name_what_is_wrong():
    frame = _panel()
    with pytest.raises(ConfigError, match=r"not fitted yet: call fit"):
        SeriesScaler().transform(frame)
    scaler = SeriesScaler().fit(frame[frame.id != "s2"], SCHEMA)
    with pytest.raises(
        DataValidationError, match=r"Series \['s2'\] were not seen .* knows 2 series"
    ):
        scaler.transform(frame)
    with pytest.raises(ConfigError, match=r"Received: method='zscore'"):
        SeriesScaler(method="zscore").fit(frame, SCHEMA)
    bad = frame.copy()
    bad.loc[3, "z"] = np.inf
    with pytest.raises(
        DataValidationError,
        match=r"Column 'z': 1 NaN/inf values, the first at row 3 \(series 's0'\)",
    ):
        SeriesScaler().fit(bad, SCHEMA)
    with pytest.raises(ConfigError, match=r"\(N, H, T\) or \(N, H, T, Q\) with T=2"):
        scaler.inverse_transform_target(np.zeros((4, 3)), np.zeros(4, int))
    with pytest.raises(ConfigError, match=r"`series_index` is required: the scaler holds 2 series"):
        scaler.inverse_transform_target(np.zeros((4, 3, 2)))
