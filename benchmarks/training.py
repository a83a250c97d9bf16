"""Training and inference speed of LSTM/GRU layers: Keras, our default layers, PyTorch.

Run from the repository root::

    TF_CPP_MIN_LOG_LEVEL=2 KERAS_BACKEND=tensorflow .venv/bin/python -m benchmarks.training
    ... -m benchmarks.training --quick              # fewer batches and repeats
    ... -m benchmarks.training --only train,infer   # some sections

The PyTorch columns need the `bench` extra (``pip install 'rnn-forecast[bench]'``, torch
2.13.0); without it they are left out.

Every model runs in its own worker process, so TensorFlow's and PyTorch's thread pools never
compete. The parent asks the workers in turn to run one epoch (after a warm-up epoch that
traces and compiles), rotating the order at every repeat so all candidates see the same
machine load, and reports medians over the repeats: samples/s by wall clock, and the ratio
of samples per CPU-second of the worker process, which is steadier on a shared machine.

"Ours" is the layer the model builder creates by default
(`forecast.models.recurrent.make_recurrent_layer`, i.e. `forecast.models.layers.FusedLSTM` /
`FusedGRU`), trained as the package's `fit` trains (`training.steps_per_execution` batches a
call of Keras' train function) and, beside it, at one batch a call ("ours 1/call"). Models: one recurrent layer of 64 units over 8 features and a Dense(1) head, MSE, Adam,
batch 256. "Dynamic" windows carry a right-padded mask with history lengths drawn uniformly
from 8 to the lookback; PyTorch gets them unmasked (the issue's yardstick) and packed
(`pack_padded_sequence`). GFLOP/s counts the matrix products of training (3x the forward
products) over the real, unpadded steps only.

Inference: Keras' layer runs as Keras users run it (`Model.predict`, a `tf.function` for one
window); ours as the package runs it (`forecast.evaluation.scoring.predict_windows`: the
model's concrete function for any batch, and the one traced for a single window), in the
same batches of 256 as PyTorch.

Request (``--only request``, in this process): one window of the serving benchmark's network
through the plain one-window trace and through the XLA one the package runs, in a tight loop
and right after the few milliseconds of pandas work a served request does first (or a
sleep), alternating the two so both see the same machine.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import time
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

BATCH, FEATURES, UNITS = 256, 8, 64
SECTIONS = ("peak", "train", "lookback", "infer", "varlen", "request")


def _lengths(rng: np.random.Generator, n: int, lookback: int, log: bool = False) -> np.ndarray:
    if log:  # log-uniform between 8 and the lookback: many short histories, a few long ones
        return np.exp(rng.uniform(np.log(8), np.log(lookback + 1), n)).astype(int)
    return rng.integers(8, lookback + 1, n)


def _data(case: dict[str, Any]) -> dict[str, np.ndarray]:
    """Inputs, targets and (for dynamic windows) lengths and mask of one benchmark case."""
    rng = np.random.default_rng(case.get("seed", 0))
    n, lookback = case["batches"] * BATCH, case["lookback"]
    x = rng.standard_normal((n, lookback, FEATURES)).astype("float32")
    out = {"x": x, "y": rng.standard_normal((n, 1)).astype("float32")}
    if case.get("masked"):
        lengths = _lengths(rng, n, lookback, log=case.get("log_lengths", False))
        out["mask"] = np.arange(lookback)[None, :] < lengths[:, None]
        out["x"] = x * out["mask"][:, :, None]  # padding is zeros, as in pipelines.window
        out["lengths"] = lengths
    return out


def _epoch_clock() -> Any:
    """A callback that records (wall, CPU) seconds from the first to the last batch."""
    import keras

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            now = (time.perf_counter(), time.process_time())
            self.timing = (now[0] - self.start[0], now[1] - self.start[1])

    return EpochClock()


def _latency(call: Any, n: int = 200) -> float:
    """Median seconds of `call` over `n` calls, the first 20 left out."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times[20:])


class _KerasRunner:
    """A Keras model with either `keras.layers.LSTM/GRU` or our fused layers."""

    def __init__(self, case: dict[str, Any], impl: str, steps_per_execution: int = 1) -> None:
        import keras
        import tensorflow as tf

        from forecast.models.recurrent import make_recurrent_layer

        self.tf, self.case, self.data, self.impl = tf, case, _data(case), impl
        plain = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[case["cell"]]
        # "Ours" is whatever the model builder creates by default for this cell.
        layer = make_recurrent_layer(case["cell"], UNITS) if impl == "fused" else plain(UNITS)
        if case.get("bidirectional"):
            layer = keras.layers.Bidirectional(layer)
        steps = None if case.get("log_lengths") else case["lookback"]  # bucketing: varies
        inputs = {"past": keras.Input((steps, FEATURES), name="past")}
        mask = None
        if case.get("masked"):
            mask = inputs["mask"] = keras.Input((steps,), dtype="bool", name="mask")
        out = keras.layers.Dense(1)(layer(inputs["past"], mask=mask))
        self.model = keras.Model(inputs, out)
        self.model.compile(
            keras.optimizers.Adam(1e-3), "mse", steps_per_execution=steps_per_execution
        )
        slices = (self._inputs(self.data, slice(None)), self.data["y"])
        self.dataset = tf.data.Dataset.from_tensor_slices(slices).batch(BATCH).prefetch(2)
        self.infer = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def _inputs(self, data: dict[str, np.ndarray], rows: Any) -> dict[str, np.ndarray]:
        inputs = {"past": data["x"][rows]}
        if "mask" in data:
            inputs["mask"] = data["mask"][rows]
        return inputs

    def epoch(self) -> int:
        # Timed from the first to the last batch: `fit` also spends 0.1-0.5 s setting up
        # its iterator and callbacks, which would swamp a short epoch.
        clock = _epoch_clock()
        self.model.fit(self.dataset, epochs=1, verbose=0, callbacks=[clock])
        self.timing = clock.timing
        return len(self.data["y"])

    def predict(self) -> int:
        """10,000 windows in batches of 256: Keras' `Model.predict`; ours as the package runs
        a batch (`forecast.evaluation.scoring.predict_windows`: its cached concrete function)."""
        from forecast.evaluation import scoring

        if not hasattr(self, "windows"):  # built in the warm-up call, outside the timing
            self.windows = self._inputs(self.data, np.arange(10_000) % len(self.data["y"]))
            self.ours = scoring._predict_function(self.model, self.windows)
        if self.impl != "fused":
            self.model.predict(self.windows, batch_size=BATCH, verbose=0)
            return 10_000
        for i in range(0, 10_000, BATCH):
            np.asarray(self.ours({k: v[i : i + BATCH] for k, v in self.windows.items()}))
        return 10_000

    def compiled(self) -> int:
        """The compiled model call on 10,000 windows in batches of 256, without `predict`."""
        if not hasattr(self, "batches_in"):
            self.predict()
            self.batches_in = [
                {k: self.tf.constant(v[i : i + BATCH]) for k, v in self.windows.items()}
                for i in range(0, 10_000, BATCH)
            ]
        for batch in self.batches_in:
            self.infer(batch).numpy()
        return 10_000

    def latency(self) -> float:
        """Median seconds for one window through a compiled call, as a server would run it:
        Keras' layer through a `tf.function`, ours through the package's predict path (its
        concrete function for one window)."""
        window = self._inputs(self.data, slice(0, 1))
        one = {k: self.tf.constant(v) for k, v in window.items()}
        if self.impl != "fused":
            return _latency(lambda: self.infer(one).numpy())
        from forecast.evaluation import scoring

        call = scoring._predict_function(self.model, window)
        return _latency(lambda: np.asarray(call(one)))


class _TorchRunner:
    """The same model in PyTorch; ``packed`` feeds dynamic windows as packed sequences."""

    def __init__(self, case: dict[str, Any], packed: bool) -> None:
        import torch

        self.torch, self.case, self.packed, self.data = torch, case, packed, _data(case)
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[case["cell"]]
        bi = bool(case.get("bidirectional"))
        self.rnn = cls(FEATURES, UNITS, batch_first=True, bidirectional=bi)
        self.head = torch.nn.Linear(UNITS * (2 if bi else 1), 1)
        self.optimizer = None  # made by the first epoch: inference needs none
        self.x, self.y = torch.from_numpy(self.data["x"]), torch.from_numpy(self.data["y"])
        self.lengths = torch.from_numpy(self.data.get("lengths", np.zeros(len(self.y), int)))

    def _forward(self, x: Any, lengths: Any = None) -> Any:
        if self.packed:
            x = self.torch.nn.utils.rnn.pack_padded_sequence(
                x, lengths, batch_first=True, enforce_sorted=False
            )
        _, state = self.rnn(x)
        h = state[0] if isinstance(state, tuple) else state  # (directions, B, units)
        return self.head(self.torch.cat([h[-2], h[-1]], 1) if self.rnn.bidirectional else h[-1])

    def epoch(self) -> int:
        if self.optimizer is None:
            params = list(self.rnn.parameters()) + list(self.head.parameters())
            self.optimizer = self.torch.optim.Adam(params, lr=1e-3)
        for start in range(0, len(self.y), BATCH):
            rows = slice(start, start + BATCH)
            self.optimizer.zero_grad()
            out = self._forward(self.x[rows], self.lengths[rows])
            self.torch.nn.functional.mse_loss(out, self.y[rows]).backward()
            self.optimizer.step()
        return len(self.y)

    def predict(self) -> int:
        if not hasattr(self, "windows"):  # built in the warm-up call, outside the timing
            self.windows = self.x[self.torch.from_numpy(np.arange(10_000) % len(self.y))]
        with self.torch.inference_mode():
            for start in range(0, 10_000, BATCH):
                self._forward(self.windows[start : start + BATCH])
        return 10_000

    compiled = predict  # eager PyTorch has no separate compiled path

    def latency(self) -> float:
        with self.torch.inference_mode():
            return _latency(lambda: self._forward(self.x[:1], self.lengths[:1]))


class _VarlenRunner(_KerasRunner):
    """Our LSTM on dynamic windows: padded to the lookback, or bucketed by length.

    Bucketing sorts the windows by history length and cuts each batch to its longest
    history, as ``pipelines.dataset.to_dataset(bucket=True)`` does.
    """

    def __init__(self, case: dict[str, Any], layout: str) -> None:
        super().__init__(case, "fused")
        self.layout = layout
        self.batches = self._layout(layout)
        spec = self.tf.TensorSpec
        past, mask = spec((None, None, FEATURES), "float32"), spec((None, None), "bool")
        self.signature = ({"past": past, "mask": mask}, spec((None, 1), "float32"))
        data = self.tf.data.Dataset.from_generator(
            lambda: iter(self.batches), output_signature=self.signature
        )
        self.dataset = data.apply(self.tf.data.experimental.assert_cardinality(len(self.batches)))

    def _layout(self, layout: str, with_rows: bool = False) -> list[tuple[Any, ...]]:
        lengths, n = self.data["lengths"], len(self.data["y"])
        order = np.argsort(lengths, kind="stable") if layout == "bucket" else np.arange(n)
        batches = []
        for start in range(0, n, BATCH):
            rows = order[start : start + BATCH]
            steps = int(lengths[rows].max()) if layout == "bucket" else self.case["lookback"]
            inputs = {k: v[:, :steps] for k, v in self._inputs(self.data, rows).items()}
            batches.append((inputs, self.data["y"][rows]) + ((rows,) if with_rows else ()))
        # Batches in a fixed shuffled order, so neither layout sees lengths in sorted order.
        np.random.default_rng(1).shuffle(batches)
        return batches

    def check(self) -> tuple[float, float]:
        """(max |prediction difference|, max relative gradient difference) against padding."""
        tf, weights = self.tf, self.model.trainable_weights

        @tf.function(input_signature=self.signature)
        def step(inputs, y):
            with tf.GradientTape() as tape:
                out = self.model(inputs, training=False)
                loss = tf.reduce_sum((out - y) ** 2)
            return out, tape.gradient(loss, weights)

        def run(layout):
            preds, grads = np.zeros(len(self.data["y"])), None
            for inputs, y, rows in self._layout(layout, with_rows=True):
                out, g = step(inputs, y)
                preds[rows] = out.numpy()[:, 0]
                grads = g if grads is None else [a + b for a, b in zip(grads, g, strict=True)]
            return preds, grads

        (p1, g1), (p2, g2) = run("bucket"), run("pad")
        grad_diff = max(
            float(tf.reduce_max(tf.abs(a - b)) / tf.reduce_max(tf.abs(b)))
            for a, b in zip(g1, g2, strict=True)
        )
        return float(np.abs(p1 - p2).max()), grad_diff


class _PeakRunner:
    """Float32 matrix-product rate of TensorFlow on this machine, the roofline for GFLOP/s."""

    def __init__(self, case: dict[str, Any], impl: str) -> None:
        import tensorflow as tf

        self.a = tf.random.normal((2048, 2048))
        self.matmul = tf.function(lambda a: tf.matmul(a, a))
        self.matmul(self.a).numpy()

    def peak(self) -> float:
        start = time.perf_counter()
        for _ in range(10):
            self.matmul(self.a).numpy()
        return 10 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9


def _package_steps() -> int:
    """The batches a call the package's `fit` runs (`training.steps_per_execution`)."""
    from forecast.config import TrainConfig

    return TrainConfig().steps_per_execution


_RUNNERS = {
    "keras": lambda case: _KerasRunner(case, "keras"),
    "ours": lambda case: _KerasRunner(case, "fused", _package_steps()),
    "ours, 1 batch a call": lambda case: _KerasRunner(case, "fused"),
    "torch": lambda case: _TorchRunner(case, packed=False),
    "torch packed": lambda case: _TorchRunner(case, packed=True),
    "padded": lambda case: _VarlenRunner(case, "pad"),
    "bucketed": lambda case: _VarlenRunner(case, "bucket"),
    "peak": lambda case: _PeakRunner(case, "peak"),
}


def _worker(conn: Any, name: str, case: dict[str, Any], task: str) -> None:
    runner = _RUNNERS[name](case)
    getattr(runner, task)()  # warm-up: traces, compiles, fills caches
    conn.send("ready")
    while (message := conn.recv()) != "stop":
        runner.timing = None
        start, cpu = time.perf_counter(), time.process_time()
        result = getattr(runner, message)()
        timing = runner.timing or (time.perf_counter() - start, time.process_time() - cpu)
        conn.send((*timing, result))
    conn.close()


def _torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _compare(
    names: list[str], case: dict[str, Any], task: str, repeats: int
) -> dict[str, list[tuple[float, float, Any]]]:
    """Runs `task` on each named runner in its own process, interleaved, `repeats` times."""
    ctx = mp.get_context("spawn")
    names = [n for n in names if _torch_available() or not n.startswith("torch")]
    workers = {}
    for name in names:  # warm up one at a time so compilation does not compete
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, name, case, task), daemon=True)
        proc.start()
        if parent.recv() != "ready":
            raise RuntimeError(f"worker {name} failed to start")
        workers[name] = (parent, proc)
    runs: dict[str, list[tuple[float, float, Any]]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            workers[name][0].send(task)
            runs[name].append(workers[name][0].recv())
            time.sleep(0.05)  # let the last worker's spinning threads go idle
    for parent, proc in workers.values():
        parent.send("stop")
        proc.join()
    return runs


def _rate(runs: list[tuple[float, float, Any]], by: int = 0) -> float:
    """Median samples per second (by=0: wall clock, 1: CPU time)."""
    return statistics.median(r[2] / r[by] for r in runs)


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _flops(case: dict[str, Any], samples_per_s: float, mean_steps: float) -> float:
    """Achieved GFLOP/s of the matrix products in training (forward + 2x backward)."""
    gates = 4 if case["cell"] == "lstm" else 3
    per_step = 2 * (FEATURES + UNITS) * gates * UNITS * (2 if case.get("bidirectional") else 1)
    return 3 * per_step * mean_steps * samples_per_s / 1e9


def _train_table(title: str, cases: list[tuple[str, dict[str, Any]]], args: Any) -> None:
    print(f"\n### {title}\n")
    print(
        f"\nours: {_package_steps()} batches a call (`training.steps_per_execution`), as the "
        "package's `fit` runs; ours 1/call: one batch a call, as before session 3.\n"
    )
    print("| case | Keras | ours | ours 1/call | PyTorch | PyTorch packed | ours / Keras "
          "| ours / PyTorch | ours 1/call / PyTorch | ours / PyTorch (CPU time) "
          "| ours GFLOP/s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    one = "ours, 1 batch a call"
    for label, case in cases:
        names = ["keras", "ours", one, "torch"]
        names += ["torch packed"] if case.get("masked") else []
        runs = _compare(names, case, "epoch", args.repeats)
        wall = {n: _rate(r) for n, r in runs.items()}
        cpu = {n: _rate(r, 1) for n, r in runs.items()}
        steps = float(_data(case)["lengths"].mean()) if case.get("masked") else case["lookback"]
        cell = [_fmt(wall.get(n)) for n in ("keras", "ours", one, "torch", "torch packed")]
        torch_ratio = f"{wall['ours'] / wall['torch']:.2f}x" if "torch" in wall else "-"
        one_ratio = f"{wall[one] / wall['torch']:.2f}x" if "torch" in wall else "-"
        torch_cpu = f"{cpu['ours'] / cpu['torch']:.2f}x" if "torch" in cpu else "-"
        print(
            f"| {label} | {' | '.join(cell)} | {wall['ours'] / wall['keras']:.2f}x | {torch_ratio} "
            f"| {one_ratio} | {torch_cpu} | {_flops(case, wall['ours'], steps):.1f} |",
            flush=True,
        )


def _infer_table(cases: list[tuple[str, dict[str, Any]]], args: Any) -> None:
    print("\n### Inference (issue 7, item 4)\n")
    print("| case | `predict` 10,000 windows, windows/s: Keras | ours | PyTorch "
          "| compiled call, batch 256: Keras | ours | one window, ms: Keras | ours | PyTorch "
          "| ours / PyTorch windows/s (goal >= 1) | ours / PyTorch one window (goal <= 1.2) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, case in cases:
        names = ["keras", "ours", "torch"]
        rate = {n: _rate(r) for n, r in _compare(names, case, "predict", args.repeats).items()}
        call = {n: _rate(r) for n, r in _compare(names[:2], case, "compiled", args.repeats).items()}
        lat = {
            n: 1e3 * statistics.median(r[2] for r in runs)
            for n, runs in _compare(names, case, "latency", args.repeats).items()
        }
        cells = [_fmt(rate.get(n)) for n in names] + [_fmt(call.get(n)) for n in names[:2]]
        cells += [_fmt(lat.get(n), 2) for n in names]
        if "torch" in rate:
            cells += [f"{rate['ours'] / rate['torch']:.2f}x", f"{lat['ours'] / lat['torch']:.2f}x"]
        else:
            cells += ["-", "-"]
        print(f"| {label} | {' | '.join(cells)} |", flush=True)


def _varlen_table(args: Any) -> None:
    case = {"cell": "lstm", "lookback": 336, "masked": True, "log_lengths": True}
    case["batches"] = 8 if args.quick else 16
    print("\n### Variable length: bucketing vs padding to the lookback (issue 7, item 5)\n")
    runs = _compare(["padded", "bucketed"], case, "epoch", args.repeats)
    wall = {n: _rate(r) for n, r in runs.items()}
    cpu = {n: _rate(r, 1) for n, r in runs.items()}
    checks = _compare(["bucketed"], case, "check", 1)["bucketed"][0][2]
    print("| our LSTM, lookback 336, lengths log-uniform 8..336 | samples/s | per CPU-s |")
    print("|---|---:|---:|")
    for name in ("padded", "bucketed"):
        print(f"| {name} | {wall[name]:,.0f} | {cpu[name]:,.0f} |")
    print(f"| bucketed / padded | {wall['bucketed'] / wall['padded']:.2f}x "
          f"| {cpu['bucketed'] / cpu['padded']:.2f}x |")  # fmt: skip
    print(f"\nSame results: predictions differ by at most {checks[0]:.1e}, summed gradients "
          f"by at most {checks[1]:.1e} of their largest entry.")  # fmt: skip


def _request_work(frame: Any) -> None:
    """A few milliseconds of the pandas work a served request does before the network."""
    for _ in range(6):
        part = frame.sort_values("t").copy()
        part["w"] = part["v"].rolling(3).mean()
        part.groupby(part["t"].dt.month)["v"].sum()


def _request_table(args: Any) -> None:
    """One window as a served request calls it: the plain trace against the XLA one."""
    import pandas as pd

    from forecast.config.model import ModelSpec
    from forecast.evaluation.scoring import _OneWindow
    from forecast.models import build_model

    # The serving benchmark's network: LSTM 64 units, lookback 64, one feature, horizon 10.
    model = build_model(ModelSpec(units=(64,)), n_features=1, n_targets=1, horizon=10, lookback=64)
    rng = np.random.default_rng(0)
    window = {"past": rng.standard_normal((1, 64, 1)).astype("float32")}
    calls = {
        name: _OneWindow(model, window, compile=compile)
        for name, compile in (("plain trace", False), ("XLA", True))
    }

    def forecast(out: Any) -> np.ndarray:
        return np.asarray(out["forecast"] if isinstance(out, dict) else out)

    outs = {name: forecast(call(window)) for name, call in calls.items()}
    frame = pd.DataFrame({"t": pd.date_range("2020", periods=64), "v": rng.standard_normal(64)})
    start = time.perf_counter()
    _request_work(frame)
    work_ms = 1e3 * (time.perf_counter() - start)
    n = 50 if args.quick else 200
    befores = {
        "tight loop": lambda: None,
        f"after {work_ms:.1f} ms of pandas work": lambda: _request_work(frame),
        "after a 5 ms sleep": lambda: time.sleep(0.005),
    }
    print("\n### One window as a request calls it (issue 16): ms, medians\n")
    print("| one window | plain trace | XLA | XLA / plain |")
    print("|---|---:|---:|---:|")
    for label, before in befores.items():
        times: dict[str, list[float]] = {name: [] for name in calls}
        for i in range(n):
            for name, call in calls.items() if i % 2 else reversed(calls.items()):
                before()
                start = time.perf_counter()
                forecast(call(window))
                times[name].append(time.perf_counter() - start)
        ms = {name: 1e3 * statistics.median(t[10:]) for name, t in times.items()}
        print(f"| {label} | {ms['plain trace']:.3f} | {ms['XLA']:.3f} "
              f"| {ms['XLA'] / ms['plain trace']:.2f}x |", flush=True)  # fmt: skip
    diff = float(np.abs(outs["XLA"] - outs["plain trace"]).max())
    print(f"\nSame forecasts: XLA and the plain trace differ by at most {diff:.1e}.")


def _cases(args: Any, section: str) -> list[tuple[str, dict[str, Any]]]:
    batches = 8 if args.quick else 24

    def case(cell: str, lookback: int, **kw: Any) -> dict[str, Any]:
        n = max(4, batches * 64 // lookback) if lookback > 64 else batches
        return {"cell": cell, "lookback": lookback, "batches": n, **kw}

    if section == "train":
        return [
            ("LSTM, lookback 64", case("lstm", 64)),
            ("GRU, lookback 64", case("gru", 64)),
            ("LSTM, lookback 64, dynamic", case("lstm", 64, masked=True)),
            ("GRU, lookback 64, dynamic", case("gru", 64, masked=True)),
            (
                "bidirectional LSTM, lookback 64, dynamic",
                case("lstm", 64, bidirectional=True, masked=True),
            ),
        ]
    if section == "lookback":
        return [
            (f"{c.upper()}, lookback {lb}", case(c, lb))
            for c in ("lstm", "gru")
            for lb in (24, 336)
        ]
    return [("LSTM, lookback 64", case("lstm", 64)), ("GRU, lookback 64", case("gru", 64))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer batches and repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed epochs per model")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"some of {SECTIONS}")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 7)
    sections = args.only.split(",")
    print(f"{os.cpu_count()} CPUs; load average before: {os.getloadavg()}")
    print(f"batch {BATCH}, {FEATURES} features, {UNITS} units; {args.repeats} timed epochs")
    if "peak" in sections:
        peak = _compare(["peak"], {}, "peak", args.repeats)["peak"]
        print(
            f"\nTensorFlow float32 matmul 2048x2048: {statistics.median(r[2] for r in peak):.0f} GFLOP/s"
        )
    if "train" in sections:
        title = "Training, samples/s: static and dynamic windows (issue 7, items 1-2)"
        _train_table(title, _cases(args, "train"), args)
    if "lookback" in sections:
        _train_table("Training, samples/s: lookback 24 and 336", _cases(args, "lookback"), args)
    if "infer" in sections:
        _infer_table(_cases(args, "infer"), args)
    if "varlen" in sections:
        _varlen_table(args)
    if "request" in sections:
        _request_table(args)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
