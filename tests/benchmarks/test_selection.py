"""The selection rule of `benchmarks.selection` on fixed backtest scores."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.selection import OPTIONS, candidate, decide, option_name, per_candidate
from forecast.config import load_config
from tests.conftest import REPO_ROOT


def _scores(coverage, pinball):
    """Tidy backtest rows from {(option, seed): [per-fold values]}."""
    rows = []
    for (option, seed), values in coverage.items():
        for fold, (cov, pin) in enumerate(zip(values, pinball[option, seed], strict=True)):
            rows += [
                (option, seed, fold, "model", "coverage_80", cov),
                (option, seed, fold, "model", "pinball_mean", pin),
                (option, seed, fold, "naive", "mae", 1.0),
            ]
    return pd.DataFrame(rows, columns=["option", "seed", "fold", "model", "metric", "value"])


def _flat(value):
    return {(o, s): [value, value] for o in ("none", "window_rms") for s in (0, 1, 2)}


def test_calibration_across_folds_decides_first():
    coverage = {
        # none: right on average (0.80) but 0.10 off in each fold.
        **{("none", s): [0.70, 0.90] for s in (0, 1, 2)},
        ("window_rms", 0): [0.76, 0.80],  # |error| 0.02 on average
        ("window_rms", 1): [0.79, 0.80],  # 0.005: the best seed, none other within 0.01
        ("window_rms", 2): [0.76, 0.84],  # 0.04
    }
    pinball = {**_flat(2.0), ("window_rms", 1): [9.0, 9.0]}  # pinball only breaks ties
    scores = _scores(coverage, pinball)
    table = per_candidate(scores)
    assert table.loc[("none", 0), "calibration"] == pytest.approx(0.10)
    assert table.loc[("window_rms", 2), "folds_in_75_85"] == 2
    decision = decide(scores, current_option="none", current_seed=0)
    assert (decision.option, decision.seed) == ("window_rms", 1)
    assert decision.reasons[0].startswith("option: lowest calibration error (0.0217)")


def test_calibration_within_one_point_is_a_tie_broken_by_pinball():
    coverage = {k: [0.79, 0.80] for k in _flat(0)}
    coverage["none", 1] = [0.78, 0.80]  # 0.01 vs 0.005: tied
    pinball = {**_flat(2.0), ("none", 2): [1.0, 1.0]}  # none's mean pinball 5/3 < 2
    decision = decide(_scores(coverage, pinball), current_option="window_rms", current_seed=0)
    assert (decision.option, decision.seed) == ("none", 2)
    assert "lowest pinball loss" in decision.reasons[1]


def test_a_full_tie_keeps_the_config_as_it_is():
    scores = _scores({k: [0.80, 0.81] for k in _flat(0)}, _flat(2.0))
    decision = decide(scores, current_option="none", current_seed=1)
    assert (decision.option, decision.seed) == ("none", 1)
    decision = decide(scores, current_option="window_rms", current_seed=7)
    assert (decision.option, decision.seed) == ("window_rms", 0)  # 7 is not a candidate


def _five(value):
    """The five target-scaling options of rounds 1-3."""
    return {(o, s): [value, value] for o in list(OPTIONS)[:5] for s in (0, 1, 2)}


def test_five_options_tied_on_calibration_go_to_the_lowest_pinball():
    coverage = {**_five(0.80), **{("none", s): [0.70, 0.70] for s in (0, 1, 2)}}
    coverage["ewma_rms_hl20", 0] = [0.79, 0.80]  # 0.005 from the best: still tied
    pinball = {**_five(2.0), **{("ewma_rms_hl10", s): [1.9, 1.9] for s in (0, 1, 2)}}
    decision = decide(_scores(coverage, pinball), current_option="none", current_seed=0)
    assert (decision.option, decision.seed) == ("ewma_rms_hl10", 0)
    tied = "['window_rms', 'ewma_rms_hl5', 'ewma_rms_hl10', 'ewma_rms_hl20']"
    assert decision.reasons[0] == f"option: calibration within 0.01 of 0.0000: {tied}"


def test_a_full_tie_of_new_options_goes_to_the_first_in_options_order():
    coverage = {**_five(0.80), **{("none", s): [0.70, 0.70] for s in (0, 1, 2)}}
    coverage.update({("window_rms", s): [0.70, 0.70] for s in (0, 1, 2)})
    decision = decide(_scores(coverage, _five(2.0)), current_option="none", current_seed=0)
    assert (decision.option, decision.seed) == ("ewma_rms_hl5", 0)
    decision = decide(_scores(coverage, _five(2.0)), current_option="ewma_rms_hl20", current_seed=2)
    assert (decision.option, decision.seed) == ("ewma_rms_hl20", 2)


def test_candidates_set_scaling_halflife_and_calibration_and_name_back():
    config = load_config(REPO_ROOT / "configs" / "eustockmarkets.yaml")
    assert option_name(config) == "recalibrate_120"  # the fourth round's choice
    for option, (scaling, halflife, windows) in OPTIONS.items():
        made = candidate(config, option, seed=2)
        assert (made.model.target_scaling, made.model.target_scale_halflife) == (scaling, halflife)
        assert made.calibration.windows == windows
        assert made.training.seed == 2
        assert option_name(made) == option
        # and back from an ewma or a recalibrated config to the others
        for start in ("ewma_rms_hl5", "recalibrate_120"):
            again = candidate(candidate(config, start, 0), option, seed=1)
            assert option_name(again) == option
    assert [OPTIONS[o] for o in OPTIONS if o.startswith(("ewma", "recal"))] == [
        ("ewma_rms", 5, 0),
        ("ewma_rms", 10, 0),
        ("ewma_rms", 20, 0),
        ("none", None, 60),
        ("none", None, 120),
    ]
