"""XLA-compiled forward and backward loops of the LSTM and GRU, in Keras' weight layout.

Each function runs one group of rows (the caller splits a batch into groups that run
concurrently on separate cores, see `fused_rnn.py`). On a CPU these loops are bound by
memory traffic, not arithmetic, so they keep as little per step as they can:

- the forward pass stores only the state sequences (h, and c for the LSTM);
- the backward pass recomputes each step's gates from ``x_t`` and ``h_{t-1}`` instead
  of reading stored gate activations, and accumulates the weight gradients inside the
  loop, so no (T, b, 4u) tensor is ever written to memory.

Measured on the 2-core benchmark machine, this beat hoisting ``x @ W`` for all steps
into one product before the loop and storing the gates (see benchmarks/RESULTS.md).

Sigmoid gates are computed as ``0.5 + 0.5 * tanh(z / 2)`` so one ``tanh`` covers every
gate of a step; the halving is folded into the weights and is exact in floating point.

Masks follow `keras.layers.RNN`: a masked step keeps the previous state; outputs before
the first valid step are zero, later masked steps repeat the last valid output, or are
zero with ``zero_output_for_mask``. The loops only run over ``[t_lo, t_hi)``, the steps
where at least one row of the group is valid.
"""

from __future__ import annotations

import tensorflow as tf

# LSTM gates i, f, c, o and GRU gates z, r, h: sigmoid gates are scaled by 1/2.
_LSTM_SCALE = (0.5, 0.5, 1.0, 0.5)
_GRU_SCALE = (0.5, 0.5, 1.0)


def _units(recurrent_kernel: tf.Tensor) -> tf.Tensor:
    """The state size, as a tensor: with ``reduce_retracing`` a trace shared by layers of
    different sizes has no static shapes, so ``h0.shape[1]`` would be None."""
    return tf.shape(recurrent_kernel)[0]


def _gate_scale(units: tf.Tensor, pattern: tuple[float, ...]) -> tf.Tensor:
    return tf.concat([tf.fill([units], s) for s in pattern], axis=0)


def _mask_info(mask: tf.Tensor | None, length: tf.Tensor, rows: tf.Tensor, zero_output: bool):
    """Time-major float mask (T, b, 1), output weights and the span of steps to run.

    ``length`` is the number of real steps; later ones only pad the time axis to a size
    that was compiled before (and are masked when there is a mask).
    """
    if mask is None:
        # An empty group (a batch smaller than the number of groups) skips the loop.
        return None, None, 0, tf.where(rows > 0, length, 0)
    m = tf.transpose(tf.cast(mask, tf.float32))[:, :, None]
    # Keras zeroes outputs before a row's first valid step, then repeats the last one.
    w = m if zero_output else tf.cast(tf.math.cumsum(m, axis=0) > 0, tf.float32)
    any_valid = tf.reduce_any(m[:, :, 0] > 0, axis=1)  # (T,)
    idx = tf.range(tf.shape(m)[0])
    t_hi = tf.reduce_max(tf.where(any_valid, idx + 1, 0))
    t_lo = tf.minimum(tf.reduce_min(tf.where(any_valid, idx, length)), t_hi)
    return m, w, t_lo, t_hi


def _fill_outside(seq: tf.Tensor, first: tf.Tensor, last: tf.Tensor, t_lo, t_hi) -> tf.Tensor:
    """States before ``t_lo`` are the initial state, from ``t_hi`` on the final one."""
    idx = tf.range(tf.shape(seq)[0])[:, None, None]
    return tf.where(idx < t_lo, first[None], tf.where(idx >= t_hi, last[None], seq))


def _sum_outside(d: tf.Tensor, t_lo, t_hi) -> tuple[tf.Tensor, tf.Tensor]:
    """Gradients of the filled steps: (sum before ``t_lo``, sum from ``t_hi`` on)."""
    idx = tf.range(tf.shape(d)[0])[:, None, None]
    zero = tf.zeros_like(d)
    before = tf.reduce_sum(tf.where(idx < t_lo, d, zero), axis=0)
    return before, tf.reduce_sum(tf.where(idx >= t_hi, d, zero), axis=0)


def _prev(seq: tf.Tensor, first: tf.Tensor, t) -> tf.Tensor:
    return tf.where(t > 0, seq[tf.maximum(t - 1, 0)], first)


def _states_and_outputs(hs, h, h0, w, t_lo, t_hi, length, store: bool, sequence: bool):
    """(layer outputs, state sequence or None) from the loop's state TensorArray.

    Outputs are batch-major (b, T, u) with ``sequence``, else the last real step (b, u).
    """
    states = None
    if store or sequence:
        states = hs.stack()  # (T, b, u)
        if w is not None:
            states = _fill_outside(states, h0, h, t_lo, t_hi)
    if sequence:
        out = states if w is None else states * w
        return tf.transpose(out, [1, 0, 2]), states
    return (h if w is None else h * w[length - 1]), states


def _state_grads(d_out, w, length, steps, sequence: bool):
    """Gradient of the state sequence (T, b, u) from that of the layer outputs."""
    if sequence:
        d_state = tf.transpose(d_out, [1, 0, 2])
    else:
        d_state = tf.pad(d_out[None], [[length - 1, steps - length], [0, 0], [0, 0]])
    return d_state if w is None else d_state * w


def _lstm_gates(x_t, h, kernel, recurrent_kernel, bias):
    """tanh of the halved i, f, o and of the c pre-activations: (b, 4u)."""
    return tf.tanh(tf.matmul(x_t, kernel) + tf.matmul(h, recurrent_kernel) + bias)


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def lstm_forward(
    x, h0, c0, kernel, recurrent_kernel, bias, mask, length, *, zero_output, store, sequence
):
    """Runs the LSTM over one group of rows.

    Args:
        x: (b, T, F) inputs, batch-major.
        h0: (b, u) initial output state.
        c0: (b, u) initial carry state.
        kernel: (F, 4u), gates i, f, c, o.
        recurrent_kernel: (u, 4u).
        bias: (4u,).
        mask: (b, T) bool, or None.
        length: int32 scalar, the steps to run; later steps are padding (zero outputs).
        zero_output: masked steps output zeros instead of repeating the last output.
        store: also return the state sequences the backward pass needs.
        sequence: return every step's output, not only the last.

    Returns:
        (outputs, h_T, c_T), outputs (b, T, u) with ``sequence``, else (b, u) for the last
        real step; with ``store`` also the state sequences h and c (T, b, u).
    """
    steps, units = tf.shape(x)[1], _units(recurrent_kernel)
    m, w, t_lo, t_hi = _mask_info(mask, length, tf.shape(x)[0], zero_output)
    scale = _gate_scale(units, _LSTM_SCALE)
    weights = (kernel * scale, recurrent_kernel * scale, bias * scale)
    x_tm = tf.transpose(x, [1, 0, 2])

    def body(t, h, c, hs, cs):
        a_i, a_f, g, a_o = tf.split(_lstm_gates(x_tm[t], h, *weights), 4, axis=1)
        c_new = (0.5 + 0.5 * a_f) * c + (0.5 + 0.5 * a_i) * g
        h_new = (0.5 + 0.5 * a_o) * tf.tanh(c_new)
        if m is not None:
            keep = m[t] > 0
            h_new, c_new = tf.where(keep, h_new, h), tf.where(keep, c_new, c)
        hs = hs.write(t, h_new) if (store or sequence) else hs
        cs = cs.write(t, c_new) if store else cs
        return t + 1, h_new, c_new, hs, cs

    arrays = [tf.TensorArray(x.dtype, size=steps) for _ in range(2)]
    _, h, c, hs, cs = tf.while_loop(
        lambda t, *_: t < t_hi, body, (t_lo, h0, c0, *arrays), maximum_iterations=steps
    )
    out, hs = _states_and_outputs(hs, h, h0, w, t_lo, t_hi, length, store, sequence)
    if not store:
        return out, h, c
    cs = cs.stack() if m is None else _fill_outside(cs.stack(), c0, c, t_lo, t_hi)
    return out, h, c, hs, cs


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def lstm_backward(
    d_out, d_h, d_c, x, h0, c0, kernel, recurrent_kernel, bias, hs, cs, mask, length, *,
    zero_output, sequence,
):  # fmt: skip
    """Gradients of `lstm_forward` (``store=True``) from those of its outputs.

    Returns:
        (d_x (b, T, F), d_h0, d_c0, d_kernel, d_recurrent_kernel, d_bias).
    """
    steps, units = tf.shape(x)[1], _units(recurrent_kernel)
    m, w, t_lo, t_hi = _mask_info(mask, length, tf.shape(x)[0], zero_output)
    d_state = _state_grads(d_out, w, length, steps, sequence)
    if m is not None:
        d_before, d_after = _sum_outside(d_state, t_lo, t_hi)
        d_h = d_h + d_after
    scale = _gate_scale(units, _LSTM_SCALE)
    weights = (kernel * scale, recurrent_kernel * scale, bias * scale)
    # d/dz of [sigmoid, sigmoid, tanh, sigmoid] given a = tanh(scaled z).
    deriv_scale = _gate_scale(units, (0.25, 0.25, 1.0, 0.25))
    x_tm = tf.transpose(x, [1, 0, 2])

    def body(t, dh, dc, dk, drk, db, dxs):
        t = t - 1
        x_t, h_prev = x_tm[t], _prev(hs, h0, t)
        a = _lstm_gates(x_t, h_prev, *weights)  # recomputed, cheaper than stored
        a_i, a_f, g, a_o = tf.split(a, 4, axis=1)
        dh = dh + d_state[t]
        tc = tf.tanh(cs[t])
        dc_new = dc + dh * (0.5 + 0.5 * a_o) * (1.0 - tc * tc)
        d_gate = [dc_new * g, dc_new * _prev(cs, c0, t), dc_new * (0.5 + 0.5 * a_i), dh * tc]
        dz = tf.concat(d_gate, axis=1) * (deriv_scale * (1.0 - a * a))  # (b, 4u)
        dc_prev = dc_new * (0.5 + 0.5 * a_f)
        if m is not None:
            keep = m[t]
            dz = dz * keep
            dc_prev = keep * dc_prev + (1.0 - keep) * dc
        dh_prev = tf.matmul(dz, recurrent_kernel, transpose_b=True)
        if m is not None:
            dh_prev = dh_prev + (1.0 - keep) * dh
        dk = dk + tf.matmul(x_t, dz, transpose_a=True)
        drk = drk + tf.matmul(h_prev, dz, transpose_a=True)
        dxs = dxs.write(t, tf.matmul(dz, kernel, transpose_b=True))
        return t, dh_prev, dc_prev, dk, drk, db + tf.reduce_sum(dz, axis=0), dxs

    init = (t_hi, d_h, d_c, tf.zeros_like(kernel), tf.zeros_like(recurrent_kernel))
    init += (tf.zeros_like(bias), tf.TensorArray(x.dtype, size=steps))
    _, d_h, d_c, dk, drk, db, dxs = tf.while_loop(
        lambda t, *_: t > t_lo, body, init, maximum_iterations=steps
    )
    if m is not None:
        d_h = d_h + d_before
    return tf.transpose(dxs.stack(), [1, 0, 2]), d_h, d_c, dk, drk, db


def _gru_parts(x_t, h, kernel, recurrent_kernel, bias, units: tf.Tensor):
    """(tanh of halved z and r pre-activations (b, 2u), candidate (b, u), h @ U_h + b_h)."""
    x_zr, x_h = tf.split(tf.matmul(x_t, kernel) + bias[0], [2 * units, units], axis=1)
    rec = tf.matmul(h, recurrent_kernel) + bias[1]
    rec_zr, rec_h = tf.split(rec, [2 * units, units], axis=1)
    a = tf.tanh(x_zr + rec_zr)
    cand = tf.tanh(x_h + (0.5 + 0.5 * a[:, units:]) * rec_h)
    return a, cand, rec_h


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def gru_forward(
    x, h0, kernel, recurrent_kernel, bias, mask, length, *, zero_output, store, sequence
):
    """Runs the GRU (``reset_after=True``) over one group of rows.

    Args:
        x: (b, T, F) inputs, batch-major.
        h0: (b, u) initial state.
        kernel: (F, 3u), gates z, r, h.
        recurrent_kernel: (u, 3u).
        bias: (2, 3u): input bias, recurrent bias.
        mask: (b, T) bool, or None.
        length: int32 scalar, the steps to run; later steps are padding (zero outputs).
        zero_output: masked steps output zeros instead of repeating the last output.
        store: also return the state sequence the backward pass needs.
        sequence: return every step's output, not only the last.

    Returns:
        (outputs, h_T), outputs (b, T, u) with ``sequence``, else (b, u) for the last real
        step; with ``store`` also the state sequence (T, b, u).
    """
    steps, units = tf.shape(x)[1], _units(recurrent_kernel)
    m, w, t_lo, t_hi = _mask_info(mask, length, tf.shape(x)[0], zero_output)
    scale = _gate_scale(units, _GRU_SCALE)
    weights = (kernel * scale, recurrent_kernel * scale, bias * scale)
    x_tm = tf.transpose(x, [1, 0, 2])

    def body(t, h, hs):
        a, cand, _ = _gru_parts(x_tm[t], h, *weights, units)
        z = 0.5 + 0.5 * a[:, :units]
        h_new = z * h + (1.0 - z) * cand
        if m is not None:
            h_new = tf.where(m[t] > 0, h_new, h)
        return t + 1, h_new, hs.write(t, h_new) if (store or sequence) else hs

    _, h, hs = tf.while_loop(
        lambda t, *_: t < t_hi,
        body,
        (t_lo, h0, tf.TensorArray(x.dtype, size=steps)),
        maximum_iterations=steps,
    )
    out, hs = _states_and_outputs(hs, h, h0, w, t_lo, t_hi, length, store, sequence)
    return (out, h, hs) if store else (out, h)


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def gru_backward(
    d_out, d_h, x, h0, kernel, recurrent_kernel, bias, hs, mask, length, *, zero_output, sequence
):
    """Gradients of `gru_forward` (``store=True``) from those of its outputs.

    Returns:
        (d_x (b, T, F), d_h0, d_kernel, d_recurrent_kernel, d_bias (2, 3u)).
    """
    steps, units = tf.shape(x)[1], _units(recurrent_kernel)
    m, w, t_lo, t_hi = _mask_info(mask, length, tf.shape(x)[0], zero_output)
    d_state = _state_grads(d_out, w, length, steps, sequence)
    if m is not None:
        d_before, d_after = _sum_outside(d_state, t_lo, t_hi)
        d_h = d_h + d_after
    scale = _gate_scale(units, _GRU_SCALE)
    weights = (kernel * scale, recurrent_kernel * scale, bias * scale)
    x_tm = tf.transpose(x, [1, 0, 2])

    def body(t, dh, dk, drk, db_in, db_rec, dxs):
        t = t - 1
        x_t, h_prev = x_tm[t], _prev(hs, h0, t)
        a, cand, rec_h = _gru_parts(x_t, h_prev, *weights, units)
        a_z, a_r = a[:, :units], a[:, units:]
        z = 0.5 + 0.5 * a_z
        dh = dh + d_state[t]
        d_cand = dh * (1.0 - z) * (1.0 - cand * cand)  # of the candidate pre-activation
        d_z = dh * (h_prev - cand) * 0.25 * (1.0 - a_z * a_z)
        d_r = d_cand * rec_h * 0.25 * (1.0 - a_r * a_r)
        d_rec = tf.concat([d_z, d_r, d_cand * (0.5 + 0.5 * a_r)], axis=1)  # of h @ U + b_rec
        d_proj = tf.concat([d_z, d_r, d_cand], axis=1)  # of x @ W + b_in
        direct = z
        if m is not None:
            keep = m[t]
            d_rec, d_proj = d_rec * keep, d_proj * keep
            direct = keep * z + (1.0 - keep)
        dh_prev = tf.matmul(d_rec, recurrent_kernel, transpose_b=True) + dh * direct
        dk = dk + tf.matmul(x_t, d_proj, transpose_a=True)
        drk = drk + tf.matmul(h_prev, d_rec, transpose_a=True)
        db_in = db_in + tf.reduce_sum(d_proj, axis=0)
        db_rec = db_rec + tf.reduce_sum(d_rec, axis=0)
        dxs = dxs.write(t, tf.matmul(d_proj, kernel, transpose_b=True))
        return t, dh_prev, dk, drk, db_in, db_rec, dxs

    zeros_b = tf.zeros_like(bias[0])
    init = (t_hi, d_h, tf.zeros_like(kernel), tf.zeros_like(recurrent_kernel), zeros_b, zeros_b)
    _, d_h, dk, drk, db_in, db_rec, dxs = tf.while_loop(
        lambda t, *_: t > t_lo,
        body,
        (*init, tf.TensorArray(x.dtype, size=steps)),
        maximum_iterations=steps,
    )
    if m is not None:
        d_h = d_h + d_before
    d_x = tf.transpose(dxs.stack(), [1, 0, 2])
    return d_x, d_h, dk, drk, tf.stack([db_in, db_rec])


@tf.function(jit_compile=True, reduce_retracing=True, autograph=False)
def run_sequentially(kernel, arg_lists, **flags):
    """Several calls of one kernel as one XLA computation, so they run one after another.

    Pairing a group of long rows with a group of short ones this way keeps the cores'
    loads even, whatever order TensorFlow dispatches the computations in.
    """
    return [kernel(*args, **flags) for args in arg_lists]
