"""MLflow runs for training and backtests: config as params, lineage, metrics, failures."""

from __future__ import annotations

import functools
import json
import logging
import math
import subprocess
import tempfile
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

import forecast
from forecast.tracking.recovery import OWNER_TAG, current_owner, mark_dead_runs
from forecast.tracking.store import (  # noqa: F401 - resolve_tracking_uri is used from here
    DEFAULT_TRACKING_URI,
    resolve_tracking_uri,
    retry_busy,
)
from pipelines.errors import ConfigError, DataValidationError

logger = logging.getLogger(__name__)

# Limits of the MLflow tracking store (mlflow/utils/validation.py).
MAX_PARAM_VALUE_LENGTH = 6000
MAX_KEY_LENGTH = 250
# The error tag is for the runs table; the full traceback goes to `error.txt`.
MAX_ERROR_TAG_LENGTH = 500
_TRUNCATED = "...[truncated; the full value is in config.yaml]"

VERSION_TAG = "forecast.version"
GIT_COMMIT_TAG = "forecast.git_commit"
ERROR_TAG = "error"
TARGETS_INPUT_TAG = "forecast.targets"


def ensure_experiment(name: str, *, artifact_location: str | None = None) -> str:
    """Return the id of experiment ``name``, creating it when it does not exist yet.

    Args:
        name: experiment name.
        artifact_location: where a newly created experiment stores artifacts (a directory or
            URI). None keeps MLflow's default, ``./mlruns/<id>`` of the working directory with a
            SQLite store. An existing experiment keeps the location it was created with.

    Returns:
        The experiment id.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"`experiment` must be a non-empty name. Received: experiment={name!r}")
    existing = mlflow.get_experiment_by_name(name)
    if existing is None:
        try:
            return mlflow.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as exc:
            # Another process created it between our lookup and our create.
            if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            existing = mlflow.get_experiment_by_name(name)
            assert existing is not None
    if artifact_location is not None and existing.artifact_location != artifact_location:
        logger.warning(
            "Experiment %r already stores artifacts in %s; artifact_location=%s is ignored.",
            name,
            existing.artifact_location,
            artifact_location,
        )
    return existing.experiment_id


def flatten_config(config: Mapping[str, Any], *, sep: str = ".") -> dict[str, str]:
    """Flatten a nested config into MLflow params.

    Nested keys are joined with ``sep``; lists, tuples and empty mappings become JSON strings;
    other values are written with ``str`` as MLflow would. Values longer than MLflow's 6000
    characters are cut with a note pointing at ``config.yaml``, which keeps the exact config.

    Args:
        config: string keys to str, int, float, bool, None, lists/tuples, nested mappings.
        sep: separator between nested keys.

    Returns:
        Flat ``{key: value}`` of strings, in the config's order.

    Raises:
        ConfigError: a key is not a non-empty string, two paths flatten to the same key, a key
            exceeds MLflow's 250 characters, or a value is not a plain type.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"`config` must be a mapping. Received: {type(config).__name__}")
    plain = _plain_config(config)
    flat: dict[str, str] = {}
    _flatten_into(plain, prefix="", sep=sep, out=flat)
    return flat


def _plain_config(config: Any, path: str = "config") -> Any:
    """Check a config holds only YAML/JSON-safe values; return it with tuples as lists."""
    if isinstance(config, Mapping):
        out = {}
        for key, value in config.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(
                    f"Config keys must be non-empty strings; {path} has key {key!r} "
                    f"of type {type(key).__name__}."
                )
            out[key] = _plain_config(value, f"{path}.{key}")
        return out
    if isinstance(config, list | tuple):
        return [_plain_config(item, f"{path}[{i}]") for i, item in enumerate(config)]
    if isinstance(config, np.generic):
        return config.item()
    if config is None or isinstance(config, str | bool | int | float):
        return config
    raise ConfigError(
        f"Config values must be str, int, float, bool, None, lists or mappings; "
        f"{path} is {type(config).__name__}: {config!r}."
    )


def _flatten_into(node: dict[str, Any], *, prefix: str, sep: str, out: dict[str, str]) -> None:
    for key, value in node.items():
        flat_key = f"{prefix}{sep}{key}" if prefix else key
        if isinstance(value, dict) and value:
            _flatten_into(value, prefix=flat_key, sep=sep, out=out)
            continue
        if flat_key in out:
            raise ConfigError(
                f"Two config entries flatten to the same param {flat_key!r}; rename one "
                f"(keys must not contain {sep!r} where a nested key would produce the same path)."
            )
        if len(flat_key) > MAX_KEY_LENGTH:
            raise ConfigError(
                f"Config key {flat_key!r} is {len(flat_key)} characters; MLflow allows "
                f"{MAX_KEY_LENGTH}."
            )
        text = json.dumps(value) if isinstance(value, list | dict) else str(value)
        if len(text) > MAX_PARAM_VALUE_LENGTH:
            text = text[: MAX_PARAM_VALUE_LENGTH - len(_TRUNCATED)] + _TRUNCATED
        out[flat_key] = text


@functools.cache
def _git_commit() -> str | None:
    """The commit of the checkout the package runs from; None for an installed copy."""
    package_dir = Path(forecast.__file__).resolve().parent
    try:
        # Only trust HEAD when the package files are tracked there: a site-packages copy inside
        # someone else's repository would otherwise report that repository's commit.
        subprocess.run(
            ["git", "ls-files", "--error-unmatch", "__init__.py"],
            cwd=package_dir,
            capture_output=True,
            check=True,
            timeout=10,
        )
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=package_dir,
            capture_output=True,
            check=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() or None


def _require_active_run(caller: str) -> mlflow.ActiveRun:
    # MLflow's fluent log_* calls silently start a new run when none is active.
    run = mlflow.active_run()
    if run is None:
        raise ConfigError(f"`{caller}` needs an active MLflow run: call it inside `tracked_run`.")
    return run


@contextmanager
def tracked_run(
    *,
    experiment: str,
    run_name: str | None,
    config: Mapping[str, Any],
    tags: Mapping[str, Any] | None = None,
    nested: bool = False,
    artifact_location: str | None = None,
    resume_run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Run the body inside an MLflow run that records its config, code version and outcome.

    Logs ``config`` flattened as params (see `flatten_config`) and as ``config.yaml``; tags the
    run with the package version and the git commit when the package runs from a checkout. If
    the body raises, the run ends FAILED (KILLED on Ctrl-C) with an ``error`` tag and the
    traceback in ``error.txt``, and the exception propagates. Each run is tagged with the
    process that owns it; a top-level run first ends the experiment's runs whose owner died
    as KILLED (`forecast.tracking.recovery.mark_dead_runs`).

    Args:
        experiment: experiment name; created when missing (see `ensure_experiment`).
        run_name: display name, or None for MLflow's generated one.
        config: the run's full configuration, as plain nested values.
        tags: extra run tags.
        nested: start a child run of the active run (one per backtest fold, say).
        artifact_location: artifact location for a newly created experiment.
        resume_run_id: continue this (killed or failed) run instead of starting one; its
            params and ``config.yaml`` are already logged (check it with
            `forecast.tracking.recovery.resumable_run` first).

    Yields:
        The active run; ``run.info.run_id`` identifies it.

    Raises:
        ConfigError: bad config, ``nested=True`` with no active run, ``nested=False`` while
            a run is active, or a nested run in another experiment than its parent.

    Example:
        >>> with tracked_run(experiment="m4", run_name="lstm", config=cfg) as run:
        ...     log_metrics({"mase": 0.91}, prefix="val")
    """
    params = flatten_config(config)
    config_yaml = yaml.safe_dump(_plain_config(config), sort_keys=False)
    run_tags = {VERSION_TAG: forecast.__version__}
    if (commit := _git_commit()) is not None:
        run_tags[GIT_COMMIT_TAG] = commit
    run_tags.update({str(k): str(v) for k, v in (tags or {}).items()})
    run_tags[OWNER_TAG] = current_owner().tag()

    parent = mlflow.active_run()
    if nested and parent is None:
        raise ConfigError("`nested=True` needs an active parent run; start one with tracked_run.")
    if not nested and parent is not None:
        raise ConfigError(
            f"Run {parent.info.run_id} is still active; pass nested=True to start a child run."
        )
    if parent is not None:
        parent_experiment = mlflow.get_experiment(parent.info.experiment_id).name
        if parent_experiment != experiment:
            raise ConfigError(
                f"A nested run must share its parent's experiment {parent_experiment!r}. "
                f"Received: experiment={experiment!r}"
            )
    experiment_id = ensure_experiment(experiment, artifact_location=artifact_location)
    if not nested:
        mark_dead_runs(experiment_id)

    if resume_run_id is not None:
        run = mlflow.start_run(run_id=resume_run_id, tags=run_tags)
        if ERROR_TAG in run.data.tags:
            mlflow.MlflowClient().delete_tag(resume_run_id, ERROR_TAG)
    else:
        run = mlflow.start_run(
            experiment_id=experiment_id, run_name=run_name, nested=nested, tags=run_tags
        )
    try:
        if resume_run_id is None:
            mlflow.log_params(params)
            mlflow.log_text(config_yaml, "config.yaml")
        yield run
    except BaseException as exc:
        _record_failure(run.info.run_id, exc)
        killed = isinstance(exc, KeyboardInterrupt)
        mlflow.end_run(status=RunStatus.to_string(RunStatus.KILLED if killed else RunStatus.FAILED))
        raise
    mlflow.end_run()


def _record_failure(run_id: str, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}"
    if len(message) > MAX_ERROR_TAG_LENGTH:
        message = message[: MAX_ERROR_TAG_LENGTH - 3] + "..."
    try:
        mlflow.MlflowClient().set_tag(run_id, ERROR_TAG, message)
        mlflow.log_text("".join(traceback.format_exception(exc)), "error.txt", run_id=run_id)
    except Exception:  # never hide the body's error behind a logging error
        logger.exception("Could not record the failure of the MLflow run.")


def _finite_metrics(metrics: Mapping[str, Any], prefix: str) -> dict[str, float]:
    stem = f"{prefix.rstrip('_')}_" if prefix else ""
    out = {}
    for name, value in metrics.items():
        key = f"{stem}{name}"
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise DataValidationError(
                f"Metric {key!r} must be a number. Received: {value!r}"
            ) from None
        if not math.isfinite(number):
            raise DataValidationError(
                f"Metric {key!r} is {number}; only finite values are logged "
                f"(a NaN or infinite score usually means an empty or diverged evaluation)."
            )
        out[key] = number
    return out


def log_metrics(
    metrics: Mapping[str, float], *, prefix: str = "", step: int | None = None
) -> dict[str, float]:
    """Log metrics to the active run, refusing NaN and infinite values.

    Args:
        metrics: ``{name: value}``.
        prefix: prepended to each name with ``_`` (``prefix="val"`` logs ``val_mase``).
        step: the step (epoch, fold) the values belong to.

    Returns:
        The names and values as logged.

    Raises:
        DataValidationError: a value is not a finite number (nothing is logged then).
        ConfigError: no run is active.
    """
    _require_active_run("log_metrics")
    logged = _finite_metrics(metrics, prefix)
    mlflow.log_metrics(logged, step=step)
    return logged


def metric_names(
    model_metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    *,
    split: str = "test",
) -> dict[str, float]:
    """Name a model's and its baselines' scores for one split in one flat dict.

    Args:
        model_metrics: the model's ``{metric: value}``, e.g. ``{"mase": 0.9, "mae": 3.1}``.
        baselines: ``{baseline: {metric: value}}``, e.g. ``{"naive": {"mase": 1.0}}``.
        split: the evaluation split the scores come from.

    Returns:
        ``{"test_mase": 0.9, "test_mae": 3.1, "naive_test_mase": 1.0, ...}``.

    Raises:
        ConfigError: a baseline name is empty or two entries end up with the same name.
    """
    named = {f"{split}_{metric}": value for metric, value in model_metrics.items()}
    for baseline, scores in baselines.items():
        if not isinstance(baseline, str) or not baseline:
            raise ConfigError(f"Baseline names must be non-empty strings. Received: {baseline!r}")
        for metric, value in scores.items():
            key = f"{baseline}_{split}_{metric}"
            if key in named:
                raise ConfigError(
                    f"Metric name {key!r} is produced twice; rename baseline {baseline!r}."
                )
            named[key] = value
    return named


def table_metric_names(table: pd.DataFrame, *, split: str) -> dict[str, float]:
    """`metric_names` for a tidy (model, metric, value) score table; "model" is the model."""
    is_model = table["model"] == "model"
    model = dict(zip(table.loc[is_model, "metric"], table.loc[is_model, "value"], strict=True))
    baselines = {
        name: dict(zip(g["metric"], g["value"], strict=True))
        for name, g in table[~is_model].groupby("model")
    }
    return metric_names(model, baselines, split=split)


class MlflowEpochLogger(keras.callbacks.Callback):
    """Keras callback logging each epoch's ``logs`` to the active MLflow run, ``step=epoch``.

    Non-finite values (a diverged loss) are skipped with a warning rather than stopping
    training; add ``keras.callbacks.TerminateOnNaN`` to stop instead.

    Args:
        prefix: prepended to each metric name with ``_``.
    """

    def __init__(self, *, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix
        self._run_id: str | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # Pin the run now so the epochs land in it even if another run becomes active later.
        self._run_id = _require_active_run("MlflowEpochLogger").info.run_id

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        finite = {}
        for name, value in (logs or {}).items():
            try:
                finite.update(_finite_metrics({name: value}, self.prefix))
            except DataValidationError as exc:
                logger.warning("Epoch %d: %s Skipped.", epoch, exc)
        if finite:
            mlflow.log_metrics(finite, step=epoch, run_id=self._run_id)


def log_dataset(
    frame: pd.DataFrame,
    *,
    name: str,
    context: str = "training",
    targets: str | Sequence[str] | None = None,
    source: str | None = None,
) -> str:
    """Record a frame as an input of the active run (schema, profile, digest).

    Args:
        frame: the data the run reads.
        name: dataset name shown in the UI.
        context: its role: ``"training"``, ``"validation"``, ``"test"``, ``"backtest"``.
        targets: target column(s); recorded as the ``forecast.targets`` input tag, and given to
            MLflow's dataset when there is exactly one.
        source: where the frame came from (path or URI), if known.

    Returns:
        The dataset digest: equal frames give equal digests.

    Raises:
        DataValidationError: a target column is missing from ``frame``.
        ConfigError: no run is active.
    """
    _require_active_run("log_dataset")
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(
            f"`frame` must be a pandas DataFrame. Received: {type(frame).__name__}"
        )
    target_list = [targets] if isinstance(targets, str) else list(targets or [])
    missing = [t for t in target_list if t not in frame.columns]
    if missing:
        raise DataValidationError(
            f"Target columns {missing} are not in dataset {name!r}; its columns are "
            f"{[str(c) for c in frame.columns]}."
        )
    dataset = mlflow.data.from_pandas(
        frame,
        source=source,
        name=name,
        targets=target_list[0] if len(target_list) == 1 else None,
    )
    input_tags = {TARGETS_INPUT_TAG: json.dumps(target_list)} if target_list else None
    # Two jobs logging the same dataset at once race on its row (UNIQUE constraint failed:
    # datasets); the retry finds the row the other one wrote.
    retry_busy(
        lambda: mlflow.log_input(dataset, context=context, tags=input_tags), what="log the dataset"
    )
    return dataset.digest


def log_figure(figure: Any, name: str) -> None:
    """Log a matplotlib figure as artifact ``name`` and close it, so loops over folds don't leak."""
    _require_active_run("log_figure")
    mlflow.log_figure(figure, name)
    import matplotlib.pyplot as plt  # only figure callers pay for matplotlib

    plt.close(figure)


def log_table_csv(frame: pd.DataFrame, name: str) -> None:
    """Log a frame as a CSV artifact ``name`` (MLflow's ``log_table`` writes JSON)."""
    _require_active_run("log_table_csv")
    if not name.endswith(".csv"):
        raise ConfigError(f"`name` must end in '.csv'. Received: name={name!r}")
    directory, _, filename = name.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        # Keep a meaningful index (timestamps, series ids); drop the default 0..n-1.
        frame.to_csv(path, index=not isinstance(frame.index, pd.RangeIndex))
        mlflow.log_artifact(str(path), artifact_path=directory or None)
