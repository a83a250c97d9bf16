"""The batch jobs behind the CLI: train (tracked, registered) and rolling-origin backtest."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from forecast.config import ForecastConfig
from forecast.data import Prepared, load_source, prepare
from forecast.evaluation import plots
from forecast.evaluation.classical import CLASSICAL
from forecast.evaluation.comparison import Comparison, compare_classical
from forecast.evaluation.scoring import (
    RANDOM_WALK,
    Forecasts,
    is_returns,
    per_step,
    score_part,
    wide,
)
from forecast.evaluation.seeds import seed_scores, spread_line, spread_metrics
from forecast.jobs.refit import EVALUATED_RUN_TAG, REFIT_RUN_TAG, refit_full
from forecast.tracking.recovery import RESUMED_TAG, checkpoint_dir, resumable_run
from forecast.tracking.registry import PromotionResult, register_and_promote
from forecast.tracking.runs import (
    MlflowEpochLogger,
    log_dataset,
    log_figure,
    log_metrics,
    log_table_csv,
    resolve_tracking_uri,
    table_metric_names,
    tracked_run,
)
from forecast.tracking.store import open_store
from forecast.training.checkpoint import checkpoint_epoch, remove_checkpoint
from forecast.training.distribute import make_strategy
from forecast.training.fitting import Fitted, train_model
from pipelines.errors import ConfigError, DiskFullError, is_disk_full

log = logging.getLogger(__name__)

_PART_PREFIX = {"validation": "val", "test": "test"}


@dataclass(frozen=True, eq=False)
class TrainOutcome:
    """What a train job produced."""

    run_id: str
    config: ForecastConfig
    fitted: Fitted
    prepared: Prepared
    scores: pd.DataFrame  # tidy: part, model, metric, value
    model_uri: str | None
    promotion: PromotionResult | None
    seeds: pd.DataFrame | None = None  # an ensemble's per-seed MASE (seed, part, mase)
    comparison: Comparison | None = None  # against the classical models, on test windows
    refit: Fitted | None = None  # the model registered under `training.refit: full`
    refit_run_id: str | None = None
    tuned: Any = None  # `model: auto`: the `TuneResult` of the tune job that chose `config`

    @property
    def scored_part(self) -> str:
        """The last part scored: ``test``, or ``validation`` under ``split.test: 0``."""
        return "test" if (self.scores["part"] == "test").any() else "validation"

    def table(self, part: str = "test") -> pd.DataFrame:
        """Model x metric on one part."""
        return wide(self.scores[self.scores["part"] == part].drop(columns="part"))

    def verdict(self, part: str = "test") -> str:
        """One honest sentence: does the model beat the naive (random-walk) forecast?"""
        comparison = self.comparison if part == "test" else None
        return verdict(self.table(part), returns=is_returns(self.prepared), comparison=comparison)

    def report(self) -> str:
        """What a train job tells the user: test scores beside baselines, verdict, model."""
        part = self.scored_part
        table = self.table(part)
        names = ("mase", "mae", "rmse", "smape", "coverage_80", "width_80")
        cols = [c for c in names if c in table]
        lines = [
            f"{part.capitalize()} scores (original units), run {self.run_id}:",
            table[cols].to_string(float_format=lambda v: f"{v:.4f}"),
        ]
        if self.comparison is not None:
            lines += [f"Against the classical baselines on {self.comparison.where}:"]
            lines += [classical_text(self.comparison.wide())]
        lines += [
            self.verdict(part),
        ]
        if self.seeds is not None and "mase" in table:
            lines.append(spread_line(self.seeds, float(table.loc["model", "mase"])))
        lines += [
            f"model: {self.model_uri}",
        ]
        if self.tuned is not None:
            n = len(self.tuned.trials)
            lines.insert(
                2,
                f"model: auto chose it by `forecast tune` (run {self.tuned.run_id}, {n} "
                f"trial{'s' if n != 1 else ''}, mean pre-test MASE {self.tuned.best_value:.4f}).",
            )
            if self.tuned.verdict:
                lines.insert(3, self.tuned.verdict)
        skipped = self.prepared.skipped
        if skipped:
            shown = ", ".join(f"{sid!r} ({n})" for sid, n in list(skipped.items())[:5])
            lines.insert(
                -1,
                f"Left out {len(skipped)} series too young to train on (training rows): "
                f"{shown}{' ...' if len(skipped) > 5 else ''}; see skipped_series.json.",
            )
        if self.refit is not None:
            lines.insert(
                -1,
                f"Registered: the refit on all rows (run {self.refit_run_id}, "
                f"{self.refit.result.epochs_run} epochs); the scores above are the evaluated "
                "model's.",
            )
        if self.promotion is not None:
            lines.append(self.promotion.message)
        return "\n".join(lines)


def verdict(table: pd.DataFrame, *, returns: bool, comparison: Comparison | None = None) -> str:
    """Say plainly whether the model's MASE beats the random walk and the naive baselines,
    and (with `comparison`) the classical models on their windows; then name every
    baseline it does not beat."""
    if "mase" not in table.columns:
        return "No MASE available."
    mase = table["mase"]
    model = float(mase.loc["model"])
    names = (RANDOM_WALK, "mean", "naive", "seasonal_naive") if returns else _LEVEL_BASELINES
    parts, lost = [], []
    for name in names:
        if name in mase.index:
            other = float(mase.loc[name])
            word = "beats" if model < other else "does NOT beat"
            label = _LABELS.get(name, name.replace("_", "-"))
            parts.append(f"{word} {label} (MASE {model:.3f} vs {other:.3f})")
            lost += [] if model < other else [_SHORT.get(name, label)]
    text = "The model " + "; ".join(parts) + "."
    if returns and RANDOM_WALK in mase.index:
        gain = 1.0 - model / float(mase.loc[RANDOM_WALK])
        text += (
            f" Against the random walk of the price its error is {abs(gain):.1%} "
            f"{'lower' if gain > 0 else 'higher'}"
            + ("; it does not beat a random walk." if gain <= 0 else ".")
        )
    if comparison is not None:
        extra, classical_lost = classical_verdict(
            comparison.wide(), comparison.where, comparison.skipped
        )
        text += " " + extra
        lost += [n for n in classical_lost if n not in lost]
    if lost:
        text += f" Not beaten: {', '.join(lost)}."
    elif comparison is not None:
        text += " It beats every baseline compared."
    return text


_LEVEL_BASELINES = ("naive", "seasonal_naive")
_SHORT = {RANDOM_WALK: "the random walk", "mean": "the random walk with drift"}


def classical_verdict(
    wide: pd.DataFrame, where: str, skipped: dict[str, str]
) -> tuple[str, list[str]]:
    """Sentences on the classical models of `wide` (model x metric, scored `where`), and the
    labels of those the model does not beat; `skipped` names the ones left out and why."""
    ran = [n for n in CLASSICAL if n in wide.index]
    lost: list[str] = []
    sentences = []
    if ran:
        model = float(wide.loc["model", "mase"])
        parts = []
        for name in ran:
            other = float(wide.loc[name, "mase"])
            parts.append(
                f"{'beats' if model < other else 'does NOT beat'} {CLASSICAL[name]} "
                f"(MASE {model:.3f} vs {other:.3f})"
            )
            lost += [] if model < other else [CLASSICAL[name]]
        sentences.append(f"On {where}, the model " + "; ".join(parts) + ".")
        if "pinball_mean" in wide.columns and np.isfinite(wide.loc["model", "pinball_mean"]):
            sentences.append(_interval_sentence(wide, ran))
    for label, reason in skipped.items():
        sentences.append(f"{label} is not compared: {reason}.")
    return " ".join(sentences), lost


def _interval_sentence(wide: pd.DataFrame, ran: list[str]) -> str:
    model = float(wide.loc["model", "pinball_mean"])
    cov = "coverage_80" if "coverage_80" in wide.columns else None
    parts = []
    for name in ran:
        other = float(wide.loc[name, "pinball_mean"])
        text = f"{'lower' if model < other else 'NOT lower'} than {CLASSICAL[name]}'s {other:.4g}"
        if cov:
            text += f" (coverage_80 {wide.loc['model', cov]:.3f} vs {wide.loc[name, cov]:.3f})"
        parts.append(text)
    return f"Its quantiles' mean pinball loss {model:.4g} is " + "; ".join(parts) + "."


def classical_text(wide: pd.DataFrame) -> str:
    """A comparison table (model x metric) as the reports print it."""
    names = ("mase", "mae", "rmse", "coverage_80", "pinball_mean")
    cols = [c for c in names if c in wide.columns]
    return wide[cols].to_string(float_format=lambda v: f"{v:.4f}", na_rep="-")


_LABELS = {
    RANDOM_WALK: "the random walk (zero return)",
    "mean": "the random walk with drift (mean return)",
}


def _scores(
    fitted: Fitted, prepared: Prepared, config: ForecastConfig
) -> tuple[pd.DataFrame, Forecasts]:
    """Tidy scores on validation and test, and the model's test forecasts."""
    frames = []
    for part in (p for p in ("validation", "test") if p in prepared.windows):
        table, forecasts = score_part(
            fitted.model,
            prepared,
            part,
            baselines=config.evaluation.baselines,
            calibration=config.calibration.windows,
        )
        frames.append(table.assign(part=part))
    scores = pd.concat(frames, ignore_index=True)[["part", "model", "metric", "value"]]
    return scores, forecasts


def _log_scores(scores: pd.DataFrame) -> dict[str, float]:
    flat: dict[str, float] = {}
    for part, prefix in _PART_PREFIX.items():
        sub = scores[scores["part"] == part]
        flat.update(table_metric_names(sub[["model", "metric", "value"]], split=prefix))
    log_metrics(flat)
    return flat


def _plot(prepared: Prepared, forecasts: Forecasts, part: str) -> Any:
    """The last window of `part`: forecast, 80% interval and what happened."""
    windows = prepared.windows[part]
    i = len(windows) - 1
    y = prepared.y_true(part)[i, :, 0]
    lo = hi = None
    levels = forecasts.levels
    if forecasts.quantiles is not None and 0.1 in levels and 0.9 in levels:
        lo = forecasts.quantiles[i, :, 0, levels.index(0.1)]
        hi = forecasts.quantiles[i, :, 0, levels.index(0.9)]
    series = windows.series_ids[int(windows.series[i])]
    return plots.forecast_vs_actual(
        np.arange(1, len(y) + 1),
        y,
        forecasts.point[i, :, 0],
        lower=lo,
        upper=hi,
        title=f"Forecast vs actual, last {part} window of series {series}",
        ylabel=f"{prepared.schema.targets[0]} (original units)",
        xlabel="steps ahead",
    )


def train_job(
    config: ForecastConfig,
    *,
    register: bool | None = None,
    callbacks: tuple = (),
    resume: str | None = None,
    tuned: Any = None,
) -> TrainOutcome:
    """Train, evaluate against the baselines, log everything to MLflow, register, promote.

    The model is checkpointed after every epoch next to the run's artifacts
    (`forecast.tracking.recovery.checkpoint_dir`); the checkpoint is removed once the model
    is logged. A run killed before that continues with ``resume=<run id>``: same run, the
    epochs after its last checkpoint, and the weights an uninterrupted run would have had.

    Args:
        config: the validated job config.
        register: override `config.tracking.register`.
        callbacks: extra Keras callbacks (progress reporting).
        resume: id of a killed or failed train run of this config to continue.
        tuned: the `forecast.jobs.tune.TuneResult` that chose `config` (``model: auto``):
            logged to the run (tag ``forecast.tune_run``, ``chosen_config.yaml``).

    Raises:
        ConfigError: the tracking store is unreachable, or ``resume`` names a run that
            cannot be continued (see `resumable_run`), before any data is read.
    """
    if config.auto:  # `forecast.jobs.auto.train_auto` tunes first, then calls this
        raise ConfigError(
            "`model: auto` chooses the model with `forecast tune` before training: run "
            "`forecast train` (or `forecast.jobs.auto.train_auto`), or give a `model` section."
        )
    make_strategy(config.training.strategy)  # before any TensorFlow op; bad TF_CONFIG fails here
    uri = resolve_tracking_uri(config.tracking.tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # the model registry lives in the same store as the runs
    open_store(uri)
    register = config.tracking.register if register is None else register
    if resume is not None:
        resumable_run(resume, experiment=config.experiment, config=config.to_dict())
    with tracked_run(
        experiment=config.experiment,
        run_name=f"{config.name}-train",
        config=config.to_dict(),
        tags={"forecast.job": "train"},
        resume_run_id=resume,
    ) as run:
        checkpoints = checkpoint_dir(run)
        if tuned is not None:  # what `model: auto` chose, and the tune run that chose it
            mlflow.log_text(config.to_yaml(), "chosen_config.yaml")
            mlflow.set_tags({"forecast.auto": "true", "forecast.tune_run": tuned.run_id})
            log_metrics({"tune_best_mase": tuned.best_value, "tune_trials": len(tuned.trials)})
        if resume is not None:
            mlflow.set_tag(RESUMED_TAG, str(checkpoint_epoch(checkpoints)))
        source = load_source(config.data)
        prepared = prepare(config, source)
        if prepared.freq is None and getattr(config.data, "calendar", None) is None:
            # Checked before training: the served model could not date its forecasts.
            raise ConfigError(
                "The data frequency is unknown (the observed calendar infers none): set "
                "`data.schema.freq` (e.g. 'B' for business days, 'h' for hours)."
            )
        log_dataset(
            prepared.frame,
            name=config.data.dataset or Path(str(config.data.path)).name,
            targets=list(prepared.schema.targets),
            # A local path is a source MLflow understands; a bundled dataset is named in a tag.
            source=source.origin if config.data.path else None,
        )
        mlflow.set_tag("forecast.data_source", source.origin)
        mlflow.log_params(
            {
                "data.freq": prepared.freq,
                "data.season": prepared.season,
                "data.skipped_series": len(prepared.skipped),
                **{f"windows.{k}": len(w) for k, w in prepared.windows.items()},
            }
        )
        fitted = train_model(
            config,
            prepared,
            callbacks=[MlflowEpochLogger(), *callbacks],
            checkpoint_dir=str(checkpoints),
        )
        mlflow.log_metrics(
            {"epochs_run": fitted.result.epochs_run, "best_epoch": fitted.result.best_epoch}
        )
        scores, test_forecasts = _scores(fitted, prepared, config)
        flat = _log_scores(scores)
        seeds = None
        if fitted.members:
            seeds = seed_scores(
                fitted.members,
                prepared,
                seed=config.training.seed,
                calibration=config.calibration.windows,
            )
            log_metrics(spread_metrics(seeds))
            log_table_csv(seeds, "seed_scores.csv")
        comparison = _compare(prepared, test_forecasts, config)
        last = "test" if "test" in prepared.windows else "validation"
        test_table = wide(scores[scores["part"] == last].drop(columns="part"))
        said = verdict(test_table, returns=is_returns(prepared), comparison=comparison)
        mlflow.set_tag("forecast.verdict", said[:5000])  # MLflow caps tag values
        try:
            _log_artifacts(fitted, prepared, scores, test_forecasts)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            raise DiskFullError(f"the artifacts of run {run.info.run_id}") from None
        refit = refit_run_id = None
        if config.training.refit == "full":
            evaluated = _log_model(fitted, config, flat, register=False)[0]
            mlflow.set_tag("forecast.evaluated_model", evaluated)
            refit, refit_run_id, model_uri, promotion = _refit_and_register(
                config, source, fitted, flat, register=register, callbacks=callbacks
            )
            mlflow.set_tag(REFIT_RUN_TAG, refit_run_id)
        else:
            model_uri, promotion = _log_model(fitted, config, flat, register=register)
        remove_checkpoint(checkpoints)  # the logged model holds the trained weights now
        if promotion is not None:
            mlflow.set_tag("forecast.promotion", promotion.message)
        return TrainOutcome(
            run_id=run.info.run_id,
            config=config,
            fitted=fitted,
            prepared=prepared,
            scores=scores,
            model_uri=model_uri,
            promotion=promotion,
            seeds=seeds,
            comparison=comparison,
            refit=refit,
            refit_run_id=refit_run_id,
            tuned=tuned,
        )


def _compare(prepared: Prepared, forecasts: Forecasts, config: ForecastConfig) -> Comparison | None:
    """The classical comparison on the test windows, logged: metrics, table, verdict."""
    if not config.evaluation.classical or "test" not in prepared.windows:
        return None  # `split.test: 0`: the classical models are compared on test windows
    comparison = compare_classical(prepared, "test", forecasts, config.evaluation)
    log_metrics(comparison.metrics("test"))
    log_table_csv(comparison.table, "classical_scores.csv")
    mlflow.log_params({"evaluation.classical_windows": comparison.n_windows})
    for name, run in comparison.runs.items():
        mlflow.set_tag(
            f"forecast.classical.{name}", run.skipped or "; ".join(sorted(set(run.fitted)))
        )
    return comparison


def _refit_and_register(
    config: ForecastConfig,
    source: Any,
    evaluated: Fitted,
    flat: dict[str, float],
    *,
    register: bool,
    callbacks: tuple,
) -> tuple[Fitted, str, str | None, PromotionResult | None]:
    """The refit on all rows in a child run of the evaluated one, logged and registered with
    the evaluated run's scores (it has no held-out part of its own)."""
    parent = mlflow.active_run().info.run_id
    with tracked_run(
        experiment=config.experiment,
        run_name=f"{config.name}-refit",
        config=config.to_dict(),
        tags={"forecast.job": "refit", EVALUATED_RUN_TAG: parent},
        nested=True,
    ) as child:
        refit, prepared = refit_full(
            config, source, evaluated, callbacks=[MlflowEpochLogger(), *callbacks]
        )
        mlflow.log_params(
            {"data.rows": len(prepared.frame), "windows.train": len(prepared.windows["train"])}
        )
        mlflow.log_metrics({"epochs_run": refit.result.epochs_run})
        model_uri, promotion = _log_model(refit, config, flat, register=register)
        if promotion is not None:
            mlflow.MlflowClient().set_model_version_tag(
                config.registered_model, str(promotion.version), EVALUATED_RUN_TAG, parent
            )
            mlflow.set_tag("forecast.promotion", promotion.message)
    return refit, child.info.run_id, model_uri, promotion


def _log_artifacts(
    fitted: Fitted, prepared: Prepared, scores: pd.DataFrame, forecasts: Forecasts
) -> None:
    part = "test" if "test" in prepared.windows else "validation"  # the part of `forecasts`
    mlflow.log_text(prepared.scaler.to_json(), "scaler.json")
    if prepared.skipped:  # named, with their training rows
        skipped = {str(k): v for k, v in prepared.skipped.items()}
        mlflow.log_text(json.dumps(skipped, indent=1), "skipped_series.json")
    lines: list[str] = []
    fitted.model.network.summary(print_fn=lambda s, **_: lines.append(s))
    mlflow.log_text("\n".join(lines), "model_summary.txt")
    log_table_csv(scores, "scores.csv")
    log_table_csv(per_step(prepared, part, forecasts).reset_index(), "per_step.csv")
    log_figure(_plot(prepared, forecasts, part), "forecast_vs_actual.png")


def _log_model(
    fitted: Fitted, config: ForecastConfig, flat: dict[str, float], *, register: bool
) -> tuple[str | None, PromotionResult | None]:
    from forecast.serving.pyfunc import log_forecaster

    info = log_forecaster(fitted.forecaster, name="model")
    if not register:
        return info.model_uri, None
    metric = config.tracking.promote_metric
    if metric not in flat:  # `TrackingConfig` allows only metrics every train job logs
        raise RuntimeError(f"Promotion metric {metric!r} was not computed; have {sorted(flat)}")
    promotion = register_and_promote(
        info.model_uri,
        name=config.registered_model,
        candidate_metric=flat[metric],
        metric_name=metric,
        alias=config.tracking.alias,
    )
    return info.model_uri, promotion
