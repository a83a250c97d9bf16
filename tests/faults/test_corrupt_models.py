"""Corrupted model artifacts: one clear error naming the model and the file, at load."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import mlflow
import pytest

from forecast.cli import main
from forecast.config import load_config
from forecast.jobs.train import train_job
from forecast.serving.artifacts import ModelLoadError
from forecast.serving.local_server import ModelServer
from pipelines import datasets
from tests.conftest import REPO_ROOT, use_store
from tests.faults.conftest import run_cli, write_config


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A real logged model (one epoch) and the folder its artifacts live in."""
    root = tmp_path_factory.mktemp("corrupt")
    store = f"sqlite:///{root / 'mlflow.db'}"
    config_path = write_config(root / "tiny.yaml", training={"epochs": 1, "verbose": 0})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        config = load_config(config_path, (f"tracking.tracking_uri={store}",))
        outcome = train_job(config, register=False)
    with use_store(store):
        model_id = outcome.model_uri.removeprefix("models:/")
        location = mlflow.MlflowClient().get_logged_model(model_id).artifact_location
    folder = Path(location.removeprefix("file://"))
    history = root / "history.csv"
    datasets.load("sunspots").frame.tail(60).to_csv(history, index=False)
    return outcome.model_uri, folder, store, root, history


@pytest.fixture
def broken(logged):
    """Yield the model's files to break; put the originals back afterwards."""
    uri, folder, store, root, history = logged
    backup = root / "backup"
    shutil.copytree(folder, backup)
    try:
        with use_store(store):
            yield uri, folder / "artifacts" / "forecaster", root, history
    finally:
        shutil.rmtree(folder)
        shutil.move(backup, folder)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot json{")


def _drop_scaler(path: Path) -> None:
    state = json.loads(path.read_text())
    del state["scaler"]
    path.write_text(json.dumps(state))


CASES = [
    ("model.keras", _truncate, "is not a readable Keras archive (truncated or corrupted"),
    ("model.keras", _flip_a_bit, "is corrupted"),
    ("model.keras", Path.unlink, "is missing"),
    ("pipeline.json", _garbage, "is not valid JSON (truncated or corrupted"),
    ("pipeline.json", _truncate, "is not valid JSON (truncated or corrupted"),
    ("pipeline.json", _drop_scaler, "is incomplete: it lacks key 'scaler'"),
    ("pipeline.json", Path.unlink, "is missing"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "damage", "problem"), CASES)
def test_predict_names_the_model_and_the_broken_artifact(broken, capsys, name, damage, problem):
    uri, files, root, history = broken
    damage(files / name)
    out = root / "out.csv"
    code = main(["predict", "--model", uri, "--input", str(history), "--output", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(
        f"forecast: error: cannot load model {uri}: artifact 'artifacts/forecaster/{name}' "
        f"{problem}"
    ), err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not out.exists()
    # The pyfunc flavour says the same.
    with pytest.raises(ModelLoadError) as exc:
        mlflow.pyfunc.load_model(uri)
    assert str(exc.value).startswith(f"cannot load model {uri}: artifact 'artifacts/forecaster/")
    assert problem in str(exc.value)


@pytest.mark.slow
def test_the_cli_exits_2_on_a_truncated_model_and_serving_it_fails_at_startup(broken):
    uri, files, root, history = broken
    _truncate(files / "model.keras")
    res = run_cli("predict", "--model", uri, "--input", str(history), "--output", "o.csv", cwd=root)
    assert res.returncode == 2, res.stderr
    message = f"cannot load model {uri}: artifact 'artifacts/forecaster/model.keras' is not"
    assert message in res.stderr and "Traceback" not in res.stderr

    server = ModelServer(uri, cwd=root).start()
    try:
        with pytest.raises(RuntimeError, match="exited with code") as exc:
            server.wait_ready(timeout=120)
    finally:
        server.stop()
    assert message in str(exc.value)


def test_a_truncated_pickle_of_an_old_model_is_named(tmp_path, capsys):
    with tarfile.open(REPO_ROOT / "tests/fixtures/legacy_pyfunc/model.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    model = tmp_path / "model"
    _truncate(model / "python_model.pkl")
    request = REPO_ROOT / "tests/fixtures/legacy_pyfunc/request.parquet"
    code = main(["predict", "--model", str(model), "--input", str(request), "--output", "o.csv"])
    # (MLflow's warning that the fixture was logged with another pandas comes first.)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err.startswith(
        f"forecast: error: cannot load model {model}: artifact 'python_model.pkl' is truncated"
    ), err


def test_a_saved_forecaster_folder_with_a_broken_file_is_named(tmp_path, capsys):
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    (folder / "pipeline.json").write_text("{}")
    code = main(["predict", "--model", str(folder), "--input", "x.csv", "--output", "o.csv"])
    assert code == 2  # the missing input is reported first, before the model is read
    (tmp_path / "x.csv").write_text("timestamp,value\n2000-01-01,1\n")
    code = main(["predict", "--model", str(folder), "--input", "x.csv", "--output", "o.csv"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err == (
        f"forecast: error: cannot load model {folder}: artifact 'pipeline.json' is incomplete: "
        "it is invalid: Unknown pipeline state format None; expected 'rnn-forecast/pipeline-v1'."
    )
