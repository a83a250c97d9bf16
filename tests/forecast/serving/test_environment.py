"""The environment check of the package's loader gives MLflow's verdicts, by name only."""

from __future__ import annotations

import importlib.metadata
import platform

import pytest
from mlflow.utils import requirements_utils

from forecast.serving.environment import python_mismatch, requirement_mismatches

NUMPY = importlib.metadata.version("numpy")
PANDAS = importlib.metadata.version("pandas")


def _version(*names: str) -> str:
    """The version of the first of `names` that is installed."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise LookupError(f"none of {names} is installed")


# The CPU wheel by default, `tensorflow` with the GPU extra.
TENSORFLOW = _version("tensorflow-cpu", "tensorflow")

# Met, unmet and unparsable lines, as a model's requirements.txt may hold them.
LINES = {
    f"numpy=={NUMPY}": None,
    f"pandas>={PANDAS}": None,
    "numpy==0.0.1": f"numpy (current: {NUMPY}, required: numpy==0.0.1)",
    "pandas<1": f"pandas (current: {PANDAS}, required: pandas<1)",
    "no-such-distribution==1.0": (
        "no-such-distribution (current: uninstalled, required: no-such-distribution==1.0)"
    ),
    'numpy==0.0.1; python_version < "3"': None,  # a marker that excludes this Python
    f"tensorflow-cpu=={TENSORFLOW}": None,
    # One module, either distribution's name: the other flavour's install serves it.
    f"tensorflow=={TENSORFLOW}": None,
    "tensorflow==1.0": f"tensorflow (current: {TENSORFLOW}, required: tensorflow==1.0)",
    "-c constraints.txt": None,
    "./wheels/local_package.whl": None,
}


def test_each_line_gets_the_verdict_of_mlflows_own_check(tmp_path):
    (tmp_path / "requirements.txt").write_text("# pinned at logging\n" + "\n".join(LINES) + "\n")
    unmet = requirement_mismatches(tmp_path)
    assert unmet == [m for m in LINES.values() if m is not None]
    for line, message in LINES.items():
        theirs = requirements_utils._check_requirement_satisfied(line)
        assert (None if theirs is None else str(theirs)) == message, line


def test_a_model_without_requirements_txt_has_nothing_to_check(tmp_path):
    assert requirement_mismatches(tmp_path) == []


@pytest.mark.parametrize(
    ("saved", "expected"),
    [
        (platform.python_version(), None),
        (".".join(platform.python_version().split(".")[:2]) + ".0", None),
        ("3.9.18", "The version of Python that the model was saved in, `Python 3.9.18`, differs"),
        (None, "The specified model does not have a specified Python version."),
    ],
)
def test_python_version_differs_in_major_or_minor_only(saved, expected):
    flavors = {"python_function": {"python_version": saved} if saved else {}}
    message = python_mismatch(flavors)
    if expected is None:
        assert message is None
    else:
        assert message.startswith(expected)
        assert message.count(platform.python_version()) == 1  # the running one, named
