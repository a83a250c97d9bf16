"""The accuracy suite: its rolling-origin protocol, and a smoke run of the whole harness."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.accuracy.__main__ import main
from benchmarks.accuracy.model import default_config
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
    main_table = table[: table.index("", 2)]  # the combination table follows
    rows = [line for line in main_table if line.startswith("| ") and "| series |" not in line]
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
    # The network half-and-half with the mean of the classical models, scored alike.
    mixed = scores["ausbeer"]["combination"]
    assert mixed["members"] == ["auto_ets", "auto_theta", "mstl", "auto_arima"]
    assert np.isfinite(mixed["model_and_classical"]["mase"])
    head = next(i for i, line in enumerate(table) if line.startswith("| series | best classical"))
    assert table[head + 2].startswith("| ausbeer | ")
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


def test_the_combinations_average_the_forecasts_the_suite_scored():
    from benchmarks.accuracy.combination import combinations, markdown
    from benchmarks.accuracy.scoring import panel, score

    s = SUITE["a10"]
    _, values = panel(s)
    y = truth(s, values)
    rng = np.random.default_rng(0)
    point = {k: y * rng.uniform(0.8, 1.2, size=y.shape) for k in ("auto_ets", "auto_arima")}
    classical = {k: {"point": p.tolist(), "metrics": score(s, values, p)} for k, p in point.items()}
    classical["mstl"] = {"note": "did not finish within the time budget of 1 s"}  # no forecasts
    network = y + rng.normal(scale=y.std() / 5, size=y.shape)
    entry = {"classical": classical, "model": {"median_point": network.tolist()}}
    c = combinations(s, entry)
    assert c["members"] == ["auto_ets", "auto_arima"]  # MSTL did not finish: not averaged
    mean = (point["auto_ets"] + point["auto_arima"]) / 2
    assert c["classical_mean"] == score(s, values, mean)
    assert c["model_and_classical"] == score(s, values, (network + mean) / 2)
    # Absolute error is convex: the mean forecast's MASE is at most the members' mean MASE.
    mase = [classical[k]["metrics"]["mase"] for k in c["members"]]
    assert c["classical_mean"]["mase"] <= np.mean(mase)
    row = markdown({"a10": entry | {"combination": c}}).splitlines()[2]
    best = int(np.argmin(mase))
    label = {"auto_ets": "AutoETS", "auto_arima": "AutoARIMA"}[c["members"][best]]
    expected = c["model_and_classical"]["mase"] / mase[best]
    assert row.startswith(f"| a10 | {label} {mase[best]:.3f} | {c['classical_mean']['mase']:.3f} |")
    assert row.endswith(
        f"| {expected:.2f}x | {c['model_and_classical']['mase'] / c['classical_mean']['mase']:.2f}x |"
    )
    # Without the network's forecasts (an older JSON) there is nothing to combine.
    assert combinations(s, {"classical": classical, "model": {}}) is None


def test_the_pre_test_verdict_is_set_beside_the_test_verdict():
    from benchmarks.accuracy.__main__ import verdict_markdown

    def entry(folds, test_model, test_classical):
        classical = {k: {"metrics": {"mase": v}} for k, v in test_classical.items()}
        classical["mstl"] = {"note": "did not finish within the time budget of 1 s"}
        return {"classical": classical, "model": {"tune_classical": folds, "mase_mean": test_model}}

    results = {
        # Loses to AutoTheta on the folds (1.10 / 1.00) and on the test period (1.2 / 0.8).
        "a10": entry(
            {"model": 1.10, "seasonal_naive": 1.5, "auto_ets": 1.05, "auto_theta": 1.0},
            1.2,
            {"auto_ets": 0.9, "auto_theta": 0.8},
        ),
        # Wins on the folds (0.9 / 1.0), loses on the test period (1.0 / 0.5).
        "h02": entry({"model": 0.9, "auto_ets": 1.0}, 1.0, {"auto_ets": 0.5}),
        "gas": {"classical": {}, "model": {"mase_mean": 1.0}},  # tuned without classical
    }
    rows = verdict_markdown(results).splitlines()[2:]
    assert rows == [
        f"| a10 | 1.100 | AutoTheta 1.000 | {1.10 / 1.0:.2f}x | {1.2 / 0.8:.2f}x | yes |",
        f"| h02 | 0.900 | AutoETS 1.000 | {0.9 / 1.0:.2f}x | {1.0 / 0.5:.2f}x | no |",
    ]


def test_us_employment_keeps_each_series_from_its_first_month_to_the_shared_last():
    s = SUITE["us_employment"]
    frame = s.frame()
    assert frame["series"].nunique() == 147  # the one discontinued in 2017 has no test period
    assert not frame["value"].isna().any()
    ends = frame.groupby("series")["timestamp"].max()
    assert (ends == pd.Timestamp("2019-09-01")).all()
    lengths = frame.groupby("series").size()
    assert lengths.min() == 225 and lengths.max() == 969  # they start between 2001 and 1939
    steps = frame.groupby("series")["timestamp"].diff().dropna().dt.days
    assert steps.between(28, 31).all()  # monthly, no gap left inside a series


class _LastValue:
    """A forecaster whose forecast is the last history value of each series: what it returns
    shows exactly which history `_served` handed it."""

    def __init__(self, horizon: int):
        self.horizon = horizon

    def predict(self, history: pd.DataFrame) -> pd.DataFrame:
        last = history.groupby("series")["value"].last()
        return pd.DataFrame(
            [
                {"series": sid, "step": h, "forecast": v}
                for sid, v in last.items()
                for h in range(1, self.horizon + 1)
            ]
        )


def test_served_forecasts_of_a_panel_of_unequal_lengths_start_at_each_origin():
    from benchmarks.accuracy.model import _served
    from benchmarks.accuracy.series import Series

    p = Protocol(horizon=3, test=9, step=3)
    end = pd.Timestamp("2020-12-01")
    long, short = np.arange(40.0), 100.0 + np.arange(25.0)
    frame = pd.concat(
        [
            pd.DataFrame(
                {
                    "series": sid,
                    "timestamp": pd.date_range(end=end, periods=len(y), freq="MS"),
                    "value": y,
                }
            )
            for sid, y in (("a", long), ("b", short))
        ],
        ignore_index=True,
    )
    s = Series("panel", "test", "MS", 12, p, lambda: frame)
    point, quantiles = _served(_LastValue(p.horizon), s.frame(), s, ["a", "b"])
    assert quantiles is None
    expected = [y[o] for y in (long, short) for o in p.origins(len(y))]
    np.testing.assert_array_equal(point[:, 0, 0], expected)  # series-major, origin by origin
    np.testing.assert_array_equal(truth(s, [long, short])[:, 0, 0], np.array(expected) + 1.0)


def test_a_panel_whose_series_start_apart_holds_out_validation_every_series_can_spare():
    from benchmarks.accuracy.model import default_config

    assert default_config(SUITE["a10"])["split"]["validation"] == 0.2  # one series: a fraction
    s = SUITE["us_employment"]
    youngest = int(s.frame().groupby("series").size().min())  # 225 months, from 2001
    steps = default_config(s)["split"]["validation"]
    assert steps == int(0.2 * s.protocol.fit_rows(youngest)) == 37
    # What is left before it still trains the youngest series on more than a lookback.
    assert s.protocol.fit_rows(youngest) - steps - s.protocol.horizon > 4 * s.season


@pytest.mark.slow
def test_a_config_the_data_cannot_train_is_reported_not_run_and_the_classical_scores_kept(tmp_path):
    # An earlier run's config (--configs-from) whose lookback needs more training rows than
    # a10 has (122 months before its validation and test parts): preparing the data raises
    # DataValidationError before any training. The suite reports the model "not run" with
    # that message, keeps the classical scores and exits normally, as for a refused tune.
    config = default_config(SUITE["a10"])
    config["window"]["lookback"] = 400
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"a10": {"model": {"config": config}}}))
    out, raw = tmp_path / "table.md", tmp_path / "scores.json"
    args = ["--quick", "--series", "a10", "--configs-from", str(earlier)]
    assert main([*args, "--markdown", str(out), "--json", str(raw)]) == 0
    scores = json.loads(raw.read_text())
    refused = scores["a10"]["model"]["refused"]
    assert refused.startswith("No series has the"), refused
    assert "Use a later `split.validation` / `split.test` or a shorter lookback." in refused
    assert np.isfinite(scores["a10"]["classical"]["auto_theta"]["metrics"]["mase"])
    table = out.read_text()
    assert "| not run |" in table and f"- a10, model: not run: {refused[:40]}" in table
