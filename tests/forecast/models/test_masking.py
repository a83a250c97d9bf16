"""Masked, padded batches equal each sequence run alone; bad masks fail before TensorFlow."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecast.models import check_mask, mask_layout
from forecast.models.heads import last_observed
from pipelines.errors import DataValidationError
from tests.forecast.models.util import max_abs_diff, tiny_model

LOOKBACK = 8
LENGTHS = (8, 3, 5, 1)  # a full row, a one-step row and two in between


def padded_batch(lengths, padding, n_features=3, seed=0):
    """Random sequences of the given lengths, padded with garbage, and their mask."""
    rng = np.random.default_rng(seed)
    seqs = [rng.normal(size=(n, n_features)).astype("float32") for n in lengths]
    # Garbage in the padding: only the mask may decide which steps count.
    past = rng.normal(size=(len(seqs), LOOKBACK, n_features)).astype("float32") * 10
    mask = np.zeros((len(seqs), LOOKBACK), bool)
    for i, seq in enumerate(seqs):
        steps = slice(0, len(seq)) if padding == "right" else slice(LOOKBACK - len(seq), None)
        past[i, steps], mask[i, steps] = seq, True
    return seqs, past, mask


def assert_padded_equals_alone(model, padding, n_future=0):
    seqs, past, mask = padded_batch(LENGTHS, padding)
    future = np.random.default_rng(9).normal(size=(len(seqs), 3, n_future)).astype("float32")
    extra = {"future": future} if n_future else {}
    batch = model({"past": past, "mask": mask, **extra})
    for i, seq in enumerate(seqs):
        one = {"past": seq[None], "mask": np.ones((1, len(seq)), bool)}
        if n_future:
            one["future"] = future[i : i + 1]
        alone = model(one)
        row = (
            {k: v[i : i + 1] for k, v in batch.items()}
            if isinstance(batch, dict)
            else batch[i : i + 1]
        )
        assert max_abs_diff(row, alone) < 1e-5, f"row {i} (length {len(seq)})"


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "peephole_lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("padding", ["right", "left"])
def test_padded_masked_batch_equals_each_sequence_alone(cell, bidirectional, padding):
    model = tiny_model(
        cell=cell, bidirectional=bidirectional, mode="dynamic", units=(5, 4), n_future=0
    )
    assert_padded_equals_alone(model, padding)


@pytest.mark.parametrize(
    ("cell", "padding", "layer_norm"),
    [("lstm", "right", True), ("gru", "left", False), ("peephole_lstm", "left", True)],
)
def test_seq2seq_quantile_models_mask_too(cell, padding, layer_norm):
    model = tiny_model(
        cell=cell,
        bidirectional=True,
        mode="dynamic",
        head="seq2seq",
        quantiles=(0.1, 0.5, 0.9),
        layer_norm=layer_norm,
    )
    assert_padded_equals_alone(model, padding, n_future=2)


def test_last_observed_reads_the_last_valid_step_for_any_padding():
    past = np.arange(2 * 4 * 2, dtype="float32").reshape(2, 4, 2)
    mask = np.array([[True, True, False, False], [False, True, True, True]])
    got = np.asarray(last_observed(past, 1, mask))
    assert got.tolist() == [[past[0, 1, 0]], [past[1, 3, 0]]]
    assert np.asarray(last_observed(past, 2)).tolist() == past[:, -1].tolist()


def test_check_mask_names_rows_without_a_valid_step():
    mask = np.ones((5, 4), bool)
    mask[[1, 3]] = False
    with pytest.raises(DataValidationError) as err:
        check_mask(mask)
    assert "`mask` rows [1, 3] have no valid step" in str(err.value)
    assert "Received 2 such rows of 5" in str(err.value)


def test_check_mask_caps_the_listed_rows():
    with pytest.raises(DataValidationError, match=r"rows \[0, 1, .*, 9\] \(and 2 more\)"):
        check_mask(np.zeros((12, 3), bool))


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.ones(4, bool), "`mask` must be 2-D (batch, lookback). Received shape (4,)"),
        (np.ones((2, 3)), "`mask` must be boolean (True = real step). Received dtype float64"),
    ],
)
def test_check_mask_rejects_wrong_rank_and_dtype(mask, message):
    with pytest.raises(DataValidationError) as err:
        check_mask(mask)
    assert message in str(err.value)


def test_predict_rejects_an_empty_row_before_running():
    model = tiny_model(mode="dynamic", n_future=0)
    _, past, mask = padded_batch(LENGTHS, "right")
    mask[2] = False
    with pytest.raises(DataValidationError, match=r"`mask` rows \[2\] have no valid step"):
        model.predict({"past": past, "mask": mask}, verbose=0)


@given(
    st.lists(st.integers(1, 6), min_size=1, max_size=6),
    st.sampled_from(["right", "left"]),
)
def test_mask_layout_recognizes_padding(lengths, padding):
    mask = np.zeros((len(lengths), 6), bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    if padding == "left":
        mask = mask[:, ::-1]
    expected = "none" if min(lengths) == 6 else padding
    assert mask_layout(mask) == expected
    assert check_mask(mask) is not None


def test_mask_layout_flags_mixed_and_holed_masks():
    assert mask_layout(np.array([[True, False], [False, True]])) == "mixed"
    assert mask_layout(np.array([[True, False, True]])) == "mixed"
