"""Serialization: config round trips of every custom object and `.keras` files in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from forecast.models import ForecastModel, ModelSpec
from tests.conftest import REPO_ROOT
from tests.forecast.models.util import as_numpy, make_inputs, max_abs_diff, tiny_model


@pytest.mark.parametrize(
    "spec",
    [
        {"cell": "gru", "head": "seq2seq", "quantiles": (0.1, 0.5, 0.9)},
        {"cell": "peephole_lstm", "mode": "dynamic", "bidirectional": True, "merge_mode": "sum"},
    ],
    ids=["seq2seq", "peephole"],
)
def test_forecast_model_config_round_trip(spec):
    model = tiny_model(**spec)
    config = model.get_config()
    assert ModelSpec.from_dict(config["spec"]) == model.spec
    clone = ForecastModel.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    x = make_inputs(model)
    assert max_abs_diff(clone(x), model(x)) == 0.0
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(model))
    assert isinstance(restored, ForecastModel) and restored.get_config() == config


def test_summary_and_weights_are_those_of_the_network():
    model = tiny_model(units=(4,), n_future=0)
    lines = []
    model.network.summary(print_fn=lines.append)
    assert any("encoder_0" in line for line in lines)
    assert model.count_params() == model.network.count_params()


FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    import keras
    import numpy as np

    names = sys.argv[1:]
    try:
        keras.saving.load_model(names[0] + ".keras")
    except Exception as err:  # the custom classes are not registered yet
        print("unregistered:", type(err).__name__)
    else:
        raise SystemExit("loaded without importing forecast.models")

    import forecast.models  # noqa: F401  registers cells, layers, loss and model

    for name in names:
        model = keras.saving.load_model(name + ".keras")
        inputs = dict(np.load(name + "_in.npz"))
        out = model.predict(inputs, verbose=0)
        out = out if isinstance(out, dict) else {"forecast": out}
        np.savez(name + "_out.npz", **out)
    """
)


@pytest.mark.slow
def test_keras_files_reload_in_a_fresh_process(tmp_path):
    variants = {
        "direct": {"cell": "lstm", "units": (5, 4)},
        "peephole": {"cell": "peephole_lstm", "mode": "dynamic", "quantiles": (0.1, 0.5, 0.9)},
        "seq2seq": {"cell": "gru", "head": "seq2seq", "bidirectional": True, "layer_norm": True},
        "scaled": {
            "mode": "dynamic",
            "head": "seq2seq",
            "quantiles": (0.1, 0.5, 0.9),
            "target_scaling": "window_rms",
        },
        "ewma": {
            "mode": "dynamic",
            "quantiles": (0.1, 0.5, 0.9),
            "target_scaling": "ewma_rms",
            "target_scale_halflife": 2,
        },
    }
    expected = {}
    for name, spec in variants.items():
        model = tiny_model(**spec)
        x = make_inputs(model)
        model.save(tmp_path / f"{name}.keras")
        np.savez(tmp_path / f"{name}_in.npz", **x)
        out = as_numpy(model(x))
        expected[name] = out if isinstance(out, dict) else {"forecast": out}
    (tmp_path / "load.py").write_text(FRESH_PROCESS)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "load.py", *variants],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "unregistered:" in done.stdout
    for name, want in expected.items():
        got = dict(np.load(tmp_path / f"{name}_out.npz"))
        assert set(got) == set(want)
        for key in want:
            assert np.abs(got[key] - want[key]).max() < 1e-6, f"{name}/{key}"
