"""Registering versions and moving the champion alias, against a real (temporary) MLflow store."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from forecast.tracking.registry import PromotionResult, load_alias_version, register_and_promote
from pipelines.errors import ConfigError

pytestmark = pytest.mark.usefixtures("migrated_mlflow_store")


class ConstantModel(mlflow.pyfunc.PythonModel):
    """Predicts one number everywhere, so a loaded alias shows which version it points at."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return pd.DataFrame({"forecast": [self.value] * len(model_input)})


def _log_model(value: float) -> str:
    mlflow.set_experiment("registry-tests")  # created now, so its artifacts go to this test's cwd
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=ConstantModel(value), pip_requirements=[]
        )
    return info.model_uri


def _champion_prediction(name: str) -> float:
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    return float(model.predict(pd.DataFrame({"x": [0.0]}))["forecast"].iloc[0])


def test_alias_moves_only_to_a_better_version():
    first = register_and_promote(_log_model(1.0), name="lstm", candidate_metric=0.90)
    assert first == PromotionResult(
        version=1,
        promoted=True,
        previous_version=None,
        previous_metric=None,
        message="Version 1 of 'lstm' is now @champion: no version held @champion before "
        "(val_mase=0.9).",
    )

    worse = register_and_promote(_log_model(2.0), name="lstm", candidate_metric=0.95)
    assert (worse.version, worse.promoted) == (2, False)
    assert (worse.previous_version, worse.previous_metric) == (1, 0.90)
    assert worse.message == (
        "Version 2 of 'lstm' was registered but not promoted: val_mase=0.95 does not beat "
        "version 1's 0.9 (lower is better)."
    )
    assert _champion_prediction("lstm") == 1.0

    better = register_and_promote(_log_model(3.0), name="lstm", candidate_metric=0.85)
    assert (better.version, better.promoted, better.previous_version) == (3, True, 1)
    assert better.message == (
        "Version 3 of 'lstm' is now @champion: val_mase=0.85 beats version 1's 0.9 "
        "(lower is better)."
    )
    assert _champion_prediction("lstm") == 3.0
    client = MlflowClient()
    assert client.get_registered_model("lstm").aliases == {"champion": 3}
    assert client.get_model_version("lstm", "2").tags["val_mase"] == "0.95"
    assert load_alias_version("lstm").version == 3


def test_tie_keeps_champion_and_higher_is_better_flips_the_comparison():
    uri = _log_model(1.0)
    register_and_promote(uri, name="clf", candidate_metric=0.7, metric_name="acc",
                         higher_is_better=True)  # fmt: skip
    tie = register_and_promote(uri, name="clf", candidate_metric=0.7, metric_name="acc",
                               higher_is_better=True)  # fmt: skip
    assert not tie.promoted
    assert "acc=0.7 does not beat version 1's 0.7 (higher is better)" in tie.message
    up = register_and_promote(uri, name="clf", candidate_metric=0.8, metric_name="acc",
                              higher_is_better=True)  # fmt: skip
    assert up.promoted and load_alias_version("clf", "champion").version == 3


def test_champion_without_the_metric_tag_is_not_replaced():
    uri = _log_model(1.0)
    register_and_promote(uri, name="m", candidate_metric=1.0, metric_name="val_mae")
    result = register_and_promote(uri, name="m", candidate_metric=0.1)
    assert not result.promoted
    assert result.previous_version == 1 and result.previous_metric is None
    assert result.message == (
        "Version 2 of 'm' was registered but not promoted: the current @champion, version 1, "
        "has no 'val_mase' tag to compare with (val_mase=0.1); set that tag or move the alias "
        "by hand."
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"candidate_metric": float("nan")}, r"`candidate_metric` must be a finite number\. "
         r"Received: candidate_metric=nan"),
        ({"candidate_metric": 1.0, "alias": "latest"}, r"Received: alias='latest'"),
        ({"candidate_metric": 1.0, "alias": "best model"}, r"may only contain letters"),
        ({"candidate_metric": 1.0, "name": " "}, r"`name` must be a non-empty model name"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_before_registering(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        register_and_promote("models:/m-unused", **{"name": "bad", **kwargs})
    assert MlflowClient().search_registered_models() == []


def test_load_alias_version_names_what_is_missing():
    with pytest.raises(ConfigError, match="No registered model is named 'ghost'"):
        load_alias_version("ghost")
    register_and_promote(_log_model(1.0), name="m", candidate_metric=1.0)
    with pytest.raises(ConfigError, match=r"has no alias 'prod'; its aliases are \['champion'\]"):
        load_alias_version("m", "prod")
