"""Accuracy of the shipped configs on real data: the model against every baseline, per target.

Run from the repository root::

    TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow .venv/bin/python -m benchmarks.accuracy
    ... -m benchmarks.accuracy --config configs/sunspots.yaml   # one config
    ... -m benchmarks.accuracy --quick                          # 2 epochs each: a smoke run
    ... -m benchmarks.accuracy --set training.seed=1            # overrides, as in the CLI

Each config is prepared and trained exactly as `forecast train` does (`prepare` then
`train_model`, with early stopping on the validation part), without MLflow. The model and
the baselines (naive, seasonal naive, drift, moving average, ridge; fitted on training
windows only) are then scored on the validation and the test windows in original units.
Hyperparameters were chosen by looking at validation scores only; the test part is scored
once, here, and reported as it comes.

The issue's targets, on the test part:

- elecdemand: model MASE at most 0.8 x the seasonal-naive (daily season) MASE;
- sunspots: model MASE below the naive MASE;
- sp500, eustockmarkets: the 10-90% interval covers 75-85% of outcomes; the point
  forecast's MASE against the naive baseline is reported as it is.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pandas as pd  # noqa: E402

from forecast.config import ForecastConfig, load_config  # noqa: E402
from forecast.data import Prepared, prepare  # noqa: E402
from forecast.evaluation.scoring import baseline_forecasts, model_forecasts, score, wide  # noqa: E402
from forecast.jobs.train import verdict  # noqa: E402
from forecast.training.fitting import train_model  # noqa: E402

DEFAULT_CONFIGS = (
    "configs/sp500.yaml",
    "configs/eustockmarkets.yaml",
    "configs/elecdemand.yaml",
    "configs/sunspots.yaml",
)
QUICK_OVERRIDES = ("training.epochs=2",)
COLUMNS = (
    "mase",
    "mae",
    "rmse",
    "smape",
    "coverage_80",
    "width_80",
    "pinball_mean",
    "directional_accuracy",
)
PARTS = ("validation", "test")


@dataclass(frozen=True)
class Target:
    """One of the issue's accuracy targets: what it asks, and how to read it off a table."""

    text: str
    measure: Callable[[pd.DataFrame], tuple[str, bool | None]]


def _mase_ratio(baseline: str, limit: float) -> Callable[[pd.DataFrame], tuple[str, bool]]:
    def measure(table: pd.DataFrame) -> tuple[str, bool]:
        ratio = table.loc["model", "mase"] / table.loc[baseline, "mase"]
        return f"model MASE / {baseline} MASE = {ratio:.3f}", bool(ratio <= limit)

    return measure


def _coverage(low: float, high: float) -> Callable[[pd.DataFrame], tuple[str, bool]]:
    def measure(table: pd.DataFrame) -> tuple[str, bool]:
        if "coverage_80" not in table.columns:
            return "no coverage_80: the model has no 0.1/0.9 quantiles", False
        cov = table.loc["model", "coverage_80"]
        ratio = table.loc["model", "mase"] / table.loc["naive", "mase"]
        text = f"coverage_80 = {cov:.3f}; point MASE / naive MASE = {ratio:.3f} (reported only)"
        return text, bool(low <= cov <= high)

    return measure


def _beats(baseline: str) -> Callable[[pd.DataFrame], tuple[str, bool]]:
    def measure(table: pd.DataFrame) -> tuple[str, bool]:
        model, other = table.loc["model", "mase"], table.loc[baseline, "mase"]
        ratio = model / other
        return f"model MASE {model:.3f} vs {baseline} {other:.3f} (ratio {ratio:.3f})", bool(
            model < other
        )

    return measure


TARGETS: dict[str, Target] = {
    "elecdemand": Target(
        "model MASE <= 0.8 x seasonal-naive MASE", _mase_ratio("seasonal_naive", 0.8)
    ),
    "sunspots": Target("model MASE < naive MASE", _beats("naive")),
    "sp500": Target("10-90% interval covers 75-85% of outcomes", _coverage(0.75, 0.85)),
    "eustockmarkets": Target("10-90% interval covers 75-85% of outcomes", _coverage(0.75, 0.85)),
}


@dataclass(frozen=True)
class Result:
    """Scores of one config: model x metric per part, and what training cost."""

    config: ForecastConfig
    path: str
    tables: dict[str, pd.DataFrame]
    returns: bool
    prepare_s: float
    train_s: float
    train_cpu_s: float
    epochs_run: int
    best_epoch: int
    n_windows: dict[str, int]


def run_config(path: str, overrides: tuple[str, ...] = ()) -> Result:
    """Prepare, train and score one config on validation and test."""
    config = load_config(path, overrides)
    t0 = time.perf_counter()
    prepared = prepare(config)
    t1, c1 = time.perf_counter(), time.process_time()
    fitted = train_model(config, prepared)
    t2, c2 = time.perf_counter(), time.process_time()
    returns = _is_returns(prepared)
    tables = {}
    for part in PARTS:
        forecasts = model_forecasts(
            fitted.model, prepared, part, calibration=config.calibration.windows
        )
        base = baseline_forecasts(prepared, part, config.evaluation.baselines)
        tables[part] = wide(score(prepared, part, forecasts, base, directional=returns))
    return Result(
        config=config,
        path=path,
        tables=tables,
        returns=returns,
        prepare_s=t1 - t0,
        train_s=t2 - t1,
        train_cpu_s=c2 - c1,
        epochs_run=fitted.result.epochs_run,
        best_epoch=fitted.result.best_epoch + 1,
        n_windows={k: len(w) for k, w in prepared.windows.items()},
    )


def _is_returns(prepared: Prepared) -> bool:
    return any("return" in t for t in prepared.schema.targets)


def report(result: Result) -> str:
    """The per-dataset text block: setup, one table per part, the target and the verdict."""
    cfg = result.config
    lines = [
        f"=== {cfg.name} ({result.path}) ===",
        f"windows: {result.n_windows}; horizon {cfg.window.horizon}, lookback "
        f"{cfg.window.lookback}"
        + (f" (min {cfg.window.min_lookback})" if cfg.window.min_lookback else "")
        + f"; model {cfg.model.cell} {list(cfg.model.units)} {cfg.model.mode}"
        + (" bidirectional" if cfg.model.bidirectional else "")
        + (f" quantiles {list(cfg.model.quantiles)}" if cfg.model.quantiles else ""),
        f"training: {result.train_s:.1f} s wall, {result.train_cpu_s:.1f} s CPU, "
        f"{result.epochs_run} epochs (best {result.best_epoch}); prepare {result.prepare_s:.1f} s",
    ]
    for part in PARTS:
        table = result.tables[part]
        cols = [c for c in COLUMNS if c in table.columns]
        lines += ["", f"-- {part} --", table[cols].to_string(float_format=_fmt)]
    target = TARGETS.get(cfg.data.dataset or "")
    if target is not None:
        for part in PARTS:
            text, ok = target.measure(result.tables[part])
            status = "MET" if ok else "MISSED"
            lines.append(f"target ({part}): {target.text}: {text} -> {status}")
    lines.append(f"verdict (test): {verdict(result.tables['test'], returns=result.returns)}")
    return "\n".join(lines)


def summary(results: list[Result]) -> pd.DataFrame:
    """One row per config: training time, model and naive MASE on test, the target."""
    rows = []
    for r in results:
        test = r.tables["test"]
        target = TARGETS.get(r.config.data.dataset or "")
        text, ok = target.measure(test) if target else ("", None)
        rows.append(
            {
                "config": r.config.name,
                "train_s": round(r.train_s, 1),
                "val_mase": round(float(r.tables["validation"].loc["model", "mase"]), 3),
                "test_mase": round(float(test.loc["model", "mase"]), 3),
                "naive": round(float(test.loc["naive", "mase"]), 3),
                "seasonal_naive": round(float(test.loc["seasonal_naive", "mase"]), 3),
                "best_baseline": test["mase"].drop("model").idxmin(),
                "target (test)": text,
                "met": {True: "yes", False: "NO", None: "-"}[ok],
            }
        )
    return pd.DataFrame(rows).set_index("config")


def tidy(results: list[Result]) -> pd.DataFrame:
    """Every score as rows (config, part, model, metric, value)."""
    frames = []
    for r in results:
        for part, table in r.tables.items():
            long = table.reset_index().melt(id_vars="model", var_name="metric")
            frames.append(long.assign(config=r.config.name, part=part))
    return pd.concat(frames, ignore_index=True)[["config", "part", "model", "metric", "value"]]


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e-2 else f"{x:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="config file (repeatable)")
    parser.add_argument("--quick", action="store_true", help="2 epochs per config")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="key.sub=value override"
    )
    parser.add_argument("--csv", help="also write every score here as tidy rows")
    args = parser.parse_args(argv)
    paths = args.config or list(DEFAULT_CONFIGS)
    overrides = tuple(args.overrides) + (QUICK_OVERRIDES if args.quick else ())
    print(f"accuracy benchmark: {len(paths)} config(s), overrides {list(overrides)}")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (CPUs: {os.cpu_count()})")
    start = time.perf_counter()
    results = []
    for path in paths:
        result = run_config(path, overrides)
        print(report(result), end="\n\n", flush=True)
        results.append(result)
    print("=== summary (test part) ===")
    print(summary(results).to_string())
    print(
        f"total {time.perf_counter() - start:.0f} s; load average at end: {os.getloadavg()[0]:.2f}"
    )
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        tidy(results).to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
