"""Windowing throughput and memory: our windows + tf.data vs Keras' timeseries_dataset_from_array.

Run from the repository root::

    TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow .venv/bin/python -m benchmarks.windowing
    ... -m benchmarks.windowing --quick        # 100k steps, a few seconds
    ... -m benchmarks.windowing --variants     # also the alternatives we measured

Both pipelines read the same float32 (steps, 8) series with lookback 64 and batch 256. Ours
builds the windows (12-step targets) and the dataset inside the timed region and iterates
every batch. Keras gathers each window separately (~10,000 windows/s), so only its first
batches are iterated, after its dataset is built outside the timed region, and its rate is
extrapolated from them. Each pipeline is consumed two ways: by a Python ``for`` loop over
the batches, and inside the TensorFlow graph with ``Dataset.reduce``, as ``model.fit`` does.

Rates are given per wall-clock second and per CPU second of the process (all threads); the
second is steadier on a shared machine. Peak memory is the peak resident set size (RSS,
sampled every millisecond with psutil) above the RSS just before windowing starts, with
TensorFlow warmed up, relative to the size of the source array.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import numpy as np
import psutil

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from pipelines.dataset import to_dataset  # noqa: E402
from pipelines.window import WindowSpec, windows_from_array  # noqa: E402

LOOKBACK, HORIZON, BATCH, FEATURES = 64, 12, 256, 8


def _consume(ds: tf.data.Dataset, in_graph: bool) -> int:
    """Iterate every batch of `ds`; returns the number of windows seen."""
    if in_graph:
        return int(ds.reduce(np.int64(0), lambda n, batch: n + tf.shape(batch[1], tf.int64)[0]))
    n = 0
    for _, target in ds:
        n += target.shape[0]
    return n


def _ours(x: np.ndarray, spec: WindowSpec, in_graph: bool = False, **kwargs) -> int:
    windows = windows_from_array(x, spec, n_targets=1)
    return _consume(to_dataset(windows, batch_size=BATCH, **kwargs), in_graph)


def _keras_dataset(x: np.ndarray) -> tf.data.Dataset:
    # targets[i] pairs with the window starting at i: the step right after it.
    return keras.utils.timeseries_dataset_from_array(
        x, x[LOOKBACK:, 0], sequence_length=LOOKBACK, batch_size=BATCH
    )


def _measure(fn: Callable[[], int]) -> tuple[float, float]:
    """(windows per wall-clock second, windows per CPU second of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    n = fn()
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def _peak_rss(fn: Callable[[], int]) -> int:
    """Peak RSS above the RSS before `fn`, in bytes, sampled every millisecond."""
    process = psutil.Process()
    base = process.memory_info().rss
    peak, done = [base], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(peak[0], process.memory_info().rss) - base


def _median(runs: list[tuple[float, float]], k: int) -> float:
    return statistics.median(r[k] for r in runs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k steps, fewer repeats")
    parser.add_argument("--variants", action="store_true", help="also time the alternatives")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--keras-batches", type=int, default=None)
    parser.add_argument("--peak-of", default=None, help=argparse.SUPPRESS)  # one variant
    args = parser.parse_args(argv)
    steps = 100_000 if args.quick else 1_000_000
    repeats = args.repeats or (3 if args.quick else 5)
    keras_batches = args.keras_batches or (20 if args.quick else 100)

    x = np.random.default_rng(0).standard_normal((steps, FEATURES)).astype(np.float32)
    spec = WindowSpec(LOOKBACK, HORIZON)
    for in_graph in (False, True):  # warm up TensorFlow so its start-up is not counted
        _ours(x[:5_000], spec, in_graph)
        _consume(_keras_dataset(x[:5_000]).take(2), in_graph)

    if args.peak_of:  # child process of _variants: print the peak RSS delta in bytes
        print(_peak_rss(_variant_runs(x, spec)[args.peak_of][0]))
        return
    print(
        f"source: {steps:,} steps x {FEATURES} float32 = {x.nbytes / 2**20:.1f} MiB; "
        f"lookback={LOOKBACK}, horizon={HORIZON}, batch={BATCH}; "
        f"ours: all {steps - LOOKBACK - HORIZON + 1:,} windows, Keras: first {keras_batches} "
        f"batches ({keras_batches * BATCH:,} windows), rate extrapolated"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before the run; "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}; medians of {repeats} runs"
    )
    peak = _peak_rss(lambda: _ours(x, spec))
    keras_ds = _keras_dataset(x)
    print(f"{'windows/s':<32}{'wall clock':>14}{'CPU time':>14}")
    for in_graph, label in ((False, "Python for-loop"), (True, "in-graph Dataset.reduce")):
        ours, theirs = [], []
        for _ in range(repeats):  # interleaved, so both see the same load
            ours.append(_measure(lambda g=in_graph: _ours(x, spec, g)))
            theirs.append(_measure(lambda g=in_graph: _consume(keras_ds.take(keras_batches), g)))
        print(f"{label}:")
        print(f"  {'ours':<30}{_median(ours, 0):>14,.0f}{_median(ours, 1):>14,.0f}")
        print(f"  {'keras':<30}{_median(theirs, 0):>14,.0f}{_median(theirs, 1):>14,.0f}")
        speedup = [_median(ours, k) / _median(theirs, k) for k in (0, 1)]
        print(f"  {'speed-up (goal >= 100x)':<30}{speedup[0]:>13,.0f}x{speedup[1]:>13,.0f}x")
        print(f"  {'ours, each run (wall)':<30}  {', '.join(f'{r[0]:,.0f}' for r in ours)}")
    print(
        f"peak memory of ours (RSS delta, psutil): {peak / 2**20:.1f} MiB = "
        f"{peak / x.nbytes:.2f}x the source array (goal < 2x)"
    )
    if args.variants:
        _variants(x, spec, repeats, args.quick)


def _variant_runs(x: np.ndarray, spec: WindowSpec) -> dict[str, tuple[Callable[[], int], int]]:
    """name -> (run, bytes of the source it reads)."""
    dynamic = WindowSpec(LOOKBACK, HORIZON, min_lookback=16)
    small = x[: min(len(x), 200_000)]
    return {
        "ours, shuffled": (lambda: _ours(x, spec, shuffle=True, seed=0), x.nbytes),
        "ours, dynamic (min_lookback=16) + mask": (lambda: _ours(x, dynamic), x.nbytes),
        "ours, dynamic, shuffled + bucketed": (
            lambda: _ours(x, dynamic, shuffle=True, seed=0, bucket=True),
            x.nbytes,
        ),
        "ours, prefetch=AUTOTUNE": (lambda: _ours(x, spec, prefetch=tf.data.AUTOTUNE), x.nbytes),
        "numpy gather, 16 batches per from_generator": (
            lambda: _generator_gather(x, spec),
            x.nbytes,
        ),
        f"from_tensor_slices(view), {len(small):,} steps": (
            lambda: _materialized(small, spec),
            small.nbytes,
        ),
    }


def _variants(x: np.ndarray, spec: WindowSpec, repeats: int, quick: bool) -> None:
    print("\nvariants, Python for-loop: windows/s (wall clock, CPU time); peak RSS / source,")
    print("each peak measured in a fresh process")
    for name, (fn, nbytes) in _variant_runs(x, spec).items():
        command = [sys.executable, "-m", "benchmarks.windowing", "--peak-of", name]
        out = subprocess.run(command + ["--quick"] * quick, capture_output=True, text=True)
        peak = int(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan")
        runs = [_measure(fn) for _ in range(repeats)]
        print(
            f"  {name:<46}{_median(runs, 0):>12,.0f}{_median(runs, 1):>12,.0f}"
            f"{peak / nbytes:>9.2f}x"
        )


def _generator_gather(x: np.ndarray, spec: WindowSpec, per_call: int = 16) -> int:
    """Alternative: numpy gathers `per_call` batches at a time, fed by from_generator."""
    windows = windows_from_array(x, spec, n_targets=1)
    past = np.lib.stride_tricks.sliding_window_view(x, LOOKBACK, axis=0).transpose(0, 2, 1)
    ahead = np.lib.stride_tricks.sliding_window_view(x[:, :1], HORIZON, axis=0).transpose(0, 2, 1)
    starts = windows.last - (LOOKBACK - 1)
    n_full = len(starts) // BATCH

    def batches():
        for b in range(0, n_full, per_call):
            idx = starts[b * BATCH : min(b + per_call, n_full) * BATCH]
            yield (
                past[idx].reshape(-1, BATCH, LOOKBACK, FEATURES),
                ahead[idx + LOOKBACK].reshape(-1, BATCH, HORIZON, 1),
            )

    signature = (
        tf.TensorSpec((None, BATCH, LOOKBACK, FEATURES), tf.float32),
        tf.TensorSpec((None, BATCH, HORIZON, 1), tf.float32),
    )
    ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return _consume(ds.unbatch().prefetch(4), in_graph=False)


def _materialized(x: np.ndarray, spec: WindowSpec) -> int:
    """Alternative: from_tensor_slices of the zero-copy views (TF copies every window)."""
    windows = windows_from_array(x, spec, n_targets=1)
    ds = tf.data.Dataset.from_tensor_slices((windows.past, windows.target)).batch(BATCH)
    return _consume(ds, in_graph=False)


if __name__ == "__main__":
    main()
