"""The package layout: no import cycles, data never imports models, configs load without
TensorFlow, and the public API is what docs/contracts.md says it is."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import forecast
from tests.conftest import REPO_ROOT

PACKAGES = ("forecast", "pipelines")


def _modules() -> dict[str, Path]:
    """Every module of the two packages: dotted name -> file."""
    out = {}
    for package in PACKAGES:
        root = REPO_ROOT / package
        for path in root.rglob("*.py"):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of ours that `name` imports anywhere in its body (function-level too)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            subs = {f"{base}.{a.name}" for a in node.names} & modules.keys()
            # `from pkg import submodule` runs only the submodule (pkg is its parent anyway);
            # `from pkg import name` runs pkg's __init__.
            found |= subs if len(subs) == len(node.names) else {base, *subs}
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules along it, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    assert len(graph) > 50  # every module of both packages was read
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_pipelines_never_import_forecast():
    graph = _graph()
    bad = {m: sorted(d) for m, d in graph.items() if m.startswith("pipelines")}
    bad = {m: [d for d in deps if d.startswith("forecast")] for m, deps in bad.items()}
    assert {m: d for m, d in bad.items() if d} == {}


@pytest.mark.parametrize(
    ("module", "must_not_reach"),
    [
        ("forecast.config", ("forecast.models", "forecast.training", "forecast.serving")),
        ("forecast.cli", ("forecast.jobs", "forecast.serving")),  # loaded per command
    ],
)
def test_config_and_cli_stay_low(module, must_not_reach):
    """What a module imports at its top level, followed through: config loads no model code."""
    modules = _modules()

    def top_level(name: str) -> set[str]:
        tree = ast.parse(modules[name].read_text())
        found = set()
        for node in tree.body:  # module level only: function bodies run later
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
        return {m for m in found if m in modules}

    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(top_level(name))
    reached = sorted(m for m in seen if m.startswith(must_not_reach))
    assert reached == []


def test_the_demo_does_not_import_the_cli():
    graph = _graph()
    assert "forecast.cli" not in graph["forecast.jobs.demo"]
    assert "forecast.jobs.demo" in graph["forecast.cli"]  # ...inside the `demo` command


def test_loading_a_config_imports_no_tensorflow():
    code = (
        "import sys\n"
        "from forecast import load_config\n"
        "config = load_config('configs/sp500.yaml')\n"
        "assert config.name == 'sp500', config.name\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def _documented_api() -> dict[str, tuple[str, str]]:
    """name -> (kind, home module) from the Public API table of docs/contracts.md."""
    text = (REPO_ROOT / "docs" / "contracts.md").read_text()
    table = text.split("## Public API", 1)[1]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("name", "---"):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_every_public_name_is_what_the_docs_say_after_every_module_is_imported():
    for info in pkgutil.walk_packages(forecast.__path__, "forecast."):
        if not info.name.endswith(("__main__", "model_code")):
            importlib.import_module(info.name)  # a submodule must not shadow an export
    documented = _documented_api()
    assert set(documented) == set(forecast.__all__) - {"__version__"}
    for name, (kind, home) in documented.items():
        value = getattr(forecast, name)
        assert (inspect.isclass(value), value.__module__) == (kind == "class", home), name
        exec(f"from forecast import {name} as imported", {}, scope := {})
        assert scope["imported"] is value, name
    # The defect this guards against: `forecast.evaluate` and `forecast.prepare` were modules
    # once `forecast.jobs` had been imported.
    assert forecast.evaluate.__module__ == "forecast.evaluation.metrics"
    assert inspect.isfunction(forecast.prepare) and inspect.isfunction(forecast.evaluate)
