"""The network side of the suite: a config per series, trained on the rows before the test
period only, then the served forecaster called at every origin with the history before it."""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from forecast.evaluation.classical import CLASSICAL

from .scoring import QUANTILES, panel, score
from .series import Series

CONFIG_DIR = Path(__file__).resolve().parent.parent / "accuracy_configs"


def default_config(series: Series) -> dict[str, Any]:
    """A config written from the README for a series never seen (no test score read):
    lookback two seasons (at least two horizons), one LSTM layer, early stopping."""
    p = series.protocol
    lookback = max(2 * series.season, 2 * p.horizon)
    # The validation part is the last 20% of the panel's time span. When its series start
    # apart (us_employment: 1939 to 2001) that span is the oldest series', which would
    # leave the youngest no training rows: hold out 20% of the shortest one's instead.
    lengths = series.frame().groupby("series").size()
    validation = 0.2 if lengths.nunique() == 1 else int(0.2 * p.fit_rows(int(lengths.min())))
    return {
        "name": f"accuracy_{series.name}",
        "split": {"validation": validation, "test": p.horizon},
        "window": {"lookback": lookback, "horizon": p.horizon},
        "model": {"cell": "lstm", "units": [32]}
        | ({"quantiles": list(QUANTILES)} if series.kind == "returns" else {}),
        "training": {"epochs": 30, "batch_size": 64, "patience": 5, "verbose": 0},
        "evaluation": {
            "season": series.season,
            "baselines": ["naive", "seasonal_naive"],
            "classical": [],  # the suite runs them itself, on its own protocol
        },
        "backtest": tuning_folds(series),
        "tracking": {"register": False},
    }


def tuning_folds(series: Series, folds: int = 3) -> dict[str, Any]:
    """`forecast tune`'s folds: `folds` origins one horizon apart just before the test period,
    each scored on one horizon (ten for returns). Long series train each fold on a sliding window of about
    5,000 rows (more than 100 days of half-hours, 20 years of trading days), which keeps
    a trial within a minute; the chosen config then trains on every pre-test row."""
    h = series.protocol.horizon
    span = 10 * h if series.kind == "returns" else h  # one week of returns is mostly noise
    out: dict[str, Any] = {"folds": folds, "test_steps": span, "step": span}
    if series.frame().groupby("series").size().max() > 10_000:
        out |= {"window": "sliding", "min_train": 5_000}
    return out


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out


def series_config(series: Series, csv: Path, fit_end: pd.Timestamp) -> dict[str, Any]:
    """The series' config: the default, then benchmarks/accuracy_configs/<name>.yaml (as
    written by `forecast tune`), then the data section, which the suite always sets so that
    training and tuning read only rows up to `fit_end`, the last one before the test period."""
    config = default_config(series)
    path = CONFIG_DIR / f"{series.name}.yaml"
    if path.is_file():
        config = _merge(config, yaml.safe_load(path.read_text()) or {})
    config["data"] = {
        "path": str(csv),
        "schema": {
            "time_col": "timestamp",
            "id_col": "series",
            "targets": ["value"],
            "freq": series.freq,
        },
        "end": str(fit_end),
    }
    if series.freq == "B":  # trading days: one step = one observed session
        config["data"]["validation"] = {"calendar": "observed"}
    return config


def tuned(
    config: dict[str, Any], *, trials: int, timeout: float | None, folder: Path
) -> tuple[dict, dict[str, float]]:
    """The config `forecast tune` chooses (issue 14 §3), searched on the rows `config`
    reads (the suite's data section ends before the test period) and nothing later, and
    tune's own pre-test comparison: the chosen trial's mean fold MASE beside seasonal naive
    and each classical model's on the same fold windows (`forecast.jobs.tune.fold_classical`)."""
    try:
        from forecast.jobs.tune import tune_job
    except ImportError:
        raise SystemExit(
            "--tune needs forecast.jobs.tune (`forecast tune`, issue 14 §3); this checkout "
            "has none yet: put configs in benchmarks/accuracy_configs/ instead"
        ) from None
    from forecast.config import ForecastConfig

    # Each search logs to its own store in `folder`: two suite processes sharing the working
    # directory's mlflow.db race in MLflow's table creation (PITFALLS.md).
    config = _merge(config, {"tracking": {"tracking_uri": f"sqlite:///{folder}/mlflow.db"}})
    # What a user's tune run reports: the chosen trial against the classical models, on its
    # folds. The suite's own comparison, on the test period, is `classical.run_series`.
    config = _merge(
        config, {"evaluation": {"classical": list(CLASSICAL), "classical_timeout": 300}}
    )
    result = tune_job(
        ForecastConfig.from_dict(config),
        output=folder / "tuned.yaml",
        trials=trials,
        timeout=timeout,
        overwrite=True,
    )
    chosen = result.config.to_dict()
    chosen["data"] = config["data"]  # the suite's rows, whatever the tuner wrote
    chosen["tracking"]["tracking_uri"] = None  # the temporary store is gone after the run
    chosen["evaluation"]["classical"] = []  # the suite runs them itself, on its own protocol
    folds = {} if result.classical is None else result.classical["mase"].to_dict()
    return chosen, {str(k): float(v) for k, v in folds.items()}


def run_series(
    series: Series,
    *,
    seeds: tuple[int, ...] = (0,),
    epochs: int | None = None,
    quick: bool = False,
    tune: bool = False,
    trials: int = 20,
    tune_timeout: float | None = None,
    tune_folds: int = 3,
    ablate: bool = False,
    ablate_seeds: tuple[int, ...] = (0,),
    chosen: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Scores per seed, their mean and spread, the seeds' median forecast (`ensemble`, what
    ``model.ensemble: K`` serves for the same K seeds), and the tuning and training times;
    with `ablate`, the same config with each option of issue 14 §2 it uses switched off,
    and with all of them off (`ablations`, each with its seeds' scores). `chosen`, an
    earlier run's entry for the series, reuses its config (and tuning time) instead of
    tuning again."""
    from forecast.config import ForecastConfig
    from forecast.data import prepare
    from forecast.training.fitting import train_model

    ids, values = panel(series)
    frame = series.frame()
    p = series.protocol
    # The last row before each series' test period; the series of a panel end together, so
    # this is one timestamp even when they start apart (us_employment).
    fit_end = max(g["timestamp"].iloc[p.fit_rows(len(g)) - 1] for _, g in frame.groupby("series"))
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / f"{series.name}.csv"
        frame.to_csv(csv, index=False)
        config = series_config(series, csv, pd.Timestamp(fit_end))
        tune_s, pre_test = 0.0, None
        if chosen is not None:  # an earlier run's choice, on the suite's rows
            config = chosen["config"] | {"data": config["data"]}
            tune_s = float(chosen.get("tune_s", 0.0))
        elif tune:
            config["backtest"] = tuning_folds(series, tune_folds)
            start = time.perf_counter()
            config, pre_test = tuned(config, trials=trials, timeout=tune_timeout, folder=Path(tmp))
            tune_s = time.perf_counter() - start

        def trained(cfg: dict[str, Any], seed: int) -> tuple[dict[str, float], float, Any]:
            cfg = _merge(cfg, {"training": {"seed": seed}})
            if epochs is not None:
                cfg = _merge(cfg, {"training": {"epochs": epochs}})
            if quick:  # a smoke run checks the path, not the accuracy: a tiny network
                cfg = _merge(cfg, {"model": {"units": [4]}, "training": {"batch_size": 256}})
            job = ForecastConfig.from_dict(cfg)
            prepared = prepare(job)
            assert prepared.frame[job.data.schema["time_col"]].max() <= fit_end  # no test row
            start = time.perf_counter()
            fitted = train_model(job, prepared)
            seconds = time.perf_counter() - start
            point, q = _served(fitted.forecaster, frame, series, ids)
            return score(series, values, point, q), seconds, (point, q)

        runs = [trained(config, seed) for seed in seeds]
        out = {"seeds": list(seeds), **_spread([m for m, _, _ in runs])}
        out |= {"tune_s": tune_s, "train_s": float(np.mean([t for _, t, _ in runs]))}
        median = seed_median([f for _, _, f in runs])
        if len(seeds) > 1:
            out["ensemble"] = score(series, values, *median)
        out["median_point"] = median[0].tolist()  # for `combination`: (S * O, H, 1)
        out["config"] = config
        if pre_test:
            out["tune_classical"] = pre_test  # model and baselines, mean fold MASE
        if ablate:
            out["ablations"] = {
                name: {"seeds": list(ablate_seeds)}
                | _spread([trained(variant, seed)[0] for seed in ablate_seeds])
                for name, variant in ablations(config).items()
            }
    return out


def seed_median(forecasts: list[tuple[np.ndarray, np.ndarray | None]]):
    """The median over seeds of each forecast and quantile: for an odd number of seeds what
    `forecast.models.ensemble` serves (the inverses of the scaler and target transform are
    increasing, so the median commutes with them)."""
    point = np.median(np.stack([p for p, _ in forecasts]), axis=0)
    if forecasts[0][1] is None:
        return point, None
    return point, np.median(np.stack([q for _, q in forecasts]), axis=0)


def _spread(per_seed: list[dict[str, float]]) -> dict[str, Any]:
    mase = np.array([m["mase"] for m in per_seed])
    return {
        "per_seed": per_seed,
        "mase_mean": float(mase.mean()),
        "mase_std": float(mase.std(ddof=1)) if len(mase) > 1 else 0.0,
    }


# The options of issue 14 §2 and the value that switches each off.
OPTIONS_OFF: dict[str, Any] = {
    "target_centre": "none",
    "target_scaling": "none",
    "target_transform": "none",
    "residual": "none",
    "head_layers": [],
    "deseasonalize": "none",
}


# Each residual base and the one it is compared with (the ``other base`` variant).
OTHER_BASE = {"seasonal_naive": "exp_smoothing", "exp_smoothing": "seasonal_naive"}


def ablations(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`config` with each §2 option it turns on switched off (``no <key>``), with the other
    residual base in place of its own (``other base``), and with all of them off
    (``all off``); {} when it uses none."""
    model = config.get("model", {})
    used = [k for k, off in OPTIONS_OFF.items() if k in model and model[k] not in (off, None, [])]
    variants = {}
    for key in used:
        extra = {key: OPTIONS_OFF[key]} | ({"residual_season": None} if key == "residual" else {})
        variants[f"no {key}"] = _merge(config, {"model": extra})
        if key == "residual" and model[key] in OTHER_BASE:
            variants["other base"] = _merge(config, {"model": {key: OTHER_BASE[model[key]]}})
    if len(used) > 1:
        off = {k: OPTIONS_OFF[k] for k in used} | (
            {"residual_season": None} if "residual" in used else {}
        )
        variants["all off"] = _merge(config, {"model": off})
    return variants


def _served(forecaster: Any, frame: pd.DataFrame, series: Series, ids: list[str]):
    """The served forecaster's forecasts from each origin: (S * O, H, 1), series-major."""
    p = series.protocol
    by_id = {sid: g.reset_index(drop=True) for sid, g in frame.groupby("series", sort=True)}
    # Origins counted from each series' end, where the series of a panel line up.
    back = [len(by_id[sid]) - 1 - p.origins(len(by_id[sid])) for sid in by_id]
    if any(len(b) != len(back[0]) or (b != back[0]).any() for b in back):
        raise ValueError(f"{series.name}: its series do not share the test origins")
    point = np.empty((len(ids), len(back[0]), p.horizon))
    quant = np.empty((len(ids), len(back[0]), p.horizon, len(QUANTILES)))
    has_q = False
    for k, b in enumerate(back[0]):
        history = pd.concat([g.iloc[: len(g) - b] for g in by_id.values()], ignore_index=True)
        rows = forecaster.predict(history).sort_values(["series", "step"])
        for i, sid in enumerate(ids):
            mine = rows[rows["series"].astype(str) == sid]
            point[i, k] = mine["forecast"].to_numpy()
            if "p10" in mine:
                has_q = True
                quant[i, k] = mine[["p10", "p50", "p90"]].to_numpy()
    point = point.reshape(-1, p.horizon)[..., None]
    return point, (quant.reshape(-1, p.horizon, 1, len(QUANTILES)) if has_q else None)
