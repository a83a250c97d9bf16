"""The analyst notebooks: committed without outputs, and each runs top to bottom in quick mode."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

from tests.conftest import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
NAMES = ("01_financial", "02_sensor", "03_mlflow")
QUICK_SWITCH = 'QUICK = os.environ.get("FORECAST_NOTEBOOK_QUICK") == "1"'
# The notebooks delete their scratch MLflow folders (named with this prefix) in the last cell.
SCRATCH_PREFIX = "forecast-nb"

# What each notebook must print once it has computed its results (regular expressions).
EXPECTED = {
    "01_financial": [
        r"Backtest over 2 folds: the model beats naive in [0-2] and drift in [0-2] of them",
    ],
    "02_sensor": [
        r"same test windows for every model: True",
        r"static LSTM: History too short: 'series_0' has 60 rows",
        r"Best model on test MAE: (static LSTM|dynamic LSTM|dynamic BiLSTM) \(\d+\.\d{3} GW\)",
    ],
    "03_mlflow": [
        r"Version 1 of 'elecdemand-forecaster' is now @champion",
        r"HTTP 200: 48 forecast rows",
        r"HTTP 400 for a 10-row history: History too short",
    ],
}


def _says(word: str, model: float, other: float) -> bool:
    """Whether a printed verdict agrees with the printed numbers (rounded, so ties pass)."""
    return model <= other if word == "beats" else model >= other


# Verdicts whose word depends on the run: each must agree with the numbers printed beside it.
VERDICTS = {
    "01_financial": [
        (
            r"the median forecast (beats|does NOT beat) it: MASE (\d+\.\d+) vs (\d+\.\d+) "
            r"\(zero return\) and (\d+\.\d+) \(mean return\)",
            lambda word, m, rw, drift: _says(word, float(m), min(float(rw), float(drift))),
        ),
        (
            r"(beats|does NOT beat) naive \(MASE (\d+\.\d+) vs (\d+\.\d+)\)",
            lambda word, m, naive: _says(word, float(m), float(naive)),
        ),
    ],
    "03_mlflow": [
        (
            r"Version 2 of 'elecdemand-forecaster' (is now @champion|was registered but not "
            r"promoted): val_mase=(\S+) (beats|does not beat) version 1's (\S+) ",
            lambda outcome, new, verb, old: (
                outcome.startswith("is now") == (verb == "beats") == (float(new) < float(old))
            ),
        ),
    ],
}
# Printed numbers that must be (near) zero: the served model answers like the trained one.
NEAR_ZERO = {
    "03_mlflow": [
        r"largest difference from the in-process forecaster: (\S+)",
        r"largest difference from the loaded pyfunc: (\S+)",
    ],
}
# Figures each notebook draws; a cell that silently stops drawing fails here.
FIGURES = {"01_financial": 5, "02_sensor": 5, "03_mlflow": 2}


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _text(nb: nbformat.NotebookNode) -> str:
    """Every printed line and plain-text result of an executed notebook."""
    parts = []
    for cell in _code_cells(nb):
        for out in cell.outputs:
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts.append(out.data.get("text/plain", ""))
    return "\n".join(parts)


def _figures(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in out.get("data", {}) for cell in _code_cells(nb) for out in cell.outputs
    )


def test_every_notebook_is_tested():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs(name):
    nb = _read(name)
    nbformat.validate(nb)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if "execution" in cell.metadata
        or (cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None))
    ]
    assert dirty == [], f"{name}.ipynb: cells {dirty} hold outputs; clear them before committing"


@pytest.mark.parametrize("name", NAMES)
def test_settings_come_first_and_shrink_in_quick_mode(name):
    first = _code_cells(_read(name))[0].source
    assert QUICK_SWITCH in first
    assert re.search(r"^EPOCHS = 1 if QUICK else \d+", first, re.MULTILINE)
    assert re.search(r"^LAST_N = \d+ if QUICK else \d+", first, re.MULTILINE)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch):
    monkeypatch.setenv("FORECAST_NOTEBOOK_QUICK", "1")
    # The kernel inherits this: the notebooks' scratch folders land in tmp_path.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = _read(name)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint('KERNEL', sys.executable)"))
    client = nbclient.NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on the first error

    text = _text(nb)
    # The "python3" kernel must be this interpreter, i.e. the project's virtualenv.
    assert f"KERNEL {sys.executable}" in text
    for pattern in EXPECTED[name]:
        assert re.search(pattern, text), f"{name}: no output matches {pattern!r}"
    for pattern, agrees in VERDICTS.get(name, []):
        found = re.search(pattern, text)
        assert found, f"{name}: no output matches {pattern!r}"
        assert agrees(*found.groups()), f"{name}: the verdict contradicts its numbers: {found[0]}"
    for pattern in NEAR_ZERO.get(name, []):
        found = re.search(pattern, text)
        assert found, f"{name}: no output matches {pattern!r}"
        assert abs(float(found.group(1))) < 1e-6, found.group(0)
    assert _figures(nb) == FIGURES[name]
    assert not list(Path(tmp_path).glob(f"{SCRATCH_PREFIX}*")), "scratch folder left behind"
