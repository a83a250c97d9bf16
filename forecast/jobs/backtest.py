"""Rolling-origin backtests: refit the scaler and the model per fold, score every fold."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from forecast.config import ForecastConfig
from forecast.data import Source, featurize, load_source, prepare_split
from forecast.evaluation.comparison import OVERALL, compare_classical
from forecast.evaluation.scoring import is_returns, score_part
from forecast.tracking.runs import (
    log_metrics,
    log_table_csv,
    resolve_tracking_uri,
    table_metric_names,
    tracked_run,
)
from forecast.training.distribute import make_strategy
from forecast.training.fitting import train_model
from pipelines.errors import ConfigError
from pipelines.split import FrameSplit, SplitRanges, rolling_origins

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BacktestResult:
    """Per-fold scores and their summary."""

    run_id: str | None
    folds: pd.DataFrame  # tidy: fold, origin, model, metric, value
    summary: pd.DataFrame  # model x metric: mean and std over folds
    # tidy: fold, origin, series, model, metric, value; the model and the classical
    # baselines on the same windows of each fold (None when `evaluation.classical` is empty)
    classical: pd.DataFrame | None = None
    classical_skipped: tuple[str, ...] = ()  # "<model>: <why>", once per model and reason
    returns: bool = False  # the targets are returns (the verdict adds the random walk)

    def table(self, stat: str = "mean") -> pd.DataFrame:
        """Model x metric for one statistic (mean or std) over folds."""
        return self.summary.xs(stat, axis=1, level=1)

    def classical_table(self) -> pd.DataFrame | None:
        """Model x metric, mean over folds, against the classical baselines; a classical
        model that did not run in every fold is left out (its windows would differ)."""
        if self.classical is None:
            return None
        return classical_means(self.classical).pivot(
            index="model", columns="metric", values="value"
        )

    def report(self) -> str:
        """What the CLI prints: mean scores over folds, the classical comparison, verdict."""
        from forecast.jobs.train import classical_text, classical_verdict, verdict

        n = self.folds["fold"].nunique()
        mean = self.table("mean")
        lines = [
            f"Backtest over {n} folds, run {self.run_id}:",
            mean.to_string(float_format=lambda v: f"{v:.4f}"),
        ]
        said = verdict(mean, returns=self.returns)
        table = self.classical_table()
        if table is not None:
            where = "each fold's test windows with classical origins, mean over folds"
            lines += [f"Against the classical baselines on {where}:", classical_text(table)]
            skipped = dict(s.split(": ", 1) for s in self.classical_skipped)
            extra, lost = classical_verdict(table, where, skipped)
            said += " " + extra + (f" Not beaten (classical): {', '.join(lost)}." if lost else "")
        return "\n".join([*lines, said])


def classical_means(classical: pd.DataFrame) -> pd.DataFrame:
    """Mean over folds of each (model, metric) over every series (``scope == "overall"``),
    for the models scored on every fold only: a mean over fewer folds is not comparable."""
    overall = classical[classical["scope"] == OVERALL]
    n_folds = classical["fold"].nunique()
    everywhere = overall.groupby("model")["fold"].nunique() == n_folds
    kept = overall[overall["model"].isin(everywhere[everywhere].index)]
    return kept.groupby(["model", "metric"], as_index=False)["value"].mean()


def fold_splits(frame: pd.DataFrame, schema: Any, config: ForecastConfig) -> list[FrameSplit]:
    """Train / validation / test parts for each origin, oldest first."""
    bt, spec = config.backtest, config.window
    times = np.unique(frame[schema.time_col].to_numpy())
    n = len(times)
    test_steps = bt.test_steps or 4 * spec.horizon
    val_steps = bt.validation_steps or test_steps
    if test_steps < spec.horizon or val_steps < spec.horizon:
        raise ConfigError(
            f"`backtest.test_steps` ({test_steps}) and `backtest.validation_steps` "
            f"({val_steps}) must each hold at least one horizon ({spec.horizon} steps)."
        )
    min_train = bt.min_train or max(n // 3, spec.lookback + spec.horizon)
    origins = rolling_origins(
        n,
        n_folds=bt.folds,
        horizon=test_steps,
        step=bt.step,
        min_train=min_train + val_steps,
        window=bt.window,
    )
    out = []
    for r in origins:
        origin = r.test.start
        ranges = SplitRanges(
            train=range(r.train.start, origin - val_steps),
            validation=range(origin - val_steps, origin),
            test=r.test,
        )
        out.append(FrameSplit(frame, schema, times, ranges))
    return out


def run_backtest(
    config: ForecastConfig, *, folds: int | None = None, source: Source | None = None
) -> BacktestResult:
    """Backtest `config` over rolling origins, each fold a nested MLflow run.

    Args:
        config: the job config; `config.backtest` sets the folds.
        folds: override `config.backtest.folds`.
        source: data already loaded (else read from `config.data`).
    """
    if folds is not None:
        config = replace(config, backtest=replace(config.backtest, folds=folds))
    make_strategy(config.training.strategy)  # before any TensorFlow op; bad TF_CONFIG fails here
    mlflow.set_tracking_uri(resolve_tracking_uri(config.tracking.tracking_uri))
    source = source or load_source(config.data)
    frame, schema, freq = featurize(
        source.frame, source.schema, source.policy, config.data.features, source.calendar
    )
    splits = fold_splits(frame, schema, config)  # bad fold settings fail before any run
    with tracked_run(
        experiment=config.experiment,
        run_name=f"{config.name}-backtest",
        config=config.to_dict(),
        tags={"forecast.job": "backtest"},
    ) as parent:
        rows, classical, skipped, returns = [], [], [], False
        for k, split in enumerate(splits):
            origin = str(pd.Timestamp(split.times[split.ranges.test.start]))
            with tracked_run(
                experiment=config.experiment,
                run_name=f"{config.name}-fold{k}",
                config={"fold": k, "origin": origin},
                nested=True,
            ):
                prepared = prepare_split(config, source, frame, schema, freq, split)
                fitted = train_model(config, prepared)
                table, forecasts = score_part(
                    fitted.model,
                    prepared,
                    "test",
                    baselines=config.evaluation.baselines,
                    calibration=config.calibration.windows,
                )
                log_metrics(table_metric_names(table, split="test"))
                rows.append(table.assign(fold=k, origin=origin))
                returns = is_returns(prepared)
                if config.evaluation.classical:
                    comparison = compare_classical(prepared, "test", forecasts, config.evaluation)
                    log_metrics(comparison.metrics("test"))
                    classical.append(comparison.table.assign(fold=k, origin=origin))
                    skipped += [f"{m}: {why}" for m, why in comparison.skipped.items()]
                log.info("fold %d/%d (origin %s) done", k + 1, len(splits), origin)
        folds_table = pd.concat(rows, ignore_index=True)[
            ["fold", "origin", "model", "metric", "value"]
        ]
        summary = (
            folds_table.groupby(["model", "metric"])["value"]
            .agg(["mean", "std"])
            .unstack("metric")
            .swaplevel(axis=1)
            .sort_index(axis=1)
        )
        log_table_csv(folds_table, "backtest_folds.csv")
        log_table_csv(summary.stack(0, future_stack=True).reset_index(), "backtest_summary.csv")
        means = folds_table.groupby(["model", "metric"], as_index=False)["value"].mean()
        log_metrics(table_metric_names(means, split="backtest"))
        classical_table = None
        if classical:
            cols = ["fold", "origin", "scope", "series", "model", "metric", "value"]
            classical_table = pd.concat(classical, ignore_index=True)[cols]
            log_table_csv(classical_table, "backtest_classical.csv")
            log_metrics(
                table_metric_names(classical_means(classical_table), split="backtest_classical")
            )
        return BacktestResult(
            run_id=parent.info.run_id,
            folds=folds_table,
            summary=summary,
            classical=classical_table,
            classical_skipped=tuple(dict.fromkeys(skipped)),
            returns=returns,
        )
