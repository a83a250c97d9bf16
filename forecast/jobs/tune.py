"""`forecast tune`: choose a model by rolling-origin backtests on the rows before the test part.

Optuna's TPE sampler (seeded, so a rerun proposes the same trials) searches `SPACE` for the
config with the lowest mean MASE over the backtest folds of `config.backtest`; each trial is
a nested MLflow run of the tune run, with its parameters, per-fold and mean scores. The
first trials are `STARTING_POINTS` (settings that did well before the test part of earlier
experiments), so a small budget never ends on random draws alone. The
data are cut at the last timestamp before the test part of the config's own chronological
split (``split.test``) and every fold is checked to end before it, so the test rows are never
trained on, early-stopped on or scored. The chosen config is the given one with the winning
model, optimizer and lookback, on the whole data: ``forecast train chosen.yaml``.

The search space (`SPACE`, defined in `forecast.config.tuning` so that a config's
``tuning.space`` is checked when it loads), for a data season S (``evaluation.season`` or the frequency's;
the horizon H when the data have none):

- ``window.lookback``: S, 2S, 3S or 4S (only those the training rows can fill);
- ``model.cell``: lstm or gru; ``model.units``: 16, 32 or 64;
- ``model.head_layers``: none, [64] or [256] (Dense relu layers after the final state and
  the flattened future covariates);
- ``model.target_centre``: none, last or mean; ``model.target_scaling``: none or window_rms;
- ``model.target_transform``: none, log or boxcox (offered only when every training target
  is positive);
- ``model.residual``: none, seasonal_naive or exp_smoothing (season S);
- ``model.deseasonalize``: none or mstl (offered only when S > 1 and the data sit on a
  regular grid: MSTL with the data's seasons, fitted on each fold's training rows);
- ``optimizer.learning_rate``: log-uniform in [3e-4, 1e-2]; ``optimizer.loss``: mae or mse.
  Gradients are clipped to norm 1 (``optimizer.clipnorm``) unless the config sets it.

A config with a quantile head and ``calibration.windows: 0`` (the default) also gets its
interval recalibration chosen: each trial's fold models are scored with K of
`CALIBRATION_WINDOWS` (the median, so MASE, is the same for every K), and the chosen config
takes the K with the lowest mean pinball loss over the winning trial's folds (ties: the
smaller K). Recalibration needs ``window.stride: 1``; a config that sets K keeps it.

The winning trial's fold models are then scored against seasonal naive and the config's
``evaluation.classical`` models on the same fold windows (`fold_classical`), so the tune
report says, on pre-test rows only, which classical model the chosen network does not beat.
"""

from __future__ import annotations

import logging
import math
import textwrap
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
import yaml

from forecast.config import CalibrationConfig, ForecastConfig, TuningConfig
from forecast.config.tuning import SPACE as SPACE  # re-exported: the documented space
from forecast.config.tuning import narrowed
from forecast.data import Source, check_lookback_season, featurize, load_source, prepare_split
from forecast.evaluation.baselines import season_from_freq
from forecast.evaluation.comparison import OVERALL, compare_classical
from forecast.evaluation.scoring import score_part
from forecast.jobs.backtest import classical_means, fold_splits
from forecast.jobs.train import classical_verdict
from forecast.jobs.tune_args import check_arguments
from forecast.tracking.runs import log_metrics, log_table_csv, resolve_tracking_uri, tracked_run
from forecast.training.distribute import make_strategy
from forecast.training.fitting import train_model
from pipelines.calendars import Calendar
from pipelines.errors import ConfigError
from pipelines.sources import atomic_write
from pipelines.split import split_by_time

log = logging.getLogger(__name__)

LOOKBACK_SEASONS = (1, 2, 3, 4)
LEARNING_RATE = (3e-4, 1e-2)
OBJECTIVE = "mase"  # mean over folds of the model's test-fold MASE (pre-test rows only)
# K of `calibration.windows` tried on each trial's fold models when the config has a
# quantile head and no K: off, about a quarter, half and one year of trading days.
CALIBRATION_WINDOWS = (0, 60, 120, 250)
INTERVAL_SCORE = "pinball_mean"


@dataclass(frozen=True)
class PreTest:
    """The config cut to the rows before its test part, and where that part starts."""

    config: ForecastConfig
    source: Source
    first_test: pd.Timestamp
    season: int
    positive: bool  # every target of the kept rows > 0 (log / Box-Cox may be tried)
    regular: bool = True  # on the regular grid of its frequency (MSTL may be tried)


@dataclass(frozen=True)
class TuneResult:
    """What a tune job chose, and every trial it ran."""

    run_id: str
    config: ForecastConfig  # the chosen config, on the whole data
    best_value: float
    trials: pd.DataFrame  # one row per trial: number, value, state, params, seconds
    output: Path
    # The chosen trial against seasonal naive and `evaluation.classical` on its folds'
    # windows (`fold_classical`): model x metric means over the folds; None when off.
    classical: pd.DataFrame | None = None
    verdict: str = ""  # those scores in sentences; "" when off


def pre_test(config: ForecastConfig) -> PreTest:
    """Cut `config` at the last timestamp before its test part; check no fold reaches it."""
    source = load_source(config.data)
    frame, schema, freq = featurize(
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
    cut = replace(config, data=replace(config.data, end=last_kept.isoformat()))
    cut_source = load_source(cut.data)
    season = config.evaluation.season or (season_from_freq(freq) if freq else 1)
    kept = frame[frame[schema.time_col] < first_test]
    positive = bool((kept[list(schema.targets)].to_numpy() > 0).all())
    regular = Calendar.from_dict(frame.attrs.get("calendar")).kind == "regular"
    return PreTest(cut, cut_source, first_test, season, positive, regular)


def _suggest(
    trial: optuna.Trial,
    base: ForecastConfig,
    cut: PreTest,
    lookbacks: list[int],
    space: dict[str, tuple[Any, ...]],
) -> ForecastConfig:
    """The trial's config: `base` with the sampled model, optimizer and lookback."""
    unit = cut.season if cut.season > 1 else base.window.horizon
    k = trial.suggest_categorical(
        "lookback_seasons", [n for n in LOOKBACK_SEASONS if n * unit in lookbacks]
    )
    p = {name: trial.suggest_categorical(name, list(choices)) for name, choices in space.items()}
    lr = trial.suggest_float("learning_rate", *LEARNING_RATE, log=True)
    model = replace(
        base.model,
        cell=p["cell"],
        units=(p["units"],),
        head_layers=() if p["head_layers"] == "none" else (int(p["head_layers"]),),
        target_centre=p["target_centre"],
        target_scaling=p["target_scaling"],
        target_scale_halflife=None,
        target_transform=p["target_transform"],
        residual=p["residual"],
        residual_season=cut.season if p["residual"] != "none" else None,
        deseasonalize=p["deseasonalize"],
        head="direct",
        mode="static",
        bidirectional=False,
    )
    optimizer = replace(
        base.optimizer,
        learning_rate=lr,
        loss=p["loss"],
        clipnorm=base.optimizer.clipnorm or (None if base.optimizer.clipvalue else 1.0),
    )
    window = replace(base.window, lookback=k * unit, min_lookback=None)
    # A trial (and the chosen config) is a model, no longer `model: auto`.
    return replace(
        base, model=model, optimizer=optimizer, window=window, auto=False, tuning=TuningConfig()
    )


# The first trials of every search: settings that did well before the test part of the
# issue-14 experiments (RESULTS.md, "Modeling options": centring + the seasonal-naive
# residual; the hand-written LSTM(64) + Dense(256) with the MAE loss; the first
# with the Holt-Winters base), so that a
# budget of a few trials starts from them and TPE spends the rest exploring. A key the
# space does not offer (or a choice it narrowed away) is left to the sampler.
_CENTRED_RESIDUAL = {
    "cell": "lstm",
    "units": 32,
    "head_layers": "none",
    "target_centre": "last",
    "target_scaling": "none",
    "target_transform": "none",
    "residual": "seasonal_naive",
    "loss": "mae",
    "learning_rate": 3e-3,
}
STARTING_POINTS: tuple[dict[str, Any], ...] = (
    _CENTRED_RESIDUAL,
    {
        "cell": "lstm",
        "units": 64,
        "head_layers": "256",
        "target_centre": "last",
        "target_scaling": "none",
        "target_transform": "none",
        "residual": "none",
        "loss": "mae",
        "learning_rate": 1e-3,
    },
    # The first point with the Holt-Winters base in place of seasonal naive: the residual
    # base mattered most in the ablations, so every search compares the two bases directly.
    {**_CENTRED_RESIDUAL, "residual": "exp_smoothing"},
)


def starting_points(
    space: dict[str, tuple[Any, ...]], lookbacks: list[int], cut: PreTest
) -> list[dict[str, Any]]:
    """`STARTING_POINTS` restricted to `space`, each at a lookback of two seasons (or the
    longest the folds allow below that)."""
    unit = cut.season if cut.season > 1 else cut.config.window.horizon
    seasons = [n for n in LOOKBACK_SEASONS if n * unit in lookbacks]
    k = 2 if 2 in seasons else min(seasons)
    out = []
    for point in STARTING_POINTS:
        params = {
            name: value
            for name, value in point.items()
            if name == "learning_rate" or value in space.get(name, ())
        }
        out.append({"lookback_seasons": k, **params})
    return out


def search_space(cut: PreTest, narrow: dict[str, Any] | None = None) -> dict[str, tuple]:
    """`SPACE`, with the choices of `narrow` (a subset of each) in place of their keys'."""
    space = narrowed(narrow)
    if not cut.positive:
        space["target_transform"] = ("none",)
    if cut.season <= 1 or not cut.regular:
        space["deseasonalize"] = ("none",)
    return space


def _lookbacks(cut: PreTest, frame: pd.DataFrame, schema: Any) -> list[int]:
    """Lookbacks of `LOOKBACK_SEASONS` that leave every fold a training window."""
    unit = cut.season if cut.season > 1 else cut.config.window.horizon
    out = []
    for n in LOOKBACK_SEASONS:
        try:  # e.g. one season is refused when the config scores seasonal naive
            config = replace(cut.config, window=replace(cut.config.window, lookback=n * unit))
            # A season from the frequency is otherwise checked only when a fold is
            # prepared, where the error would end the search.
            check_lookback_season(config, cut.season, freq="the data")
            splits = fold_splits(frame, schema, config)
        except ConfigError:
            continue
        h = config.window.horizon
        if all(len(s.ranges.train) >= n * unit + h + 1 for s in splits):
            out.append(n * unit)
    if not out:
        raise ConfigError(
            f"No lookback of {list(LOOKBACK_SEASONS)} seasons ({unit} steps) leaves the backtest "
            "folds a training window: use more data, fewer `backtest.folds` or a shorter "
            "`backtest.test_steps`."
        )
    return out


@dataclass(frozen=True)
class FoldScores:
    """A trial's backtest: the objective per fold, and per K of `CALIBRATION_WINDOWS` the
    interval score per fold (empty when no K is chosen)."""

    objective: list[float]
    intervals: dict[int, list[float]]
    # (prepared, {K: forecasts}) of each fold, kept only when the classical models are
    # compared: K = 0 and each recalibration scored (the chosen one is compared).
    scored: tuple[tuple[Any, dict[int, Any]], ...] = ()


def calibration_choices(config: ForecastConfig) -> tuple[int, ...]:
    """The K a tune job chooses among: none when the config has no quantile head, sets K
    itself, or windows with a stride (recalibration needs every origin)."""
    if not config.model.quantiles or config.calibration.windows or config.window.stride != 1:
        return ()
    return CALIBRATION_WINDOWS


def _backtest(config: ForecastConfig, cut: PreTest, frame, schema, freq) -> FoldScores:
    """MASE of the model on each fold's test span (and the interval score of each K of
    `calibration_choices`); every fold ends before the test part."""
    scores: list[float] = []
    intervals: dict[int, list[float]] = {k: [] for k in calibration_choices(config)}
    scored = []
    for k, split in enumerate(fold_splits(frame, schema, config)):
        seen = pd.Timestamp(split.frame[schema.time_col].max())
        if seen >= cut.first_test:  # the cut makes this impossible; keep it impossible
            raise RuntimeError(f"Fold {k} holds a row at {seen}, inside the test part.")
        prepared = prepare_split(config, cut.source, frame, schema, freq, split)
        fitted = train_model(config, prepared)
        plain, forecasts = score_part(fitted.model, prepared, "test", baselines=())
        scores.append(_metric(plain, OBJECTIVE))
        by_k = {0: forecasts}
        for windows, values in intervals.items():  # K = 0 is the table just scored
            table = plain
            if windows:
                table, by_k[windows] = score_part(
                    fitted.model, prepared, "test", baselines=(), calibration=windows
                )
            values.append(_metric(table, INTERVAL_SCORE))
        if config.evaluation.classical:
            own = config.calibration.windows  # a K the config sets: its quantiles are those
            if own and config.model.quantiles:
                _, by_k[own] = score_part(
                    fitted.model, prepared, "test", baselines=(), calibration=own
                )
            scored.append((prepared, by_k))
    return FoldScores(scores, intervals, tuple(scored))


def fold_classical(
    folds: tuple[tuple[Any, dict[int, Any]], ...],
    config: ForecastConfig,
    *,
    trials: int = 1,
    calibration: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The chosen trial's fold models against seasonal naive and `evaluation.classical`.

    On each fold the classical models are fitted on that fold's training rows and scored
    with the model on the same windows of its test span (`compare_classical`, what train
    and backtest reports use), so the user learns before training on all the data whether
    the network beats them where it was chosen. The folds also chose the model among
    `trials` finished trials, which flatters its score there and not the classical
    models': with more than one, the verdict says so. In the accuracy suite a loss on the
    folds was a loss on the test period every time, a win on the folds was not
    (benchmarks/RESULTS.md, "tune's pre-test verdict").

    The model's quantiles are those of the chosen `calibration` K. A classical model that
    did not run on every fold is left out of the means (as in a backtest report), with
    the first reason it was skipped.

    Returns:
        ``(tidy scores per fold, model x metric means over the folds, the verdict)``.
    """
    tables, skipped, n_windows, step = [], {}, 0, 0
    for k, (prepared, by_k) in enumerate(folds):
        forecasts = by_k.get(calibration, by_k[0])  # no quantiles: one set, K = 0
        comparison = compare_classical(prepared, "test", forecasts, config.evaluation)
        tables.append(comparison.table[comparison.table["scope"] == OVERALL].assign(fold=k))
        for label, why in comparison.skipped.items():
            skipped.setdefault(label, f"{why} (fold {k})")
        n_windows, step = n_windows + comparison.n_windows, comparison.step
    tidy = pd.concat(tables, ignore_index=True)[
        ["fold", "scope", "series", "model", "metric", "value"]
    ]
    means = classical_means(tidy)
    order = list(dict.fromkeys(tidy["model"]))  # the model first, then as compared
    wide = means.pivot(index="model", columns="metric", values="value")
    wide = wide.loc[[m for m in order if m in wide.index]]
    where = (
        f"the {len(folds)} pre-test backtest fold{'s' if len(folds) != 1 else ''} "
        f"({n_windows} windows with origins every {step} steps, each model fitted on its "
        "fold's training rows)"
    )
    verdict, _ = classical_verdict(wide, where, skipped)
    return tidy, wide, verdict + selection_caveat(trials)


def selection_caveat(trials: int) -> str:
    """What the fold verdict cannot say when the same folds chose among `trials` trials."""
    if trials <= 1:
        return ""
    return (
        f" Those folds also chose the model among {trials} trials, so its score there is "
        "optimistic: a loss there is a loss, a win is not a promise (the test part of "
        "`forecast train` is the check no choice looked at)."
    )


def _metric(table: pd.DataFrame, name: str) -> float:
    value = table[(table["model"] == "model") & (table["metric"] == name)]["value"]
    return float(value.iloc[0])


def chosen_calibration(intervals: dict[int, float]) -> int:
    """The K with the lowest mean interval score (ties: the smaller K, the less history a
    served request needs); 0 when none was scored."""
    if not intervals:
        return 0
    return min(intervals, key=lambda k: (round(intervals[k], 12), k))


def tune_job(
    config: ForecastConfig,
    *,
    output: str | Path,
    trials: int = 20,
    timeout: float | None = None,
    seed: int = 0,
    overwrite: bool = False,
    space: dict[str, Any] | None = None,
) -> TuneResult:
    """Search `SPACE` with Optuna on pre-test backtests; write the chosen config to `output`.

    Args:
        config: the job config (its model and optimizer sections are the starting point;
            a config without them works).
        output: the YAML file the chosen config is written to (atomically).
        trials: the most trials to run.
        timeout: stop starting trials after this many seconds (None: no limit).
        seed: seeds the TPE sampler; ``training.seed`` seeds each trial's training.
        overwrite: replace an existing `output`.
        space: narrower choices for some keys of `SPACE`, e.g. ``{"cell": ["gru"]}``.
    """
    out = check_arguments(trials, timeout, str(output), overwrite)
    search_space(PreTest(config, None, pd.Timestamp(0), 1, True), space)  # bad keys fail now
    make_strategy(config.training.strategy)
    mlflow.set_tracking_uri(resolve_tracking_uri(config.tracking.tracking_uri))
    cut = pre_test(config)
    frame, schema, freq = featurize(
        cut.source.frame,
        cut.source.schema,
        cut.source.policy,
        config.data.features,
        cut.source.calendar,
    )
    lookbacks = _lookbacks(cut, frame, schema)
    chosen_space = search_space(cut, space)
    rows: list[dict[str, Any]] = []
    leader: dict[str, Any] = {"value": math.inf}  # the best trial so far, with its fold models
    with tracked_run(
        experiment=config.experiment,
        run_name=f"{config.name}-tune",
        config=config.to_dict(),
        tags={"forecast.job": "tune", "forecast.tune.first_test": str(cut.first_test)},
    ) as parent:

        def objective(trial: optuna.Trial) -> float:
            candidate = _suggest(trial, cut.config, cut, lookbacks, chosen_space)
            t0 = time.perf_counter()
            with tracked_run(
                experiment=config.experiment,
                run_name=f"{config.name}-trial{trial.number}",
                config=candidate.to_dict(),
                tags={"forecast.tune.trial": trial.number},
                nested=True,
            ):
                try:
                    backtest = _backtest(candidate, cut, frame, schema, freq)
                except (FloatingPointError, ValueError) as err:  # diverged or non-finite
                    if isinstance(err, ConfigError):
                        raise
                    mlflow.set_tag("forecast.tune.failed", str(err)[:500])
                    log.warning("trial %d failed: %s", trial.number, err)
                    rows.append({"number": trial.number, "value": math.inf, **trial.params})
                    return math.inf
                folds = backtest.objective
                value = float(np.mean(folds))
                intervals = {k: float(np.mean(v)) for k, v in backtest.intervals.items()}
                trial.set_user_attr("intervals", intervals)
                log_metrics({f"fold{k}_{OBJECTIVE}": v for k, v in enumerate(folds)})
                log_metrics({OBJECTIVE: value, "seconds": time.perf_counter() - t0})
                log_metrics({f"{INTERVAL_SCORE}_k{k}": v for k, v in intervals.items()})
            rows.append(
                {"number": trial.number, "value": value, **trial.params}
                | {f"{INTERVAL_SCORE}_k{k}": v for k, v in intervals.items()}
            )
            log.info("trial %d: %s %.4f %s", trial.number, OBJECTIVE, value, trial.params)
            if backtest.scored and value < leader["value"]:  # keep one trial's folds only
                leader.update(value=value, number=trial.number, folds=backtest.scored)
            return value

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed)
        )
        for params in starting_points(chosen_space, lookbacks, cut)[:trials]:
            study.enqueue_trial(params, skip_if_exists=True)
        study.optimize(objective, n_trials=trials, timeout=timeout)
        finite = [t for t in study.trials if t.value is not None and math.isfinite(t.value)]
        if not finite:
            raise RuntimeError("Every trial failed (diverged); lower the learning rate range.")
        best = min(finite, key=lambda t: t.value)
        chosen = _chosen(config, best, cut, lookbacks, chosen_space)
        windows = chosen_calibration(best.user_attrs.get("intervals", {}))
        if windows:
            chosen = replace(chosen, calibration=CalibrationConfig(windows=windows))
            mlflow.set_tag("forecast.tune.calibration_windows", windows)
        table = pd.DataFrame(rows)
        log_table_csv(table, "trials.csv")
        log_metrics({f"best_{OBJECTIVE}": float(best.value), "trials": len(study.trials)})
        wide, verdict = None, ""
        if leader.get("number") == best.number:  # `evaluation.classical` is not empty
            tidy, wide, verdict = fold_classical(
                leader.pop("folds"),
                config,
                trials=len(finite),
                calibration=windows or config.calibration.windows,
            )
            log_table_csv(tidy, "tune_classical.csv")
            log_metrics(  # a NaN score (a model that forecast NaN) is in the CSV, not a metric
                {
                    (f"{m}_tune_classical_mase" if m != "model" else "tune_classical_mase"): v
                    for m, v in wide["mase"].items()
                    if np.isfinite(v)
                }
            )
            mlflow.log_text(verdict, "tune_verdict.txt")
            log.info("%s", verdict)
        mlflow.log_text(chosen.to_yaml(), "chosen.yaml")
        text = _header(config, best, parent.info.run_id, cut, verdict) + chosen.to_yaml()
        atomic_write(out, lambda tmp: tmp.write_text(text))
        return TuneResult(parent.info.run_id, chosen, float(best.value), table, out, wide, verdict)


def _chosen(
    config: ForecastConfig, best: Any, cut: PreTest, lookbacks: list[int], space: dict
) -> ForecastConfig:
    """The winning trial's settings on the whole data (the cut is for tuning only)."""
    fixed = optuna.trial.FixedTrial(best.params)
    return replace(_suggest(fixed, config, cut, lookbacks, space), data=config.data)


def _header(config: ForecastConfig, best: Any, run_id: str, cut: PreTest, verdict: str = "") -> str:
    lines = [
        f"# Chosen by `forecast tune` (run {run_id}): trial {best.number}, mean {OBJECTIVE} "
        f"{best.value:.4f} over the backtest folds before {cut.first_test}.",
        *_calibration_line(best),
        *("# " + line for line in _wrap(verdict)),
        "# Train it with: forecast train <this file>",
    ]
    return "\n".join(lines) + "\n"


def _wrap(text: str) -> list[str]:
    """`text` over lines of at most 86 characters, broken at spaces only (it reads back
    joined with one space)."""
    return textwrap.wrap(text, 86, break_on_hyphens=False, break_long_words=False)


def _calibration_line(best: Any) -> list[str]:
    intervals = best.user_attrs.get("intervals", {})
    if not intervals:
        return []
    scores = ", ".join(f"K={k}: {v:.6g}" for k, v in intervals.items())
    return [
        f"# calibration.windows: {chosen_calibration(intervals)}, the lowest mean "
        f"{INTERVAL_SCORE} of that trial's folds ({scores})."
    ]


def trial_params_yaml(result: TuneResult) -> str:
    """The chosen model and optimizer sections, for the CLI's report."""
    d = result.config.to_dict()
    return yaml.safe_dump({k: d[k] for k in ("window", "model", "optimizer")}, sort_keys=False)
