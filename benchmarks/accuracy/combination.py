"""Forecast combinations, measured: does averaging the network with the classical models win?

Two rules, fixed before any test score was read (none is chosen per series, so neither
can be tuned on the test period):

- ``classical mean``: the mean of the point forecasts of every statsforecast model that
  finished on the series (AutoETS, AutoTheta, MSTL, AutoARIMA, or those of them that ran);
- ``model + classical``: the mean of the network's seed-median forecast and that classical
  mean, half and half: it beats the classical mean only where the network adds something
  the classical models miss.

Both are scored on the same origins and windows as every column of the suite. The package
does not serve either (a served combination needs the fitted classical models in the
saved pipeline state); this column says whether building it is worth it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from forecast.evaluation.classical import CLASSICAL

from .scoring import panel, score
from .series import Series


def members(classical: dict[str, dict]) -> list[str]:
    """The classical models whose point forecasts the entry holds, in `CLASSICAL` order."""
    return [k for k in CLASSICAL if "point" in classical.get(k, {})]


def classical_mean(classical: dict[str, dict]) -> np.ndarray | None:
    """(S * O, H, 1) mean of the finished classical models' forecasts; None when none."""
    names = members(classical)
    if not names:
        return None
    return np.mean([np.asarray(classical[k]["point"], np.float64) for k in names], axis=0)


def combinations(series: Series, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The scores of both rules for one suite entry, or None when it lacks the forecasts
    (a run that reused classical scores from a JSON made before forecasts were kept)."""
    base = classical_mean(entry["classical"])
    network = (entry.get("model") or {}).get("median_point")
    if base is None or network is None:
        return None
    network = np.asarray(network, np.float64)
    _, values = panel(series)
    return {
        "members": members(entry["classical"]),
        "classical_mean": score(series, values, base),
        "model_and_classical": score(series, values, (network + base) / 2.0),
    }


def markdown(results: dict[str, dict]) -> str:
    """MASE of the best classical model, of both rules and of the network's seed median."""
    head = (
        "| series | best classical | classical mean | model (seed median) | model + classical "
        "| model + classical vs best | vs classical mean |"
    )
    lines = [head, "|" + "---|" * 7]
    for name, r in results.items():
        c = r.get("combination")
        if not c:
            continue
        finished = {k: r["classical"][k]["metrics"]["mase"] for k in c["members"]}
        best = min(finished, key=finished.get)
        mean, both = c["classical_mean"]["mase"], c["model_and_classical"]["mase"]
        network = r["model"]["ensemble"]["mase"] if "ensemble" in r["model"] else None
        lines.append(
            f"| {name} | {CLASSICAL[best]} {finished[best]:.3f} | {mean:.3f} | "
            + (f"{network:.3f}" if network is not None else "")
            + f" | {both:.3f} | {both / finished[best]:.2f}x | {both / mean:.2f}x |"
        )
    return "\n".join(lines)
