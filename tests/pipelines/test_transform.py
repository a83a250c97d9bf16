"""TargetTransform: log / Box-Cox fitted on training rows only, inverted exactly, JSON state."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from coreforecast.scalers import boxcox_lambda
from hypothesis import example, given
from hypothesis import strategies as st

from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SeriesSchema
from pipelines.split import split_by_time
from pipelines.transform import TargetTransform

SCHEMA = SeriesSchema(id_col="id", targets=("y",))


def _panel(seed: int = 0, n: int = 48) -> pd.DataFrame:
    """Two monthly series with trend and multiplicative seasonality (a10-like)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    season = 1 + 0.3 * np.sin(2 * np.pi * t / 12)
    frames = [
        pd.DataFrame(
            {
                "id": sid,
                "timestamp": pd.date_range("2000-01-01", periods=n, freq="MS"),
                "y": level * np.exp(0.02 * t) * season * rng.lognormal(0, 0.05, n),
            }
        )
        for sid, level in (("a", 5.0), ("b", 200.0))
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("method", ["log", "boxcox"])
@given(
    values=st.lists(st.floats(1e-3, 1e4), min_size=6, max_size=30),
    lam=st.floats(0.0, 2.0),
)
@example(values=[0.5] * 6, lam=5e-324)  # a subnormal lambda once broke the inverse
def test_inverse_undoes_the_transform(method, values, lam):
    frame = pd.DataFrame({"id": "a", "timestamp": range(len(values)), "y": values})
    tr = TargetTransform(method=method, season=3).fit(frame, SCHEMA)
    if method == "boxcox":
        tr.lambda_[:] = lam
    z = tr.transform(frame)["y"].to_numpy()
    back = tr.inverse_target(z.reshape(1, -1, 1), np.zeros(1, int), series_ids=["a"])
    np.testing.assert_allclose(back[0, :, 0], values, rtol=1e-6)


@given(z=st.lists(st.floats(-30, 30), min_size=2, max_size=20), lam=st.floats(0.0, 2.0))
def test_inverse_is_increasing_so_quantiles_stay_ordered(z, lam):
    tr = TargetTransform(method="boxcox", season=2).fit(_panel(), SCHEMA)
    tr.lambda_[:] = lam
    q = np.sort(np.asarray(z)).reshape(1, 1, 1, -1)  # (N, H, T, Q) in increasing order
    back = tr.inverse_target(q, np.zeros(1, int), series_ids=["a"])[0, 0, 0]
    assert np.all(np.diff(back) >= 0)
    assert np.isfinite(back).all()


def test_log_has_lambda_zero_and_is_the_natural_log():
    frame = _panel()
    tr = TargetTransform(method="log").fit(frame, SCHEMA)
    assert (tr.lambda_ == 0).all()
    np.testing.assert_allclose(tr.transform(frame)["y"], np.log(frame["y"]), rtol=1e-12)


def test_boxcox_lambda_per_series_comes_from_training_rows_only():
    frame = _panel()
    split = split_by_time(frame, SCHEMA, validation=0.2, test=0.2, horizon=3)
    tr = TargetTransform(method="boxcox", season=12).fit(split.train, SCHEMA)
    for s, sid in enumerate(("a", "b")):
        rows = split.train.loc[split.train["id"] == sid, "y"].to_numpy()
        want = boxcox_lambda(rows, "guerrero", season_length=12, lower=0.0, upper=2.0)
        assert tr.lambda_[s, 0] == want
    # Wild values after the training part move nothing.
    wild = frame.copy()
    later = ~frame["timestamp"].isin(split.train["timestamp"])
    wild.loc[later, "y"] *= 1000
    wild_split = split_by_time(wild, SCHEMA, validation=0.2, test=0.2, horizon=3)
    again = TargetTransform(method="boxcox", season=12).fit(wild_split.train, SCHEMA)
    np.testing.assert_array_equal(again.lambda_, tr.lambda_)


def test_state_round_trips_through_json():
    frame = _panel()
    tr = TargetTransform(method="boxcox", season=12).fit(frame, SCHEMA)
    back = TargetTransform.from_dict(json.loads(json.dumps(tr.to_dict())))
    np.testing.assert_array_equal(back.lambda_, tr.lambda_)
    np.testing.assert_array_equal(back.transform(frame)["y"], tr.transform(frame)["y"])
    none = TargetTransform.from_dict(TargetTransform().to_dict())
    assert none.transform(frame) is frame


def test_non_positive_targets_are_refused_naming_column_row_and_series():
    frame = _panel()
    frame.loc[50, "y"] = 0.0
    with pytest.raises(DataValidationError) as err:
        TargetTransform(method="log").fit(frame, SCHEMA)
    assert str(err.value) == (
        "`model.target_transform: log` needs positive targets, but column 'y' holds 0.0 in "
        "row 50 (series 'b'); 1 rows are <= 0. Use target_transform 'none' for such series."
    )


def test_unknown_method_and_unseen_series_are_refused():
    with pytest.raises(ConfigError, match=r"one of \['none', 'log', 'boxcox'\]. Received: 'sqrt'"):
        TargetTransform(method="sqrt")
    tr = TargetTransform(method="log").fit(_panel(), SCHEMA)
    with pytest.raises(DataValidationError, match=r"Series \['zz'\] were not seen"):
        tr.inverse_target(np.ones((1, 2, 1)), np.zeros(1, int), series_ids=["zz"])
