"""Choose a returns config by rolling-origin backtests on the period before its test part.

Run from the repository root::

    TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow .venv/bin/python -m benchmarks.selection \\
        --config configs/eustockmarkets.yaml
    ... -m benchmarks.selection --config configs/eustockmarkets.yaml --quick   # smoke run

The candidates are the config with each of `OPTIONS` (a name -> ``model.target_scaling``,
``model.target_scale_halflife`` and ``calibration.windows``), each trained with every seed
in `SEEDS` (``training.seed``); ``--options`` runs some of them only. Each candidate goes through
`forecast.jobs.backtest.run_backtest` (scaler and model refit per fold, early stopping on the
``validation_steps`` just before each origin) on the rows *before* the test part of the
config's own chronological split: the script computes that split as `prepare` does, sets
``data.end`` to the last timestamp before the test part, and checks that no fold holds a row
from the test part. The test rows are read only to find where that part starts and to check
that the cut leaves every earlier feature as it was; nothing is trained or scored on them.

The folds (`BACKTEST`, fixed before any candidate was scored): 8 origins, each scoring the
next 120 business days (about 5.5 months) and stopping early on the 120 before it; training
expands from the first row. On eustockmarkets the scored spans run from late 1993 to July
1997: the 1994 bond sell-off, the calm of 1995-1996 and the volatile first half of 1997.

Decision rule (`decide`, written down before any candidate was scored; unchanged when the
ewma_rms options were added in a third round and the rolling recalibration options
(`forecast.evaluation.calibration`) in a fourth, benchmarks/RESULTS.md):

1. Calibration across regimes: for each candidate, the mean over folds of
   ``|coverage_80 - 0.80|``; an option's score is the mean of that over its seeds.
2. The option with the lowest score wins. Options within `COVERAGE_TIE` of the lowest are
   tied (any number of them); among tied options the lowest mean pinball loss (over folds,
   then seeds) wins; options within `PINBALL_TIE` (relative) of that are still tied, and
   then the config's current option is kept if it is among them, else the first in
   `OPTIONS` order.
3. The seed of the chosen option is picked by the same two steps over its seeds alone; a
   remaining tie keeps the config's current seed if tied, else the lowest seed.

MLflow runs go to a temporary store that is deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pandas as pd  # noqa: E402

from forecast.config import BacktestConfig, ForecastConfig, load_config  # noqa: E402
from forecast.data import Source, featurize, load_source  # noqa: E402
from forecast.jobs.backtest import fold_splits, run_backtest  # noqa: E402
from pipelines.split import split_by_time  # noqa: E402

# name -> (model.target_scaling, model.target_scale_halflife, calibration.windows), in
# tie-break order. Round 4 added the rolling recalibration over the last 60 (a quarter of
# business days) and 120 (half a year, one backtest fold) forecasts of each series.
OPTIONS: dict[str, tuple[str, int | None, int]] = {
    "none": ("none", None, 0),
    "window_rms": ("window_rms", None, 0),
    "ewma_rms_hl5": ("ewma_rms", 5, 0),
    "ewma_rms_hl10": ("ewma_rms", 10, 0),
    "ewma_rms_hl20": ("ewma_rms", 20, 0),
    "recalibrate_60": ("none", None, 60),
    "recalibrate_120": ("none", None, 120),
}
SEEDS = (0, 1, 2)
BACKTEST = BacktestConfig(folds=8, test_steps=120, validation_steps=120, min_train=480)
QUICK_BACKTEST = BacktestConfig(folds=2, test_steps=120, validation_steps=120, min_train=480)
QUICK_OVERRIDES = ("training.epochs=2",)
NOMINAL = 0.80  # the 10-90% interval
COVERAGE_TIE = 0.01  # of mean |coverage_80 - 0.80|
PINBALL_TIE = 0.005  # relative, of mean pinball loss


@dataclass(frozen=True)
class PreTest:
    """The config cut to the rows before its test part, and where that part starts."""

    config: ForecastConfig
    source: Source
    first_test: pd.Timestamp  # first timestamp of the config's own test part
    last_kept: pd.Timestamp  # the new `data.end`
    folds: pd.DataFrame  # fold x (train/validation/test start and end)


def pre_test(config: ForecastConfig, backtest: BacktestConfig) -> PreTest:
    """Cut `config` to the rows before its test part; check that no fold reaches it.

    Also checks that the cut leaves every kept row's features as they are on the whole data.
    """
    source = load_source(config.data)
    frame, schema, _ = featurize(
        source.frame, source.schema, source.policy, config.data.features, source.calendar
    )
    split = split_by_time(
        frame,
        schema,
        validation=config.split.validation,
        test=config.split.test,
        horizon=config.window.horizon,
    )
    first_test = pd.Timestamp(split.times[split.ranges.test.start])
    last_kept = pd.Timestamp(split.times[split.ranges.test.start - 1])
    cut = replace(config, data=replace(config.data, end=last_kept.isoformat()), backtest=backtest)
    cut_source = load_source(cut.data)
    cut_frame, cut_schema, _ = featurize(
        cut_source.frame,
        cut_source.schema,
        cut_source.policy,
        cut.data.features,
        cut_source.calendar,
    )
    before = frame[frame[schema.time_col] < first_test].reset_index(drop=True)
    if not before.equals(cut_frame.reset_index(drop=True)):
        raise RuntimeError("Cutting at `data.end` changed the features of earlier rows.")
    rows = []
    for k, fold in enumerate(fold_splits(cut_frame, cut_schema, cut)):
        seen = pd.Timestamp(fold.frame[cut_schema.time_col].max())
        if seen >= first_test:
            raise RuntimeError(f"Fold {k} holds a row at {seen}, inside the test part.")
        spans = fold.describe()
        rows.append({f"{p}_{e}": spans[p][e][:10] for p in spans for e in ("start", "end")})
    return PreTest(cut, cut_source, first_test, last_kept, pd.DataFrame(rows))


def option_name(config: ForecastConfig) -> str:
    """The `OPTIONS` name of a config's setting (a new name if it has none)."""
    model = config.model
    setting = (model.target_scaling, model.target_scale_halflife, config.calibration.windows)
    names = [name for name, value in OPTIONS.items() if value == setting]
    return names[0] if names else "{}_hl{}_k{}".format(*setting)


def candidate(config: ForecastConfig, option: str, seed: int) -> ForecastConfig:
    """`config` with the setting of `OPTIONS[option]` and ``training.seed`` set."""
    scaling, halflife, windows = OPTIONS[option]
    return replace(
        config,
        model=replace(config.model, target_scaling=scaling, target_scale_halflife=halflife),
        calibration=replace(config.calibration, windows=windows),
        training=replace(config.training, seed=seed),
    )


def run_candidates(cut: PreTest, options: list[str], seeds: tuple[int, ...]) -> pd.DataFrame:
    """Backtest every (option, seed): tidy rows option, seed, fold, origin, model, metric, value."""
    frames = []
    with tempfile.TemporaryDirectory() as store, contextlib.chdir(store):
        # MLflow writes artifacts under ./mlruns even with a SQLite store: keep both here.
        tracking = replace(cut.config.tracking, tracking_uri=f"sqlite:///{store}/mlflow.db")
        for option in options:
            for seed in seeds:
                config = replace(candidate(cut.config, option, seed), tracking=tracking)
                t0 = time.perf_counter()
                result = run_backtest(config, source=cut.source)
                frames.append(result.folds.assign(option=option, seed=seed))
                print(f"  {option}, seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    out = pd.concat(frames, ignore_index=True)
    return out[["option", "seed", "fold", "origin", "model", "metric", "value"]]


def fold_table(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Fold x (option, seed) for one model metric."""
    rows = scores[(scores["model"] == "model") & (scores["metric"] == metric)]
    return rows.pivot_table(index="fold", columns=["option", "seed"], values="value")


def per_candidate(scores: pd.DataFrame) -> pd.DataFrame:
    """(option, seed) x the rule's measures, averaged over folds."""
    cov, pin = fold_table(scores, "coverage_80"), fold_table(scores, "pinball_mean")
    return pd.DataFrame(
        {
            "calibration": (cov - NOMINAL).abs().mean(),
            "pinball": pin.mean(),
            "coverage_mean": cov.mean(),
            "coverage_min": cov.min(),
            "coverage_max": cov.max(),
            "folds_in_75_85": ((cov >= 0.75) & (cov <= 0.85)).sum(),
        }
    )


def _pick(table: pd.DataFrame, current: object) -> tuple[object, list[str]]:
    """Lowest calibration, then lowest pinball, with the rule's tolerances and tie-breaks.

    `table` rows are the candidates in tie-break order; a tie still left after both steps
    keeps `current` if it is tied, else the first tied row.
    """
    best = table["calibration"].min()
    tied = table[table["calibration"] <= best + COVERAGE_TIE]
    if len(tied) == 1:
        return tied.index[0], [f"lowest calibration error ({best:.4f}), none within 0.01"]
    why = [f"calibration within {COVERAGE_TIE} of {best:.4f}: {list(tied.index)}"]
    low = tied["pinball"].min()
    still = tied[tied["pinball"] <= low * (1 + PINBALL_TIE)]
    if len(still) == 1:
        return still.index[0], [*why, f"lowest pinball loss ({low:.6f}) among them"]
    why.append(f"pinball within {PINBALL_TIE:.1%} of {low:.6f}: {list(still.index)}")
    choice = current if current in still.index else still.index[0]
    return choice, [*why, f"still tied: {choice!r} (the config's own if tied, else the first)"]


@dataclass(frozen=True)
class Decision:
    option: str
    seed: int
    reasons: list[str]


def decide(scores: pd.DataFrame, *, current_option: str, current_seed: int) -> Decision:
    """Apply the rule in the module docstring to backtest scores of every (option, seed)."""
    each = per_candidate(scores)
    options = each.groupby(level="option", sort=False)[["calibration", "pinball"]].mean()
    order = [o for o in OPTIONS if o in options.index] + [
        o for o in options.index if o not in OPTIONS
    ]
    option, why_option = _pick(options.loc[order], current_option)
    seed, why_seed = _pick(each.loc[option].sort_index(), current_seed)
    return Decision(
        str(option),
        int(seed),
        [f"option: {w}" for w in why_option] + [f"seed: {w}" for w in why_seed],
    )


def report(cut: PreTest, scores: pd.DataFrame, decision: Decision) -> str:
    """Fold spans, per-fold coverage and pinball per candidate, the summaries, the decision."""
    folds = cut.folds.copy()
    vol = scores[(scores["model"] == "random_walk") & (scores["metric"] == "mae")]
    folds["random_walk_mae"] = vol.groupby("fold")["value"].first()
    each = per_candidate(scores)
    options = each.groupby(level="option", sort=False)[["calibration", "pinball"]].mean()
    each["pinball"] *= 1e3
    options["pinball"] *= 1e3
    pin = fold_table(scores, "pinball_mean") * 1e3
    return "\n".join(
        [
            f"test part starts {cut.first_test.date()}; data.end = {cut.last_kept.date()}; "
            f"no fold holds a row on or after {cut.first_test.date()}",
            "",
            "-- folds (random_walk_mae: MAE of a zero-return forecast, the fold's volatility) --",
            folds.to_string(float_format=lambda x: f"{x:.5f}"),
            "",
            "-- coverage_80 per fold (option, seed) --",
            fold_table(scores, "coverage_80").to_string(float_format=lambda x: f"{x:.3f}"),
            "",
            "-- pinball_mean x 1000 per fold (option, seed) --",
            pin.to_string(float_format=lambda x: f"{x:.4f}"),
            "",
            "-- per candidate (calibration = mean over folds of |coverage_80 - 0.80|; "
            "pinball x 1000, mean over folds) --",
            each.to_string(float_format=lambda x: f"{x:.4f}"),
            "",
            "-- per option (mean over seeds) --",
            options.to_string(float_format=lambda x: f"{x:.4f}"),
            "",
            f"decision: {decision.option} {_setting(decision.option)}, "
            f"training.seed={decision.seed}",
            *(f"  {r}" for r in decision.reasons),
        ]
    )


def _setting(option: str) -> str:
    scaling, halflife, windows = OPTIONS.get(option, (option, None, 0))
    return (
        f"(target_scaling={scaling}, target_scale_halflife={halflife}, "
        f"calibration.windows={windows})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/eustockmarkets.yaml", help="config file")
    parser.add_argument("--quick", action="store_true", help="2 folds, 2 epochs, seed 0")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="key.sub=value override"
    )
    parser.add_argument("--csv", help="also write every fold score here as tidy rows")
    parser.add_argument(
        "--options",
        nargs="+",
        choices=list(OPTIONS),
        default=list(OPTIONS),
        help="candidates to run (default: all, in OPTIONS order)",
    )
    args = parser.parse_args(argv)
    overrides = tuple(args.overrides) + (QUICK_OVERRIDES if args.quick else ())
    config = load_config(args.config, overrides)
    backtest = QUICK_BACKTEST if args.quick else BACKTEST
    seeds = (0,) if args.quick else SEEDS
    options = [o for o in OPTIONS if o in args.options]
    print(f"selection: {args.config}, options {options}, seeds {list(seeds)}, {backtest}")
    print(f"load average at start: {os.getloadavg()[0]:.2f} (CPUs: {os.cpu_count()})")
    start = time.perf_counter()
    cut = pre_test(config, backtest)
    scores = run_candidates(cut, options, seeds)
    decision = decide(scores, current_option=option_name(config), current_seed=config.training.seed)
    print(report(cut, scores, decision))
    print(
        f"total {time.perf_counter() - start:.0f} s; load average at end: {os.getloadavg()[0]:.2f}"
    )
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        scores.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
