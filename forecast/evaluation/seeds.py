"""The spread over seeds of an ensemble: each member scored alone on the ensemble's windows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from forecast.data import Prepared
from forecast.evaluation.scoring import model_forecasts, score


def seed_scores(
    members: tuple[Any, ...], prepared: Prepared, *, seed: int, calibration: int = 0
) -> pd.DataFrame:
    """MASE of each member on validation and test: rows seed, part, mase.

    Args:
        members: the ensemble's models, member k trained with seed ``seed + k``.
        prepared: the data they were trained on.
        seed: ``training.seed``.
        calibration: ``calibration.windows``, as for the ensemble.
    """
    rows = []
    for k, member in enumerate(members):
        for part in ("validation", "test"):
            forecasts = model_forecasts(member, prepared, part, calibration=calibration)
            table = score(prepared, part, forecasts, {})
            mase = table.loc[table["metric"] == "mase", "value"]
            rows.append({"seed": seed + k, "part": part, "mase": float(mase.iloc[0])})
    return pd.DataFrame(rows, columns=["seed", "part", "mase"])


def spread_metrics(scores: pd.DataFrame) -> dict[str, float]:
    """Per-seed MASE and its spread, under the names logged to MLflow."""
    out: dict[str, float] = {}
    for part, prefix in (("validation", "val"), ("test", "test")):
        values = scores.loc[scores["part"] == part].set_index("seed")["mase"]
        out.update({f"{prefix}_mase_seed{s}": float(v) for s, v in values.items()})
        out[f"{prefix}_seed_mase_std"] = float(np.std(values.to_numpy(), ddof=1))
        out[f"{prefix}_seed_mase_range"] = float(values.max() - values.min())
    return out


def spread_line(scores: pd.DataFrame, ensemble_mase: float) -> str:
    """One sentence for the train report: each seed's test MASE and the median's."""
    test = scores.loc[scores["part"] == "test"]
    each = ", ".join(f"seed {s}: {v:.3f}" for s, v in zip(test["seed"], test["mase"], strict=True))
    return (
        f"Ensemble of {len(test)} seeds: test MASE {each}; spread (max - min) "
        f"{test['mase'].max() - test['mase'].min():.3f}, std {np.std(test['mase'], ddof=1):.3f}; "
        f"the median of the seeds scores {ensemble_mase:.3f}."
    )
