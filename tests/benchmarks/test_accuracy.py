"""The accuracy suite: its rolling-origin protocol, and a smoke run of the whole harness."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.accuracy.__main__ import main
from benchmarks.accuracy.scoring import scales, seasonal_naive, truth
from benchmarks.accuracy.series import SUITE, Protocol


@given(
    horizon=st.integers(1, 48),
    extra=st.integers(0, 200),
    step=st.integers(1, 60),
    before=st.integers(1, 500),
)
def test_origins_cover_the_test_period_and_nothing_before_it(horizon, extra, step, before):
    p = Protocol(horizon=horizon, test=horizon + extra, step=step)
    n = before + p.test
    origins = p.origins(n)
    assert origins[0] == p.fit_rows(n) - 1  # the last point before the test period
    assert (np.diff(origins) == step).all()
    assert origins[-1] + horizon <= n - 1 < origins[-1] + horizon + step  # no room for one more


def test_scores_read_the_rows_before_the_test_period_for_their_scale_only():
    s = SUITE["a10"]
    y = s.frame()["value"].to_numpy(np.float64)
    changed = y.copy()
    changed[s.protocol.fit_rows(len(y)) :] *= 3.0
    np.testing.assert_array_equal(scales(s, [y]), scales(s, [changed]))
    assert not np.array_equal(truth(s, [y]), truth(s, [changed]))
    # Seasonal naive reads the season before each origin: y[o + h - 12] for h <= 12.
    first = s.protocol.origins(len(y))[0]
    np.testing.assert_array_equal(seasonal_naive(s, [y])[0, :, 0], y[first - 11 : first + 1])


def test_the_suite_spans_frequencies_with_at_least_twelve_series():
    assert len(SUITE) >= 12
    assert {"30min", "D", "MS", "QS", "B"} <= {s.freq for s in SUITE.values()}
    assert any(s.kind == "returns" for s in SUITE.values())


@pytest.mark.slow
def test_quick_run_scores_model_and_every_classical_baseline(tmp_path):
    out, raw = tmp_path / "table.md", tmp_path / "scores.json"
    # One short series: the path is the same for every series, and make test has a budget.
    names = ["ausbeer"]
    args = ["--quick", "--series", *names, "--seeds", "0,1", "--markdown", str(out)]
    assert main([*args, "--json", str(raw)]) == 0
    table = out.read_text().splitlines()
    rows = [line for line in table if line.startswith("| ") and not line.startswith("| series")]
    assert [r.split(" | ")[0].strip("| ") for r in rows] == names
    scores = json.loads(raw.read_text())
    for name in names:
        entry = scores[name]
        for method in ("seasonal_naive", "auto_ets", "auto_theta", "mstl", "auto_arima"):
            assert np.isfinite(entry["classical"][method]["metrics"]["mase"]), (name, method)
        assert np.isfinite(entry["model"]["mase_mean"])
        frame = SUITE[name].frame()  # the model read rows up to the last one before the test
        last_fit = frame["timestamp"].iloc[SUITE[name].protocol.fit_rows(len(frame)) - 1]
        assert pd.Timestamp(entry["model"]["config"]["data"]["end"]) == last_fit
        # The two seeds' median forecast is scored beside their mean and spread.
        assert np.isfinite(entry["model"]["ensemble"]["mase"])
        assert len(entry["model"]["per_seed"]) == 2
    assert "| seed median | median vs best |" in table[2]
    # A rerun reuses the chosen configs and the classical fits of the first run's JSON.
    again = tmp_path / "again.json"
    rerun = ["--quick", "--series", "ausbeer", "--configs-from", str(raw)]
    assert main([*rerun, "--classical-from", str(raw), "--json", str(again)]) == 0
    second = json.loads(again.read_text())["ausbeer"]
    first = scores["ausbeer"]
    assert second["classical"] == first["classical"]
    assert {k: v for k, v in second["model"]["config"].items() if k != "data"} == {
        k: v for k, v in first["model"]["config"].items() if k != "data"
    }


def test_the_seed_median_is_the_median_of_each_forecast_and_quantile():
    from benchmarks.accuracy.model import seed_median

    rng = np.random.default_rng(0)
    runs = [(rng.normal(size=(4, 3, 1)), np.sort(rng.normal(size=(4, 3, 1, 3)), -1)) for _ in "abc"]
    point, q = seed_median(runs)
    np.testing.assert_array_equal(point, np.median([p for p, _ in runs], axis=0))
    assert (np.diff(q, axis=-1) >= 0).all()  # the median of ordered levels stays ordered
    assert point[1, 2, 0] in {p[1, 2, 0] for p, _ in runs}  # an odd count: one seed's value
    assert seed_median([(p, None) for p, _ in runs])[1] is None


def test_ablations_switch_off_each_option_the_config_uses_and_then_all():
    from benchmarks.accuracy.model import ablations

    config = {
        "window": {"lookback": 24},
        "model": {
            "cell": "gru",
            "target_centre": "last",
            "target_transform": "none",
            "residual": "seasonal_naive",
            "residual_season": 12,
            "head_layers": [64],
        },
    }
    variants = ablations(config)
    assert list(variants) == [
        "no target_centre",
        "no residual",
        "other base",
        "no head_layers",
        "all off",
    ]
    assert variants["no residual"]["model"] | {"residual": "seasonal_naive"} == config["model"] | {
        "residual_season": None
    }
    assert variants["other base"]["model"] == config["model"] | {"residual": "exp_smoothing"}
    off = variants["all off"]["model"]
    assert (off["target_centre"], off["residual"], off["head_layers"]) == ("none", "none", [])
    assert off["cell"] == "gru" and variants["all off"]["window"] == config["window"]
    assert config["model"]["target_centre"] == "last"  # the tuned config is left as it was
    assert ablations({"model": {"cell": "lstm"}}) == {}


@pytest.mark.slow
def test_a_series_whose_tuning_folds_do_not_fit_is_reported_in_the_table(tmp_path):
    # visnights has 76 quarters: 12 tuning folds of 8 quarters before its 5 test origins
    # leave no lookback a training window. tune refuses before any trial; the suite says
    # so in its table, keeps the classical scores and exits normally.
    out, raw = tmp_path / "table.md", tmp_path / "scores.json"
    args = ["--quick", "--series", "visnights", "--tune", "--trials", "1", "--tune-folds", "12"]
    assert main([*args, "--markdown", str(out), "--json", str(raw)]) == 0
    scores = json.loads(raw.read_text())
    assert scores["visnights"]["model"]["refused"].startswith(
        "No lookback of [1, 2, 3, 4] seasons (4 steps) leaves the backtest folds a training window"
    )
    assert np.isfinite(scores["visnights"]["classical"]["auto_ets"]["metrics"]["mase"])
    table = out.read_text()
    assert "| visnights | QS | 8 | 5 |" in table and "| not run |" in table
    assert "- visnights, model: not run: No lookback of [1, 2, 3, 4] seasons" in table
