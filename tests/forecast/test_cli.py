"""The `forecast` command driven as a user would: subprocesses, exit codes, files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from forecast.cli import main
from tests.conftest import REPO_ROOT, use_store

SMALL = {
    "name": "cli_sunspots",
    "data": {"dataset": "sunspots", "last_n": 360},
    "split": {"validation": 0.2, "test": 0.2},
    "window": {"lookback": 24, "horizon": 6},
    "model": {"cell": "gru", "units": [4]},
    "training": {"epochs": 1, "batch_size": 64, "verbose": 0},
    "evaluation": {"season": 12},
    "backtest": {"folds": 2, "test_steps": 12, "min_train": 120},
}


def run_cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "forecast", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def small_config(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


def test_help_for_every_command_has_an_example(tmp_path):
    top = run_cli("--help", cwd=tmp_path)
    assert top.returncode == 0
    for command in ("train", "backtest", "predict", "datasets", "demo"):
        assert command in top.stdout
        res = run_cli(command, "--help", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert "example:" in res.stdout and f"forecast {command}" in res.stdout


def test_datasets_lists_the_bundled_data(tmp_path):
    res = run_cli("datasets", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for name in ("sp500", "eustockmarkets", "elecdemand", "sunspots"):
        assert name in res.stdout
    assert "17520 rows" in res.stdout  # elecdemand: a year of half-hours


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ("train", "missing.yaml"), "Config file not found: 'missing.yaml'"),
        (
            {
                "name": "x",
                "data": {"dataset": "sunspots"},
                "window": {"lookback": 4, "horizon": 2},
                "modle": {},
            },
            ("train", "cfg.yaml"),
            "Unknown key 'modle'. Did you mean 'model'?",
        ),
        (
            SMALL,
            ("train", "cfg.yaml", "--set", "model.cell=lstmm"),
            "`cell` must be one of",
        ),
        (
            SMALL,
            ("train", "cfg.yaml", "--set", "training.epochs=0"),
            "`epochs` must be an integer >= 1. Received: epochs=0",
        ),
        (
            SMALL,
            ("train", "cfg.yaml", "--set", "data.dataset=sunspot"),
            "Did you mean 'sunspots'?",
        ),
        (SMALL, ("backtest", "cfg.yaml", "--folds", "0"), "--folds must be >= 1"),
        (
            None,
            ("predict", "--model", "nowhere", "--input", "in.csv", "--output", "out.csv"),
            "input file 'in.csv' not found",
        ),
        (
            None,
            ("predict", "--model", "nowhere", "--input", "cfg.yaml", "--output", "out.txt"),
            "unsupported file type '.txt'",
        ),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(tmp_path, setup, args, message):
    if setup is not None:
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(setup))
    else:
        (tmp_path / "cfg.yaml").write_text("name: x\n")
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode == 2, (res.stdout, res.stderr)
    # One line, ours: no traceback and none of TensorFlow's or MLflow's start-up lines.
    assert res.stderr.startswith("forecast: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert message in res.stderr


SESSIONS = {
    "name": "sessions",
    "data": {
        "path": "cfg.yaml",
        "schema": {"time_col": "t", "targets": "y"},
        "validation": {"calendar": "observed"},
    },
    "window": {"lookback": 8, "horizon": 2},
}


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (
            SMALL,
            ("train", "cfg.yaml", "--set", "evaluation.season=132", "--set", "window.lookback=132"),
            "`evaluation.season` (132) must be shorter than `window.lookback` (132): the "
            "seasonal-naive baseline repeats the last season of each window. Set "
            "`window.lookback` above 132, a shorter `evaluation.season`, or leave "
            "'seasonal_naive' out of `evaluation.baselines`.",
        ),
        (
            SESSIONS,
            ("train", "cfg.yaml"),
            "`data.validation.calendar: observed` takes the grid from the data and infers no "
            "frequency, so the model could not date its forecasts: set `data.schema.freq` "
            "(e.g. 'B' for business days, 'h' for hours).",
        ),
    ],
)
def test_late_config_errors_now_exit_2_at_load(tmp_path, monkeypatch, capsys, setup, args, message):
    # In process (a config error never loads TensorFlow); the subprocess test above checks
    # that such an error prints one line.
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(setup))
    monkeypatch.chdir(tmp_path)
    assert main(list(args)) == 2
    assert capsys.readouterr().err == f"forecast: error: {message}\n"


def test_a_config_error_is_reported_before_tensorflow_loads(tmp_path):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({**SMALL, "modle": {}}))
    code = (
        "import sys\n"
        "from forecast.cli import main\n"
        "code = main(['train', 'cfg.yaml'])\n"
        "print(code, sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert res.stdout.split("\n")[-2] == "2 []", res.stdout
    assert "Unknown key 'modle'" in res.stderr


def test_a_model_error_after_tensorflow_loads_is_still_one_line(tmp_path):
    (tmp_path / "in.csv").write_text("timestamp,value\n2020-01-01,1\n")
    res = run_cli(
        "predict", "--model", "nowhere", "--input", "in.csv", "--output", "o.csv", cwd=tmp_path
    )
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("forecast: error: ") and res.stderr.count("\n") == 1, res.stderr


def test_existing_output_is_not_overwritten(tmp_path):
    (tmp_path / "history.csv").write_text("timestamp,value\n2020-01-01,1\n")
    out = tmp_path / "out.csv"
    out.write_text("keep me\n")
    res = run_cli(
        "predict", "--model", "x", "--input", "history.csv", "--output", "out.csv", cwd=tmp_path
    )
    assert res.returncode == 2
    assert "exists; pass --overwrite" in res.stderr
    assert out.read_text() == "keep me\n"


@pytest.mark.slow
def test_train_then_predict_round_trip_on_real_data(tmp_path, small_config, monkeypatch, capsys):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = run_cli(
        "train",
        str(small_config),
        "--set",
        f"tracking.tracking_uri={store}",
        "--set",
        "evaluation.classical=[auto_theta]",  # the quickest: the CLI prints the comparison
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert "naive" in res.stdout and "mase" in res.stdout
    assert "Against the classical baselines on the" in res.stdout and "AutoTheta" in res.stdout
    assert "Epoch" not in res.stdout + res.stderr  # no progress bar when not on a terminal
    assert "became champion" in res.stdout or "champion" in res.stdout
    assert (tmp_path / "mlruns").exists()  # artifacts stay in the job's working directory

    from pipelines import datasets

    history = datasets.load("sunspots").frame.tail(120)
    history.to_csv(tmp_path / "history.csv", index=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", store)
    out = tmp_path / "forecast.parquet"
    args = ("predict", "--model", "models:/cli_sunspots@champion", "--input", "history.csv")
    res = run_cli(*args, "--output", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    forecasts = pd.read_parquet(out)
    assert list(forecasts["step"]) == [1, 2, 3, 4, 5, 6]
    assert forecasts["forecast"].notna().all()
    expected_first = pd.Timestamp(history["timestamp"].iloc[-1]) + pd.offsets.MonthBegin(1)
    assert pd.Timestamp(forecasts["timestamp"].iloc[0]) == expected_first

    # Same model again: refuses to overwrite, then replaces with --overwrite.
    before = out.read_bytes()
    res = run_cli(*args, "--output", str(out), cwd=tmp_path)
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert out.read_bytes() == before
    # The last two calls load the model again: in process, as a fresh interpreter costs
    # ~10 s of TensorFlow and MLflow start-up each (the two above run it as a user would).
    # In process, MLflow's process-wide URI (set by an earlier test of this worker, and by
    # the autouse fixture to that test's own store) outranks the environment: point it here.
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    with use_store(store):
        assert main([*args, "--output", str(out), "--overwrite"]) == 0, capsys.readouterr().err
        pd.testing.assert_frame_equal(pd.read_parquet(out), forecasts)

        # Too-short history: exit 2 and the message says how many rows are needed.
        history.tail(10).to_csv(tmp_path / "short.csv", index=False)
        short = ("predict", "--model", "models:/cli_sunspots@champion", "--input", "short.csv")
        assert main([*short, "--output", "short_out.csv"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("forecast: error: ") and "needs at least 24 rows" in err, err
    assert not (tmp_path / "short_out.csv").exists()


@pytest.mark.slow
def test_backtest_writes_a_fold_table(tmp_path, small_config):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = run_cli(
        "-v",
        "backtest",
        str(small_config),
        "--folds",
        "2",
        "--output",
        "folds.csv",
        "--set",
        f"tracking.tracking_uri={store}",
        "--set",
        "evaluation.classical=[auto_theta]",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert "Against the classical baselines" in res.stdout and "AutoTheta" in res.stdout
    table = pd.read_csv(tmp_path / "folds.csv")
    assert sorted(table["fold"].unique()) == [0, 1]
    assert {"model", "naive", "seasonal_naive"} <= set(table["model"])
    assert "Backtest over 2 folds" in res.stdout
    assert "fold 2/2" in res.stderr  # -v shows progress even when not on a terminal


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--engine", "spark", "--input", "missing.parquet", "--output", "out"),
            "input 'missing.parquet' not found: expected a Parquet file or folder",
        ),
        (
            ("--master", "local[2]", "--input", "in.csv", "--output", "out.csv"),
            "--master is a Spark setting: use it with --engine spark",
        ),
    ],
)
def test_spark_options_are_checked_before_any_work(tmp_path, monkeypatch, capsys, args, message):
    from forecast.cli import main

    (tmp_path / "in.csv").write_text("timestamp,value\n2020-01-01,1\n")
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--model", "nowhere", *args]) == 2
    assert capsys.readouterr().err == f"forecast: error: {message}\n"
