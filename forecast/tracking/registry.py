"""Model registry: register each trained model, move the champion alias only when it wins."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from forecast.config.mlflow_names import check_alias, check_model_name
from forecast.tracking.store import retry_busy
from pipelines.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionResult:
    """What `register_and_promote` did.

    Attributes:
        version: the newly registered version.
        promoted: whether the alias now points at ``version``.
        previous_version: the version holding the alias before, None if none did.
        previous_metric: that version's recorded metric, None if none or unrecorded.
        message: one sentence saying what happened, with the numbers.
    """

    version: int
    promoted: bool
    previous_version: int | None
    previous_metric: float | None
    message: str


def register_and_promote(
    model_uri: str,
    *,
    name: str,
    candidate_metric: float,
    metric_name: str = "val_mase",
    alias: str = "champion",
    higher_is_better: bool = False,
    client: MlflowClient | None = None,
) -> PromotionResult:
    """Register a model version and give it ``alias`` only if its metric beats the holder's.

    The metric is stored on the new version as tag ``metric_name``, which is where the next
    call reads the champion's score from. A tie keeps the current champion. A champion
    without that tag (promoted by hand, or scored with another metric) is not replaced
    automatically: the message says so and the alias stays.

    Args:
        model_uri: a logged model (``models:/m-...``, ``runs:/<run_id>/<name>``) or artifact URI.
        name: registered model name; created on first use.
        candidate_metric: the new version's score on ``metric_name``.
        metric_name: score used for the comparison, also the version tag key.
        alias: the alias to move; serving loads ``models:/<name>@<alias>``.
        higher_is_better: True for scores such as accuracy; False for errors such as MASE.
        client: registry client for the alias operations; defaults to ``MlflowClient()``.
            Registration goes through ``mlflow.register_model``, so it must use the same
            registry URI.

    Returns:
        A `PromotionResult`.

    Raises:
        ConfigError: ``candidate_metric`` is not finite, or ``name``/``alias``/``metric_name``
            is not valid (checked before anything is registered).
    """
    _check_arguments(name=name, alias=alias, metric_name=metric_name, metric=candidate_metric)
    client = client or MlflowClient()
    candidate = float(candidate_metric)
    registered = retry_busy(
        lambda: mlflow.register_model(model_uri, name, tags={metric_name: repr(candidate)}),
        what="register the model",
    )
    version = int(registered.version)

    holder = client.get_registered_model(name).aliases.get(alias)
    previous_version = int(holder) if holder is not None else None
    previous_metric = None
    direction = "higher" if higher_is_better else "lower"
    new = f"{metric_name}={candidate:.6g}"
    if previous_version is None:
        promoted = True
        reason = f"no version held @{alias} before ({new})"
    else:
        previous_metric = _recorded_metric(client, name, previous_version, metric_name)
        if previous_metric is None:
            promoted = False
            reason = (
                f"the current @{alias}, version {previous_version}, has no {metric_name!r} tag "
                f"to compare with ({new}); set that tag or move the alias by hand"
            )
        else:
            old = f"version {previous_version}'s {previous_metric:.6g}"
            promoted = (
                candidate > previous_metric if higher_is_better else candidate < previous_metric
            )
            verb = "beats" if promoted else "does not beat"
            reason = f"{new} {verb} {old} ({direction} is better)"

    if promoted:
        retry_busy(
            lambda: client.set_registered_model_alias(name, alias, str(version)),
            what=f"set @{alias} of {name!r}",
        )
        _settle(client, name, alias, metric_name, higher_is_better, since=previous_version)
        message = f"Version {version} of {name!r} is now @{alias}: {reason}."
    else:
        message = f"Version {version} of {name!r} was registered but not promoted: {reason}."
    logger.info(message)
    return PromotionResult(
        version=version,
        promoted=promoted,
        previous_version=previous_version,
        previous_metric=previous_metric,
        message=message,
    )


def _settle(
    client: MlflowClient,
    name: str,
    alias: str,
    metric_name: str,
    higher_is_better: bool,
    *,
    since: int | None,
    rounds: int = 5,
) -> None:
    """Leave the alias on the best of the versions registered since `since`, ours included.

    Two jobs that finish together both read the same champion, both beat it and both move
    the alias: the one that writes last wins, better or not. After moving it, each job
    looks at every version registered after the champion it compared with (the concurrent
    candidates) and moves the alias to the best of them if it is not there; every job that
    moved the alias checks again after its own write, so the last write is a checked one.
    A tie goes to the earlier version, as a tie keeps the champion.
    """
    for _ in range(rounds):
        versions = client.search_model_versions(f"name = '{name}'")
        scored = []
        for mv in versions:
            number = int(mv.version)
            if since is not None and number <= since:
                continue
            metric = _recorded_metric_of(mv.tags.get(metric_name))
            if metric is not None:
                scored.append((-metric if higher_is_better else metric, number))
        if not scored:
            return
        _, best = min(scored)
        holder = client.get_registered_model(name).aliases.get(alias)
        if holder is not None and int(holder) == best:
            return
        if holder is not None and since is not None and int(holder) <= since:
            return  # moved back by hand to an older version meanwhile: leave it
        retry_busy(
            lambda best=best: client.set_registered_model_alias(name, alias, str(best)),
            what=f"set @{alias} of {name!r}",
        )
    logger.warning("The @%s alias of %r kept moving; left it at its last holder.", alias, name)


def _recorded_metric_of(tag: str | None) -> float | None:
    try:
        value = float(tag) if tag is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def load_alias_version(
    name: str, alias: str = "champion", *, client: MlflowClient | None = None
) -> ModelVersion:
    """Return the version of registered model ``name`` that holds ``alias``.

    Its model loads with ``mlflow.pyfunc.load_model(f"models:/{name}@{alias}")``.

    Raises:
        ConfigError: the registered model does not exist or no version holds ``alias``;
            the message lists the aliases that do exist.
    """
    client = client or MlflowClient()
    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise
        raise ConfigError(f"No registered model is named {name!r}.") from None
    if alias not in aliases:
        raise ConfigError(
            f"Registered model {name!r} has no alias {alias!r}; its aliases are {sorted(aliases)}."
        )
    return client.get_model_version(name, str(aliases[alias]))


def _recorded_metric(client: MlflowClient, name: str, version: int, key: str) -> float | None:
    tag = client.get_model_version(name, str(version)).tags.get(key)
    try:
        value = float(tag) if tag is not None else None
    except ValueError:
        logger.warning("Version %s of %r has a non-numeric %r tag: %r", version, name, key, tag)
        return None
    return value if value is not None and math.isfinite(value) else None


def _check_arguments(*, name: str, alias: str, metric_name: str, metric: float) -> None:
    check_model_name("name", name)
    check_alias("alias", alias)
    if not isinstance(metric_name, str) or not metric_name:
        raise ConfigError(f"`metric_name` must be a non-empty string. Received: {metric_name!r}")
    try:
        finite = math.isfinite(float(metric))
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise ConfigError(
            f"`candidate_metric` must be a finite number. Received: candidate_metric={metric!r}"
        )
