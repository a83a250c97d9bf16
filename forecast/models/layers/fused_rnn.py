"""Drop-in `keras.layers.LSTM` / `keras.layers.GRU` that train and predict faster on CPU.

`FusedLSTM` and `FusedGRU` subclass the Keras layers and only replace the inner time
loop, so constructor arguments, weight variables (``kernel``, ``recurrent_kernel``,
``bias`` in Keras' gate order), ``get_config``, masking, ``Bidirectional``, ``stateful``
and ``.keras`` files behave as with Keras' own layers, and
``set_weights(keras_layer.get_weights())`` works both ways.

The fast path (TensorFlow backend, no GPU visible): the batch is cut into groups of
rows, one per CPU core, each running the XLA loops of `_kernels.py` with a hand-written
backward pass; the groups run concurrently. With a mask, rows are first sorted by how
many steps they span, so each group only loops over the steps its own rows need, and
each core runs a group of long rows then one of short rows. XLA compiles the loops once
per input shape, which makes the first batch of each new shape take a second or two; a
time axis unknown when tracing is padded to a few sizes so lengths share compilations.

Everything else goes to the Keras implementation unchanged: on a GPU (so cuDNN is used
exactly as by `keras.layers.LSTM`), on other backends, with ``recurrent_dropout``,
``unroll=True``, activations other than tanh/sigmoid, a compute dtype other than
float32, a GRU with ``reset_after=False``, or ``fused=False``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from forecast.models.layers import _kernels
from pipelines.errors import ConfigError

# Fewer rows than this per group make the per-step products too small to pay for a thread.
MIN_GROUP_ROWS = 32
# XLA compiles once per input shape (0.2 s to a few seconds). When the time axis is not
# fixed (bucketed batches cut to their longest history), it is padded up to one of these
# lengths, two per octave, so a whole range of lengths shares one compiled loop; the
# loop itself still stops at the real length. A batch axis not fixed when tracing (a
# server answering 1, 3 or 70 series, the last batch of an epoch) is padded the same
# way, with rows the loop skips or whose results are dropped.
PADDED_SIZES = tuple(sorted({2**k for k in range(18)} | {3 * 2**k for k in range(17)}))


def parallel_groups() -> int:
    """How many row groups run concurrently: TensorFlow's inter-op threads, else the cores."""
    threads = tf.config.threading.get_inter_op_parallelism_threads()
    return max(1, min(threads or len(os.sched_getaffinity(0)), 8))


def gpu_visible() -> bool:
    """True when TensorFlow sees a GPU; the layers then run Keras' (cuDNN) implementation."""
    return bool(tf.config.list_logical_devices("GPU"))


def _standard_activations(layer: keras.layers.RNN) -> bool:
    cell = layer.cell
    return cell.activation in (keras.activations.tanh, tf.tanh, keras.ops.tanh) and (
        cell.recurrent_activation in (keras.activations.sigmoid, tf.sigmoid, keras.ops.sigmoid)
    )


def uses_fused_path(layer: keras.layers.RNN) -> bool:
    """Whether `layer` (a `FusedLSTM` or `FusedGRU`) runs the fused CPU loop when called."""
    return (
        getattr(layer, "fused", False)
        and keras.backend.backend() == "tensorflow"
        and not gpu_visible()
        and _standard_activations(layer)
        and not layer.cell.recurrent_dropout
        and not layer.unroll
        and layer.compute_dtype == "float32"
        and layer.variable_dtype == "float32"
        and getattr(layer.cell, "reset_after", True)
    )


def _check_fused(fused: Any) -> bool:
    if not isinstance(fused, bool):
        raise ConfigError(f"`fused` must be True or False. Received: fused={fused!r}")
    return fused


def _row_order(mask: tf.Tensor) -> tf.Tensor:
    """Rows sorted by the span of steps they need, longest first (stable)."""
    steps = tf.shape(mask)[1]
    idx = tf.range(steps)[None, :]
    first = tf.reduce_min(tf.where(mask, idx, steps), axis=1)
    last = tf.reduce_max(tf.where(mask, idx + 1, 0), axis=1)
    return tf.argsort(tf.maximum(last - first, 0), direction="DESCENDING", stable=True)


def _permute(x: tf.Tensor, order: tf.Tensor, inverse: tf.Tensor) -> tf.Tensor:
    """``tf.gather(x, order)`` whose gradient is dense (a gather by the inverse)."""

    @tf.custom_gradient
    def permute(x):
        return tf.gather(x, order), lambda dy: tf.gather(dy, inverse)

    return permute(x)


def _run_grouped(
    lane_fn: Callable[..., list[Any]],
    n_groups: int,
    rows: list[tf.Tensor],
    shared: list[tf.Tensor],
    mask: tf.Tensor | None,
) -> tuple[tf.Tensor, ...]:
    """Splits the row tensors into `n_groups`, runs `lane_fn` on them, joins the results.

    With a mask, rows are sorted by span and group ``k`` runs in one lane with group
    ``n - 1 - k`` (long rows with short ones); without one, each group has its lane.
    """
    order = None
    if mask is not None and n_groups > 1:
        order = _row_order(mask)
        inverse = tf.math.invert_permutation(order)
        rows = [_permute(r, order, inverse) for r in rows]
        mask = tf.gather(mask, order)
    batch = tf.shape(rows[0])[0]
    bounds = [(batch * i) // n_groups for i in range(n_groups + 1)]
    parts = [
        ([r[lo:hi] for r in rows], None if mask is None else mask[lo:hi])
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    lanes = [[k] for k in range(n_groups)]
    if mask is not None:
        lanes = [sorted({k, n_groups - 1 - k}) for k in range((n_groups + 1) // 2)]
    results: list[Any] = [None] * n_groups
    for lane in lanes:
        for k, res in zip(lane, lane_fn([parts[k] for k in lane], shared), strict=True):
            results[k] = res
    joined = [tf.concat([r[j] for r in results], axis=0) for j in range(len(results[0]))]
    if order is not None:
        joined = [_permute(j, inverse, order) for j in joined]
    return tuple(joined)


def _grouped(
    lane_fn: Callable[..., list[Any]],
    rows: list[tf.Tensor],
    shared: list[tf.Tensor],
    mask: tf.Tensor | None,
) -> tuple[tf.Tensor, ...]:
    """Runs on as many groups as the batch fills, one per core (two with a mask).

    With a batch size unknown when tracing, the batch is always split; a batch smaller
    than the number of groups leaves some groups empty, which costs a few microseconds.
    """
    n_groups = parallel_groups() * (2 if mask is not None else 1)
    static_batch = rows[0].shape[0]
    if static_batch is not None:
        n_groups = max(1, min(n_groups, static_batch // MIN_GROUP_ROWS))
    return _run_grouped(lane_fn, n_groups, rows, shared, mask)


def _padded_size(size: tf.Tensor) -> tf.Tensor:
    """The smallest of `PADDED_SIZES` that holds `size` (`size` itself beyond them)."""
    sizes = tf.constant(PADDED_SIZES, tf.int32)
    index = tf.searchsorted(sizes, size[None])[0]
    return tf.where(
        index < len(PADDED_SIZES), tf.gather(sizes, tf.minimum(index, len(PADDED_SIZES) - 1)), size
    )


def _pad_axis(x: tf.Tensor, axis: int, extra: tf.Tensor) -> tf.Tensor:
    pads = [[0, 0]] * x.shape.rank
    pads[axis] = [0, extra]
    return tf.pad(x, pads)


def _with_units(x: tf.Tensor, units: int) -> tf.Tensor:
    """`x` with its last axis statically `units` long (it is at run time)."""
    x.set_shape(x.shape[:-1].concatenate([units]))
    return x


def _dense(grad: Any, like: tf.Tensor) -> tf.Tensor:
    """An upstream gradient as a dense tensor: zeros when unused, gathers made dense."""
    return tf.zeros_like(like) if grad is None else tf.convert_to_tensor(grad)


def _lane_fn(
    kind: str, length: tf.Tensor, zero_output: bool, store: bool, sequence: bool
) -> Callable[..., Any]:
    """The fused loop over one or more groups of rows run in turn, with its gradient.

    The returned function takes ``(parts, shared)``: `parts` a list of ``(rows, mask)``,
    ``rows = [x, *initial_states]`` of one group, `shared` ``[kernel, recurrent_kernel,
    bias]``; it returns ``[outputs, *final_states]`` for each part.
    """
    forward, backward = {
        "lstm": (_kernels.lstm_forward, _kernels.lstm_backward),
        "gru": (_kernels.gru_forward, _kernels.gru_backward),
    }[kind]
    n_results = 3 if kind == "lstm" else 2  # outputs and final states
    flags = {"zero_output": zero_output, "sequence": sequence}

    def lane(parts: list[tuple[list[tf.Tensor], Any]], shared: list[tf.Tensor]) -> list[Any]:
        n_rows, masks = len(parts[0][0]), [mask for _, mask in parts]

        @tf.custom_gradient
        def run(*flat):
            # Cut the tape here: the gradient is `grad` below, not autodiff of the loops.
            flat = [tf.stop_gradient(a) for a in flat]
            args = [flat[i * n_rows : (i + 1) * n_rows] + flat[-3:] for i in range(len(parts))]
            calls = [[*a, m, length] for a, m in zip(args, masks, strict=True)]
            res = _kernels.run_sequentially(forward, calls, store=store, **flags)

            def grad(*upstream):
                saved = res
                if not store:  # training=False kept nothing: run the forward loops again
                    saved = _kernels.run_sequentially(
                        forward, calls, store=True, zero_output=zero_output, sequence=False
                    )
                upstream = [
                    upstream[i * n_results : (i + 1) * n_results] for i in range(len(parts))
                ]
                calls_back = [
                    [_dense(g, r) for g, r in zip(up, out[:n_results], strict=True)]
                    + a + list(kept[n_results:]) + [m, length]
                    for up, out, a, kept, m in zip(upstream, res, args, saved, masks, strict=True)
                ]  # fmt: skip
                grads = _kernels.run_sequentially(backward, calls_back, **flags)
                shared_grads = [tf.add_n([g[n_rows + k] for g in grads]) for k in range(3)]
                return [t for g in grads for t in g[:n_rows]] + shared_grads

            return [t for r in res for t in r[:n_results]], grad

        out = run(*[t for rows, _ in parts for t in rows], *shared)
        return [out[i * n_results : (i + 1) * n_results] for i in range(len(parts))]

    return lane


def fused_inner_loop(
    layer: keras.layers.RNN,
    sequences: tf.Tensor,
    initial_state: list[tf.Tensor],
    mask: tf.Tensor | None,
    training: bool | None,
) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
    """`RNN.inner_loop` on the fused path: ``(last_output, outputs, final_states)``."""
    cell = layer.cell
    if training and cell.dropout:
        # One input-dropout mask for every step, as in Keras' LSTM/GRU.
        sequences = sequences * cell.get_dropout_mask(sequences[:, 0, :])[:, None, :]
    if mask is not None:
        mask = tf.cast(mask, tf.bool)
    if layer.go_backwards:
        sequences = tf.reverse(sequences, [1])
        mask = None if mask is None else tf.reverse(mask, [1])
    batch, length = tf.shape(sequences)[0], tf.shape(sequences)[1]
    if sequences.shape[1] is None:
        pad = _padded_size(length) - length
        sequences = _pad_axis(sequences, 1, pad)
        mask = None if mask is None else _pad_axis(mask, 1, pad)
    pad_rows = sequences.shape[0] is None
    if pad_rows:  # padded rows: zeros, fully masked; their results are dropped below
        pad = _padded_size(batch) - batch
        sequences = _pad_axis(sequences, 0, pad)
        initial_state = [_pad_axis(s, 0, pad) for s in initial_state]
        mask = None if mask is None else _pad_axis(mask, 0, pad)
    # Keep what the backward pass needs only when training (a symbolic flag counts).
    store = True if tf.is_tensor(training) else bool(training)
    flags = (length, bool(layer.zero_output_for_mask), store, bool(layer.return_sequences))
    weights = [cell.kernel.value, cell.recurrent_kernel.value]
    is_lstm = isinstance(layer, keras.layers.LSTM)
    bias_shape = (4 * cell.units,) if is_lstm else (2, 3 * cell.units)
    weights.append(cell.bias.value if cell.use_bias else tf.zeros(bias_shape, sequences.dtype))
    lane_fn = _lane_fn("lstm" if is_lstm else "gru", *flags)
    out, *states = _grouped(lane_fn, [sequences, *initial_state], weights, mask)
    # A loop trace shared with layers of other sizes (`reduce_retracing`) has no static
    # units; layers after this one (LayerNormalization) are built from them.
    out, states = _with_units(out, cell.units), [_with_units(s, cell.units) for s in states]
    if pad_rows:
        out, states = out[:batch], [s[:batch] for s in states]
    if not layer.return_sequences:
        return out, out[:, None, :], states  # out: (B, u)
    if sequences.shape[1] is None:
        out = out[:, :length]  # drop the padding steps
    return out[:, -1], out, states


class _FusedLoop:
    """What `FusedLSTM` and `FusedGRU` add to Keras' layers: the `fused` switch and the loop.

    Listed before the Keras layer in the bases, so ``super()`` reaches `keras.layers.LSTM`
    / `GRU` for everything this class does not override.
    """

    def __init__(self, *args: Any, fused: bool = True, **kwargs: Any) -> None:
        fused = _check_fused(fused)
        super().__init__(*args, **kwargs)
        self.fused = fused

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if isinstance(mask, list | tuple):
            mask = mask[0]
        if not uses_fused_path(self):
            return super().inner_loop(sequences, initial_state, mask, training=training)
        # The LSTM carries (h, c); the GRU gets h alone or in a one-element list.
        states = list(initial_state) if isinstance(initial_state, list | tuple) else [initial_state]
        return fused_inner_loop(self, sequences, states, mask, training)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fused": self.fused}


@keras.saving.register_keras_serializable(package="forecast")
class FusedLSTM(_FusedLoop, keras.layers.LSTM):
    """`keras.layers.LSTM` with a faster CPU loop; same arguments, weights and results.

    Args:
        *args: positional arguments of `keras.layers.LSTM` (``units`` first).
        fused: run the fused CPU loop when possible (see the module docstring); False
            always runs Keras' implementation.
        **kwargs: keyword arguments of `keras.layers.LSTM`.

    Example:
        >>> layer = FusedLSTM(16, return_sequences=True)
        >>> layer(np.zeros((4, 10, 3), "float32")).shape
        TensorShape([4, 10, 16])
    """


@keras.saving.register_keras_serializable(package="forecast")
class FusedGRU(_FusedLoop, keras.layers.GRU):
    """`keras.layers.GRU` with a faster CPU loop; same arguments, weights and results.

    The fused loop covers ``reset_after=True`` (Keras' default and the cuDNN layout);
    ``reset_after=False`` runs Keras' implementation.

    Args:
        *args: positional arguments of `keras.layers.GRU` (``units`` first).
        fused: run the fused CPU loop when possible; False always runs Keras' one.
        **kwargs: keyword arguments of `keras.layers.GRU`.
    """
