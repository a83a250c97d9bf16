"""Where training runs: one device, every local GPU (or CPU), or the workers of TF_CONFIG.

`training.strategy` picks a `tf.distribute.Strategy`; `forecast.training.fitting.train_model` builds
and compiles the model inside its scope and Keras splits each batch of the tf.data dataset
across the replicas, so `training.batch_size` is the global batch (summed over replicas).
The trained model is an ordinary Keras model: it saves, reloads and serves as without one.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import keras
import tensorflow as tf

from forecast.config.training import check_strategy
from pipelines.errors import ConfigError

log = logging.getLogger(__name__)

# One strategy per kind and process: MultiWorkerMirroredStrategy configures the process's
# collective ops and cannot be created twice, and backtest folds reuse the same devices.
_CREATED: dict[str, tf.distribute.Strategy] = {}


def read_tf_config() -> dict[str, Any]:
    """The parsed `TF_CONFIG` environment variable that `multi_worker` needs.

    Returns:
        ``{"cluster": {"worker": ["host:port", ...], ...}, "task": {"type": ..., "index": ...}}``.

    Raises:
        ConfigError: TF_CONFIG is missing, is not JSON, or lacks `cluster` / `task`.
    """
    raw = os.environ.get("TF_CONFIG")
    example = '\'{"cluster": {"worker": ["host1:12345"]}, "task": {"type": "worker", "index": 0}}\''
    if not raw:
        raise ConfigError(
            "`training.strategy: multi_worker` needs the TF_CONFIG environment variable, "
            f"e.g. TF_CONFIG={example}. Received: TF_CONFIG unset"
        )
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"TF_CONFIG must be JSON such as {example}. Received: TF_CONFIG={raw!r} ({err})"
        ) from None
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    if (
        not isinstance(cluster, dict)
        or not any(cluster.get(role) for role in ("worker", "chief"))
        or not isinstance(task, dict)
        or not {"type", "index"} <= task.keys()
    ):
        raise ConfigError(
            "TF_CONFIG needs a `cluster` with a `worker` (or `chief`) address list and a "
            f"`task` with `type` and `index`, e.g. {example}. Received: TF_CONFIG={raw!r}"
        )
    return tf_config


def _check_one_worker(tf_config: dict[str, Any]) -> None:
    """Refuse clusters of several tasks, which Keras' `fit` cannot train on (yet).

    With two workers, Keras 3.15 averages the first batch across the workers to build the
    metrics and MultiWorkerMirroredStrategy cannot reduce a dict of inputs ("Attempt to
    convert a value ({'past': PerReplica...}) ... to a Tensor"; keras-team/keras#20329,
    #20585). Checked here, before a cluster spends any time; drop this check with a Keras
    release that trains the TensorFlow multi-worker tutorial.
    """
    cluster = tf_config["cluster"]
    tasks = sum(len(cluster.get(role) or ()) for role in ("chief", "worker"))
    if tasks > 1:
        raise ConfigError(
            f"`training.strategy: multi_worker` cannot train on {tasks} workers with Keras "
            f"{keras.__version__}: its `fit` fails on a distributed batch of dict inputs "
            "(keras-team/keras#20329, #20585). Use `mirrored` on one machine with several "
            f"GPUs. Received: TF_CONFIG cluster {cluster}"
        )


def mirrored_devices() -> list[str]:
    """The devices `mirrored` replicates over: every visible GPU, else every logical CPU."""
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [d.name for d in devices]


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute.Strategy` of `training.strategy`, created once per process.

    ``none`` returns the current strategy (the default one outside any scope), so
    training runs exactly as without distribution. ``mirrored`` copies the model on
    every visible GPU, or on every logical CPU device when there is no GPU (one unless
    configured with `tf.config.set_logical_device_configuration`). ``multi_worker`` is
    `tf.distribute.MultiWorkerMirroredStrategy`, set up from TF_CONFIG; it must be
    created before TensorFlow runs any op, so the jobs create it before loading data,
    and (with Keras 3.15) its cluster must have one worker (`_check_one_worker`).

    Raises:
        ConfigError: an unknown name, a missing or malformed TF_CONFIG, a cluster of
            several workers, or ``multi_worker`` asked for after TensorFlow started.
    """
    check_strategy(name)
    if name == "none":
        return tf.distribute.get_strategy()
    if name not in _CREATED:
        if name == "mirrored":
            _CREATED[name] = tf.distribute.MirroredStrategy(mirrored_devices())
        else:
            _check_one_worker(read_tf_config())
            try:
                _CREATED[name] = tf.distribute.MultiWorkerMirroredStrategy()
            except RuntimeError as err:  # "Collective ops must be configured at program startup"
                raise ConfigError(
                    "`training.strategy: multi_worker` must be set up before TensorFlow runs "
                    "any op: call `forecast.training.distribute.make_strategy('multi_worker')` at the "
                    f"start of the program (the train and backtest jobs do). Received: {err}"
                ) from None
        strategy = _CREATED[name]
        log.info(
            "training.strategy=%s: %d replicas in sync on %s",
            name,
            strategy.num_replicas_in_sync,
            list(strategy.extended.worker_devices),
        )
    return _CREATED[name]


def even_batch_size(batch_size: int, n_windows: int, replicas: int) -> int:
    """A batch size whose first batch splits evenly across `replicas`.

    Keras (3.15, TensorFlow backend) averages the first batch over the replicas to build
    the model's metrics, which fails with "Inputs to operation AddN ... must have the
    same size and shape" when the replicas' shares differ (keras-team/keras#19246). A
    dataset smaller than one batch is therefore batched at the largest multiple of
    `replicas` it holds; later, smaller batches are split unevenly without trouble.
    """
    if replicas == 1 or n_windows >= batch_size:
        return batch_size
    return max(n_windows - n_windows % replicas, replicas)
