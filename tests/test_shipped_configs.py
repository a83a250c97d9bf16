"""Every shipped config runs end to end: train (one epoch, a short slice), score next to its
baselines, log, and serve the logged model from raw history."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from forecast.config import load_config
from forecast.jobs.demo import demo_request
from forecast.jobs.train import train_job
from pipelines import datasets
from tests.conftest import REPO_ROOT

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))


def test_every_bundled_dataset_has_a_config_of_its_name():
    assert [p.stem for p in CONFIGS] == sorted(datasets.names())
    assert all(load_config(p).data.dataset == p.stem for p in CONFIGS)


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_trains_scores_and_serves(path, tmp_path):
    # The quickest classical model keeps the comparison's path (many series, returns,
    # masks, half-hours) in this test at a second per config.
    overrides = ("training.epochs=1", "data.last_n=700", "evaluation.classical=[auto_theta]")
    config = load_config(path, overrides)
    with contextlib.chdir(tmp_path):  # MLflow writes artifacts under ./mlruns
        outcome = train_job(config, register=False)
    scores = outcome.scores
    test = scores[(scores["part"] == "test") & (scores["model"] == "model")]
    assert np.isfinite(test.set_index("metric")["value"]["mase"])
    assert set(config.evaluation.baselines) <= set(scores["model"])
    classical = outcome.comparison.wide()
    assert np.isfinite(classical.loc[["model", "auto_theta"], "mase"]).all()
    assert "AutoTheta (MASE" in outcome.verdict()
    forecaster = outcome.fitted.forecaster
    assert forecaster.state.calibration_windows == config.calibration.windows
    request, _ = demo_request(outcome)
    rows = forecaster.predict(request)
    n_series = (
        request[forecaster.state.raw_schema.id_col].nunique()
        if forecaster.state.raw_schema.id_col
        else 1
    )
    assert len(rows) == n_series * config.window.horizon * len(forecaster.state.schema.targets)
    assert np.isfinite(rows["forecast"]).all()
    if config.model.quantiles:
        q = rows[["p10", "p50", "p90"]].to_numpy()
        assert (np.diff(q, axis=1) >= 0).all()
