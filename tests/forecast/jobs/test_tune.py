"""`forecast tune`: seeded Optuna search on pre-test backtests, nested MLflow runs, chosen YAML."""

from __future__ import annotations

from dataclasses import replace

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from forecast.cli import main
from forecast.config import ForecastConfig, load_config
from forecast.jobs.auto import train_auto
from forecast.jobs.train import train_job
from forecast.jobs.tune import (
    CALIBRATION_WINDOWS,
    SPACE,
    STARTING_POINTS,
    pre_test,
    search_space,
    selection_caveat,
    tune_job,
)
from pipelines import datasets


def _csv(path, scale_test_by: float = 1.0):
    """220 business days of the DAX as a user's CSV; optionally distort the test part."""
    frame = datasets.load("eustockmarkets").frame
    dax = frame[frame["series"] == "DAX"].tail(220)[["timestamp", "value"]].reset_index(drop=True)
    test_rows = dax.index >= len(dax) - 44  # split.test: 0.2 of 220 steps
    dax.loc[test_rows, "value"] *= scale_test_by
    dax.to_csv(path, index=False)
    return path


def _config(csv, name="tuned") -> dict:
    # No model section: tune chooses it.
    return {
        "name": name,
        "data": {"path": str(csv), "schema": {"time_col": "timestamp", "targets": ["value"]}},
        "window": {"lookback": 10, "horizon": 3},
        "split": {"validation": 0.2, "test": 0.2},
        "training": {"epochs": 1, "verbose": 0},
        "evaluation": {"season": 5, "baselines": ["naive"]},
        "backtest": {"folds": 1, "test_steps": 6, "validation_steps": 6},
    }


@pytest.mark.slow
def test_tune_is_seeded_reads_no_test_row_and_writes_a_trainable_config(tmp_path):
    raw = _config(_csv(tmp_path / "d0.csv"))
    raw["model"] = {"quantiles": [0.1, 0.5, 0.9]}  # tune also chooses its recalibration
    raw["backtest"] |= {"test_steps": 12, "step": 12}
    # The chosen trial is compared with these on its folds; every window (step 1).
    raw["evaluation"] |= {"classical": ["auto_ets", "auto_theta"], "classical_step": 1}
    config = ForecastConfig.from_dict(raw)
    cut = pre_test(config)
    assert pd.to_datetime(cut.source.frame["timestamp"]).max() < cut.first_test
    # A narrow space keeps the test short: the cheapest cell and width.
    narrow = {"cell": ["lstm"], "units": [16], "head_layers": ["none"]}
    # One trial: TPE samples at random for its first 10 (seeded), so a second adds nothing.
    a = tune_job(config, output=tmp_path / "chosen0.yaml", trials=1, seed=7, space=narrow)
    # The same search as `model: auto` in a config whose test part is distorted:
    # `forecast train` tunes on the pre-test rows first, then trains the chosen config.
    d = {**_config(_csv(tmp_path / "d1.csv", 2.0)), "backtest": raw["backtest"]}
    d["model"] = {"auto": True, "quantiles": [0.1, 0.5, 0.9]}  # served: in range
    d["tuning"] = {"trials": 1, "seed": 7, "space": narrow}
    d["evaluation"] = {**d["evaluation"], "classical": []}
    outcome = train_auto(ForecastConfig.from_dict(d), register=False)
    b = outcome.tuned
    # Same seed, same proposals and scores, whatever the test rows hold: they are never read.
    assert a.trials.drop(columns="value").equals(b.trials.drop(columns="value"))
    np.testing.assert_allclose(a.trials["value"], b.trials["value"], rtol=1e-6)
    assert len(a.trials) == 1 and np.isfinite(a.trials["value"]).all()
    assert a.best_value == a.trials["value"].min()
    assert set(SPACE) <= set(a.trials.columns)
    # The first trial is the first starting point, within the narrowed space (its units of
    # 32 are not offered there, so the sampler drew them).
    first = a.trials.iloc[0]
    for key in ("target_centre", "residual", "loss", "learning_rate", "cell"):
        assert first[key] == STARTING_POINTS[0][key], key
    assert first["units"] == 16 and first["lookback_seasons"] == 2
    # Each trial is a nested run of the tune run, with its mean and per-fold MASE.
    children = mlflow.search_runs(
        experiment_names=["tuned"], filter_string=f"tags.mlflow.parentRunId = '{a.run_id}'"
    )
    assert len(children) == 1
    np.testing.assert_allclose(
        sorted(children["metrics.mase"]), sorted(a.trials["value"]), rtol=1e-9
    )
    assert children["metrics.fold0_mase"].notna().all()
    # The chosen YAML loads as a config on the whole data with the winning settings.
    chosen = load_config(a.output)
    best = a.trials.loc[a.trials["value"].idxmin()]
    assert chosen.window.lookback == 5 * int(best["lookback_seasons"])
    assert chosen.model.cell == best["cell"] and chosen.optimizer.loss == best["loss"]
    assert chosen.data.end is None and chosen.data.path == str(tmp_path / "d0.csv")
    assert a.output.read_text().startswith("# Chosen by `forecast tune`")
    assert chosen.model.quantiles == (0.1, 0.5, 0.9)
    # Each K was scored on the same fold models; the lowest mean pinball loss won.
    columns = [f"pinball_mean_k{k}" for k in CALIBRATION_WINDOWS]
    scores = a.trials[columns].iloc[0]
    assert np.isfinite(scores).all() and scores.nunique() > 1  # K moves the intervals
    k = min(CALIBRATION_WINDOWS, key=lambda w: (scores[f"pinball_mean_k{w}"], w))
    assert chosen.calibration.windows == k
    assert f"# calibration.windows: {k}, the lowest mean pinball_mean" in a.output.read_text()
    # The chosen trial's fold models against seasonal naive and the classical models, on
    # the same windows: with every window scored, the model's row is the objective.
    assert list(a.classical.index) == ["model", "seasonal_naive", "auto_ets", "auto_theta"]
    model = a.classical.loc["model", "mase"]
    np.testing.assert_allclose(model, a.best_value, rtol=1e-9)
    # ...and its quantiles are the chosen K's, the intervals the chosen config serves.
    pinball = a.classical.loc["model", "pinball_mean"]
    np.testing.assert_allclose(pinball, scores[f"pinball_mean_k{k}"], rtol=1e-9)
    n = raw["backtest"]["test_steps"] - raw["window"]["horizon"] + 1  # windows in the fold
    assert a.verdict.startswith(
        f"On the 1 pre-test backtest fold ({n} windows with origins every 1"
    )
    for name, label in (("auto_ets", "AutoETS"), ("auto_theta", "AutoTheta")):
        other = a.classical.loc[name, "mase"]
        said = "beats" if model < other else "does NOT beat"
        assert f"{said} {label} (MASE {model:.3f} vs {other:.3f})" in a.verdict
    header = " ".join(
        line[2:] for line in a.output.read_text().splitlines() if line.startswith("# ")
    )
    assert a.verdict in header  # the chosen YAML says it too, wrapped over comment lines
    assert "optimistic" not in a.verdict  # one trial: the folds chose nothing
    parent = mlflow.get_run(a.run_id).data
    assert parent.metrics["tune_classical_mase"] == pytest.approx(model, rel=1e-12)
    assert parent.metrics["auto_ets_tune_classical_mase"] == a.classical.loc["auto_ets", "mase"]
    assert mlflow.artifacts.load_text(f"runs:/{a.run_id}/tune_verdict.txt") == a.verdict
    assert b.classical is None and b.verdict == ""  # `evaluation.classical: []`: none run
    # `model: auto` trained the tune job's choice and logged it to the train run.
    chosen_b = outcome.config
    assert not chosen_b.auto and chosen_b == b.config and chosen_b.model == chosen.model
    run = mlflow.get_run(outcome.run_id)
    assert run.data.tags["forecast.tune_run"] == b.run_id
    assert run.data.params["model.cell"] == chosen_b.model.cell
    logged = mlflow.artifacts.load_text(f"runs:/{outcome.run_id}/chosen_config.yaml")
    assert ForecastConfig.from_dict(yaml.safe_load(logged)) == chosen_b
    assert outcome.fitted.model.spec == chosen_b.model
    assert (
        f"model: auto chose it by `forecast tune` (run {b.run_id}, 1 trial, mean"
        in outcome.report()
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trials", "0"], "--trials must be an integer >= 1. Received: 0"),
        (["--timeout", "-5"], "--timeout must be a number of seconds > 0. Received: -5.0"),
        (["--folds", "0"], "--folds must be >= 1. Received: 0"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(tmp_path, capsys, args, message):
    csv = _csv(tmp_path / "d.csv")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_config(csv)))
    out = tmp_path / "chosen.yaml"
    code = main(["tune", str(tmp_path / "c.yaml"), "--output", str(out), *args])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"forecast: error: {message}"
    assert not out.exists()


def test_output_must_be_a_new_yaml_file(tmp_path, capsys):
    csv = _csv(tmp_path / "d.csv")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(_config(csv)))
    assert main(["tune", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "x.csv")]) == 2
    assert "--output must be a .yaml or .yml file" in capsys.readouterr().err
    (tmp_path / "old.yaml").write_text("keep")
    assert main(["tune", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "old.yaml")]) == 2
    assert "exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert (tmp_path / "old.yaml").read_text() == "keep"


def test_a_space_outside_the_documented_one_is_refused(tmp_path):
    config = ForecastConfig.from_dict(_config(_csv(tmp_path / "d.csv")))
    with pytest.raises(ValueError, match=r"Received: cell=\['transformer'\]; allowed: \['lstm'"):
        tune_job(config, output=tmp_path / "c.yaml", space={"cell": ["transformer"]})
    with pytest.raises(ValueError, match=r"Received: epochs=\[3\]"):
        tune_job(config, output=tmp_path / "c.yaml", space={"epochs": [3]})


def test_an_auto_config_is_tuned_by_train_auto_only_and_never_resumed(tmp_path):
    config = ForecastConfig.from_dict({**_config(_csv(tmp_path / "d.csv")), "model": "auto"})
    with pytest.raises(ValueError, match=r"`model: auto` chooses the model with `forecast tune`"):
        train_job(config)
    with pytest.raises(ValueError, match=r"resumed with the config it chose: download its"):
        train_auto(config, resume="0123abcd")


def test_pre_test_cut_ends_just_before_the_test_part(tmp_path):
    config = ForecastConfig.from_dict(_config(_csv(tmp_path / "d.csv")))
    cut = pre_test(config)
    times = pd.read_csv(tmp_path / "d.csv", parse_dates=["timestamp"])["timestamp"]
    assert cut.first_test == times.iloc[len(times) - 44]
    assert pd.to_datetime(cut.source.frame["timestamp"]).max() == times.iloc[len(times) - 45]
    assert cut.season == 5 and cut.positive and cut.regular
    # MSTL is offered where the data have a season, on a regular grid only.
    assert search_space(cut)["deseasonalize"] == ("none", "mstl")
    assert search_space(replace(cut, season=1))["deseasonalize"] == ("none",)
    assert search_space(replace(cut, regular=False))["deseasonalize"] == ("none",)


@pytest.mark.parametrize("season_from", ["config", "frequency"])
def test_lookbacks_the_config_refuses_are_not_offered(tmp_path, season_from):
    from forecast.data import featurize
    from forecast.jobs.tune import _lookbacks, starting_points

    raw = _config(_csv(tmp_path / "d.csv"))
    if season_from == "frequency":  # business days: a season of 5, not checked at load
        del raw["evaluation"]["season"]
    plain = pre_test(ForecastConfig.from_dict(raw))
    raw["evaluation"]["baselines"] = ["naive", "seasonal_naive"]  # needs lookback > season
    strict = pre_test(ForecastConfig.from_dict(raw))
    lookbacks = {}
    for name, cut in (("plain", plain), ("strict", strict)):
        src = cut.source
        features = cut.config.data.features
        frame, schema, _ = featurize(src.frame, src.schema, src.policy, features, src.calendar)
        lookbacks[name] = _lookbacks(cut, frame, schema)
    assert lookbacks["plain"][0] == 5 and lookbacks["strict"] == lookbacks["plain"][1:]
    assert {p["lookback_seasons"] for p in starting_points(SPACE, lookbacks["strict"], strict)} == {
        2
    }


def test_only_an_unset_recalibration_of_a_quantile_head_is_chosen(tmp_path):
    from forecast.jobs.tune import CALIBRATION_WINDOWS, calibration_choices, chosen_calibration

    raw = _config(tmp_path / "d.csv")
    assert calibration_choices(ForecastConfig.from_dict(raw)) == ()  # a point head
    raw["model"] = {"quantiles": [0.1, 0.5, 0.9]}
    config = ForecastConfig.from_dict(raw)
    assert calibration_choices(config) == CALIBRATION_WINDOWS
    fixed = replace(config, calibration=replace(config.calibration, windows=60))
    assert calibration_choices(fixed) == ()  # the config's own K is kept
    assert chosen_calibration({0: 0.3, 60: 0.2, 120: 0.2, 250: 0.25}) == 60  # ties: smaller K
    assert chosen_calibration({}) == 0


def test_a_fold_verdict_after_a_search_says_the_folds_flatter_the_model():
    assert selection_caveat(1) == ""  # nothing was chosen on the folds
    caveat = selection_caveat(8)
    assert caveat.startswith(" Those folds also chose the model among 8 trials, so its score")
    assert "a loss there is a loss, a win is not a promise" in caveat


def test_fold_means_leave_out_a_classical_model_that_missed_a_fold():
    from forecast.jobs.backtest import classical_means

    # MSTL needs two seasons of training rows: skipped on the short first fold only.
    o, s = "overall", "series"
    rows = [(0, o, "all", "model", "mase", 1.0), (1, o, "all", "model", "mase", 3.0)]
    rows += [(0, o, "all", "auto_ets", "mase", 2.0), (1, o, "all", "auto_ets", "mase", 2.5)]
    rows += [(1, o, "all", "mstl", "mase", 0.5), (0, s, "DAX", "model", "mase", 9.0)]
    rows += [(1, s, "all", "model", "mase", 7.0)]  # a series whose id is "all"
    tidy = pd.DataFrame(rows, columns=["fold", "scope", "series", "model", "metric", "value"])
    means = classical_means(tidy).set_index("model")["value"]
    assert means.to_dict() == {"auto_ets": 2.25, "model": 2.0}  # per-series rows not mixed in
