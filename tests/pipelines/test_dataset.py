"""tf.data batches equal the numpy windows; seeded shuffles repeat; buckets cut padding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.dataset import to_dataset
from pipelines.errors import ConfigError, DataValidationError
from pipelines.schema import SeriesSchema
from pipelines.window import WindowSpec, inference_windows, windows_from_array


def _values(n: int = 240) -> np.ndarray:
    # Column 0 is the row number, so every target batch says which windows it holds.
    rng = np.random.default_rng(0)
    return np.column_stack([np.arange(n), rng.standard_normal((n, 2))]).astype(np.float32)


def _windows(spec: WindowSpec, **kwargs):
    return windows_from_array(
        _values(), spec, n_targets=1, n_future=1, series_rows=np.array([0, 90, 105]), **kwargs
    )


def _collect(ds):
    parts: dict[str, list[np.ndarray]] = {}
    for inputs, target in ds:
        for key, value in {**inputs, "target": target}.items():
            parts.setdefault(key, []).append(value.numpy())
    return parts


@pytest.mark.parametrize(
    "spec",
    [
        WindowSpec(8, 3),
        WindowSpec(8, 3, stride=2, min_lookback=2),
        WindowSpec(8, 3, min_lookback=1, padding="left"),
    ],
    ids=["static", "dynamic-right", "dynamic-left"],
)
def test_batches_equal_the_numpy_windows(spec):
    w = _windows(spec)
    ds = to_dataset(w, batch_size=32)
    assert int(ds.cardinality()) == -(-len(w) // 32)
    parts = _collect(ds)
    expected = {**w.inputs(), "target": w.target}
    assert set(parts) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(np.concatenate(parts[key]), value, err_msg=key)
    assert ds.element_spec[0]["past"].shape.as_list() == [None, 8, 3]


def test_seeded_shuffle_repeats_and_reshuffles_each_epoch():
    w = _windows(WindowSpec(8, 3))
    first_rows = w.target[:, 0, 0]

    def order(ds):
        return np.concatenate([t.numpy()[:, 0, 0] for _, t in ds])

    ds = to_dataset(w, batch_size=16, shuffle=True, seed=7)
    epoch1, epoch2 = order(ds), order(ds)
    again = order(to_dataset(w, batch_size=16, shuffle=True, seed=7))
    np.testing.assert_array_equal(epoch1, again)  # same seed, same order
    assert not np.array_equal(epoch1, epoch2)  # a new order every epoch
    assert not np.array_equal(epoch1, first_rows)
    for epoch in (epoch1, epoch2):  # each epoch is a permutation of all windows
        np.testing.assert_array_equal(np.sort(epoch), np.sort(first_rows))
    other = order(to_dataset(w, batch_size=16, shuffle=True, seed=8))
    assert not np.array_equal(epoch1, other)


def test_bucketing_groups_lengths_and_trims_padding():
    w = _windows(WindowSpec(12, 2, min_lookback=1))
    lengths_by_row = dict(zip(w.target[:, 0, 0].tolist(), w.lengths.tolist(), strict=True))
    seen = []
    for inputs, target in to_dataset(w, batch_size=4, shuffle=True, seed=1, bucket=True):
        mask, past = inputs["mask"].numpy(), inputs["past"].numpy()
        rows = target.numpy()[:, 0, 0]
        lengths = np.array([lengths_by_row[r] for r in rows])
        np.testing.assert_array_equal(mask.sum(1), lengths)
        assert past.shape[1] == mask.shape[1] == lengths.max()  # no all-padding steps
        i = np.searchsorted(w.target[:, 0, 0], rows)
        np.testing.assert_array_equal(past, w.past[i][:, : lengths.max()])
        seen.extend(rows.tolist())
    assert sorted(seen) == sorted(w.target[:, 0, 0].tolist())
    # Sorting by length puts the short starts of the three series into few batches.
    plain = [
        (inp["mask"].numpy().sum(1) < 12).any()
        for inp, _ in to_dataset(w, batch_size=4, shuffle=True, seed=1)
    ]
    bucketed = [
        (inp["mask"].numpy().sum(1) < 12).any()
        for inp, _ in to_dataset(w, batch_size=4, shuffle=True, seed=1, bucket=True)
    ]
    assert sum(bucketed) < sum(plain)


def test_inference_windows_yield_inputs_only():
    frame = pd.DataFrame(
        {
            "id": np.repeat(["a", "b"], 10),
            "timestamp": np.tile(pd.date_range("2020", periods=10, freq="h"), 2),
            "y": np.arange(20.0),
        }
    )
    w = inference_windows(frame, SeriesSchema(id_col="id", targets="y"), WindowSpec(4, 2))
    (batch,) = list(to_dataset(w, batch_size=8))
    assert set(batch) == {"past"}
    np.testing.assert_array_equal(batch["past"].numpy(), w.past)


def test_drop_remainder_and_errors():
    w = _windows(WindowSpec(8, 3))
    ds = to_dataset(w, batch_size=50, drop_remainder=True)
    assert [t.shape[0] for _, t in ds] == [50] * (len(w) // 50)
    with pytest.raises(ConfigError, match=r"`bucket=True` .* static .*lookback=8"):
        to_dataset(w, batch_size=4, bucket=True)
    with pytest.raises(ConfigError, match=r"Received: batch_size=0"):
        to_dataset(w, batch_size=0)
    with pytest.raises(ConfigError, match=r"must be a pipelines.window.Windows. Received: dict"):
        to_dataset(w.inputs(), batch_size=4)
    with pytest.raises(DataValidationError, match=r"no full batch of batch_size=1000"):
        to_dataset(w, batch_size=1000, drop_remainder=True)


def test_keras_trains_on_the_dataset():
    import keras

    w = _windows(WindowSpec(8, 3, min_lookback=2))
    past = keras.Input((8, 3), name="past")
    future = keras.Input((3, 1), name="future")
    mask = keras.Input((8,), name="mask", dtype="bool")
    state = keras.layers.GRU(4)(past, mask=mask)
    out = keras.layers.Dense(3)(keras.layers.Concatenate()([state, keras.layers.Flatten()(future)]))
    model = keras.Model(
        {"past": past, "future": future, "mask": mask}, keras.layers.Reshape((3, 1))(out)
    )
    model.compile("adam", "mse")
    history = model.fit(
        to_dataset(w, batch_size=64, shuffle=True, seed=0), epochs=2, shuffle=False, verbose=0
    )
    assert np.isfinite(history.history["loss"]).all() and len(history.history["loss"]) == 2


def test_base_array_is_shared_with_tensorflow_not_copied():
    from pipelines._frames import aligned_empty
    from pipelines.dataset import _shared_tensor

    aligned = aligned_empty((50, 3), np.float32)  # as make_windows allocates its base
    aligned[...] = 1.0
    shared = _shared_tensor(aligned)
    aligned[0, 1] = 123.0  # visible through the tensor: same memory
    assert float(shared[0, 1]) == 123.0
    unaligned = aligned.reshape(-1)[1:50]  # 4 bytes off: copied once, then shared
    copied = _shared_tensor(unaligned)
    unaligned[0] = -5.0
    assert float(copied[0]) == 123.0


def test_prefetch_argument():
    w = _windows(WindowSpec(8, 3))
    for prefetch in (False, 2, -1):  # -1 is tf.data.AUTOTUNE
        assert sum(t.shape[0] for _, t in to_dataset(w, batch_size=64, prefetch=prefetch)) == len(w)
    with pytest.raises(ConfigError, match=r"Received: prefetch='yes'"):
        to_dataset(w, batch_size=4, prefetch="yes")
