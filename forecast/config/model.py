"""Validated, serializable model and training specs: frozen dataclass <-> dict <-> YAML section."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import yaml

from forecast.config.checks import check_bool, check_choice, check_number
from pipelines.errors import ConfigError, did_you_mean

CELLS = ("lstm", "gru", "rnn", "peephole_lstm")
MODES = ("static", "dynamic")
HEADS = ("direct", "seq2seq")
MERGE_MODES = ("concat", "sum", "mul", "ave")
FUTURE_MODES = ("flatten", "per_step")
TARGET_SCALINGS = ("none", "window_rms", "ewma_rms")
TARGET_CENTRES = ("none", "last", "mean")
TARGET_TRANSFORMS = ("none", "log", "boxcox")
RESIDUALS = ("none", "seasonal_naive", "exp_smoothing")
DESEASONALIZE = ("none", "mstl")  # `pipelines.deseason.DESEASONALIZE`
DEFAULT_HALFLIFE = 10  # steps; `target_scale_halflife` when ewma_rms is chosen without one
KERNEL_INITIALIZERS = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_normal",
    "orthogonal",
)
RECURRENT_INITIALIZERS = ("orthogonal", "glorot_uniform", "identity")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("adam", "adamw", "nadam", "rmsprop", "sgd")
SCHEDULES = ("constant", "cosine", "exponential")
LOSSES = ("mse", "mae", "huber")
METRICS = ("mae", "mse", "rmse")
# Gate blocks per recurrent cell: weights per unit are gates * (inputs + units + 1).
_GATES = {"lstm": 4, "peephole_lstm": 4, "gru": 3, "rnn": 1}
# The most recurrent weights a spec may ask for: 1e8 float32 weights are 0.4 GB, 1.6 GB with
# their gradients and Adam's two moments; far past what this package's models need (a
# 2x1024 LSTM has 1.3e7), and `units=[100000000]` fails here instead of as a TensorFlow OOM.
MAX_WEIGHTS = 100_000_000


class _Spec:
    """dict / YAML round trip shared by the spec dataclasses (tuples become lists)."""

    section: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of builtins, logged to MLflow as is and accepted by `from_dict`."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """Build from a dict; unknown keys fail with a did-you-mean."""
        if not isinstance(d, dict):
            raise ConfigError(
                f"A {cls.__name__} is built from a mapping of field names to values. "
                f"Received: {type(d).__name__}"
            )
        allowed = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            hints = "".join(did_you_mean(k, allowed) for k in unknown)
            raise ConfigError(
                f"Unknown {cls.__name__} keys {unknown}; allowed: {sorted(allowed)}.{hints}"
            )
        return cls(**d)

    def to_yaml(self) -> str:
        """YAML text holding this spec under its section name (``model:`` or ``optimizer:``)."""
        return yaml.safe_dump({self.section: self.to_dict()}, sort_keys=False)


@dataclass(frozen=True)
class ModelSpec(_Spec):
    """Everything that decides a model's architecture; sizes come from the data at build time.

    Args:
        cell: recurrent cell, one of ``lstm``, ``gru``, ``rnn`` (SimpleRNN), ``peephole_lstm``.
        units: units per stacked recurrent layer, first layer first, e.g. ``(64, 32)``.
        mode: ``static`` (fixed lookback in the input shape, no mask) or ``dynamic``
            (time dimension None and an explicit ``mask`` input).
        unroll: unroll the recurrence (static mode only; leaves the cuDNN path).
        bidirectional: run every encoder layer both ways.
        merge_mode: how the two directions' outputs merge: concat, sum, mul or ave.
        dropout: input dropout of every recurrent layer, in [0, 1).
        recurrent_dropout: dropout on the recurrent state, in [0, 1) (leaves the cuDNN path).
        layer_norm: LayerNormalization after each recurrent layer (outside the cells, so
            the cuDNN path is kept).
        head: ``direct`` (all steps at once from the final state) or ``seq2seq``
            (a decoder RNN started from the encoder's final states).
        future_mode: how the direct head reads known-future covariates: ``flatten`` (all
            steps concatenated to the final state) or ``per_step`` (one small MLP per step).
        quantiles: increasing levels in (0, 1) that include 0.5; empty for a point model.
        kernel_initializer: initializer of input kernels and dense heads.
        recurrent_initializer: orthogonal (default), glorot_uniform, or identity (``rnn``
            only: the IRNN initialization).
        l1: L1 weight penalty on input and recurrent kernels and dense kernels.
        l2: L2 weight penalty on the same weights.
        precision: ``float32`` or a mixed policy (``mixed_float16`` / ``mixed_bfloat16``);
            outputs stay float32.
        target_scaling: ``none``, or ``window_rms``: divide each window's targets by their
            root mean square over its valid steps and multiply the forecasts and quantiles
            by it, so the model is scale-equivariant in the targets
            (`forecast.models.scaling`); or ``ewma_rms``: the same with an exponentially
            weighted RMS, the latest steps weighted most.
        target_scale_halflife: half-life in valid steps of the ``ewma_rms`` weights, an
            integer >= 1 (10 when left unset); must be unset (None) with any other scaling.
        target_centre: ``none``, ``last`` or ``mean``: subtract each window's last valid
            target (or its mean over the valid steps) before the network and add it back to
            the forecast and every quantile (RevIN-style; with a `target_scaling` the scale
            is then the RMS of the centred window).
        target_transform: ``none``, ``log`` or ``boxcox``: a monotone transform of positive
            targets before the scaler, fitted on training rows only (Box-Cox: one lambda
            per series and target, Guerrero's method), inverted on forecasts and quantiles
            (`pipelines.transform`).
        residual: ``none``, ``seasonal_naive`` or ``exp_smoothing``: the forecast is a
            classical base plus the network's correction (`forecast.models.residual`):
            the last season's values, or the forecast of an additive damped-trend
            Holt-Winters filter run over each window, whose smoothing parameters are
            trained with the network (the ES-RNN hybrid).
        residual_season: the season of the residual base in steps; None takes the data's
            season (`evaluation.season` or the frequency's) when the model is trained.
        head_layers: widths of the Dense (relu) layers of the direct head between the
            final state (with the flattened future covariates) and the output layer.
        ensemble: K, models trained with seeds ``training.seed + k``; the forecast and each
            quantile are the median over the K members.
        deseasonalize: ``none`` or ``mstl``: statsforecast's MSTL fitted on each training
            series (after `target_transform`, before the scaler) with the data's seasons;
            the network forecasts the remainder and the last cycle of each seasonal
            component is added back over the horizon (`pipelines.deseason`). Regular
            calendars only.
    """

    section: ClassVar[str] = "model"

    cell: str = "lstm"
    units: tuple[int, ...] = (32,)
    mode: str = "static"
    unroll: bool = False
    bidirectional: bool = False
    merge_mode: str = "concat"
    dropout: float = 0.0
    recurrent_dropout: float = 0.0
    layer_norm: bool = False
    head: str = "direct"
    future_mode: str = "flatten"
    quantiles: tuple[float, ...] = ()
    kernel_initializer: str = "glorot_uniform"
    recurrent_initializer: str = "orthogonal"
    l1: float = 0.0
    l2: float = 0.0
    precision: str = "float32"
    target_scaling: str = "none"
    target_scale_halflife: int | None = None
    target_centre: str = "none"
    target_transform: str = "none"
    residual: str = "none"
    residual_season: int | None = None
    head_layers: tuple[int, ...] = ()
    ensemble: int = 1
    deseasonalize: str = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "units", _units_tuple(self.units))
        object.__setattr__(self, "head_layers", _widths_tuple(self.head_layers))
        object.__setattr__(self, "quantiles", _quantile_tuple(self.quantiles))
        for name, choices in (
            ("cell", CELLS),
            ("mode", MODES),
            ("merge_mode", MERGE_MODES),
            ("head", HEADS),
            ("future_mode", FUTURE_MODES),
            ("kernel_initializer", KERNEL_INITIALIZERS),
            ("recurrent_initializer", RECURRENT_INITIALIZERS),
            ("precision", PRECISIONS),
            ("target_scaling", TARGET_SCALINGS),
            ("target_centre", TARGET_CENTRES),
            ("target_transform", TARGET_TRANSFORMS),
            ("residual", RESIDUALS),
            ("deseasonalize", DESEASONALIZE),
        ):
            check_choice(name, getattr(self, name), choices)
        for name in ("unroll", "bidirectional", "layer_norm"):
            check_bool(name, getattr(self, name))
        for name in ("dropout", "recurrent_dropout"):
            check_number(name, getattr(self, name), low=0.0, high=0.99)
        for name in ("l1", "l2"):
            check_number(name, getattr(self, name), low=0.0)
        _check_halflife(self)
        _check_residual(self)
        if not isinstance(self.ensemble, int) or isinstance(self.ensemble, bool):
            raise ConfigError(f"`ensemble` must be an integer >= 1. Received: {self.ensemble!r}")
        if not 1 <= self.ensemble <= MAX_ENSEMBLE:
            raise ConfigError(
                f"`ensemble` must be between 1 and {MAX_ENSEMBLE} (models trained one after "
                f"the other). Received: ensemble={self.ensemble}"
            )
        _check_size(self)
        if self.unroll and self.mode != "static":
            raise ConfigError(
                "`unroll=True` needs a fixed time dimension, i.e. mode='static'. "
                f"Received: unroll=True, mode={self.mode!r}"
            )
        if self.recurrent_initializer == "identity" and self.cell != "rnn":
            raise ConfigError(
                "`recurrent_initializer='identity'` is the IRNN initialization for cell='rnn' "
                f"only. Received: recurrent_initializer='identity', cell={self.cell!r}"
            )


def recurrent_weights(spec: ModelSpec) -> int:
    """A lower bound on the weights of `spec`'s recurrent encoder, known before any data.

    Each layer has ``gates * (inputs + units + 1) * units`` weights per direction (kernel,
    recurrent kernel, bias); the first layer is counted with one input feature and the heads
    are left out, since both grow with the data.
    """
    gates = _GATES[spec.cell]
    directions = 2 if spec.bidirectional else 1
    widen = directions if spec.merge_mode == "concat" else 1
    total, inputs = 0, 1
    for units in spec.units:
        total += directions * gates * (inputs + units + 1) * units
        inputs = units * widen
    return total


def _check_size(spec: ModelSpec) -> None:
    """Refuse a model far too large to build, before TensorFlow tries to allocate it."""
    n = recurrent_weights(spec)
    if n > MAX_WEIGHTS:
        gb = n * 4 * 4 / 1e9  # float32 weights, gradients and two Adam moments
        raise ConfigError(
            f"`model.units` asks for at least {n:.3g} recurrent weights (~{gb:.3g} GB to train), more "
            f"than the limit of {MAX_WEIGHTS:.0e} (MAX_WEIGHTS in forecast/config/model.py). "
            f"Received: units={list(spec.units)}, cell={spec.cell!r}, "
            f"bidirectional={spec.bidirectional}"
        )


def _check_halflife(spec: ModelSpec) -> None:
    """Fill in the default half-life of ewma_rms; refuse one set with any other scaling."""
    value = spec.target_scale_halflife
    if spec.target_scaling != "ewma_rms":
        if value is not None:
            raise ConfigError(
                "`target_scale_halflife` applies only with target_scaling='ewma_rms'; leave "
                f"it unset otherwise. Received: target_scale_halflife={value!r}, "
                f"target_scaling={spec.target_scaling!r}"
            )
        return
    if value is None:
        object.__setattr__(spec, "target_scale_halflife", DEFAULT_HALFLIFE)
    elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(
            "`target_scale_halflife` must be an integer >= 1 (steps). "
            f"Received: target_scale_halflife={value!r}"
        )


def _check_residual(spec: ModelSpec) -> None:
    """The residual head needs the direct head; its season is a positive integer or unset."""
    season = spec.residual_season
    if season is not None and (not isinstance(season, int) or isinstance(season, bool)):
        raise ConfigError(
            f"`residual_season` must be an integer >= 1 or null. Received: {season!r}"
        )
    if season is not None and season < 1:
        raise ConfigError(f"`residual_season` must be >= 1. Received: residual_season={season}")
    if spec.residual == "none" and season is not None:
        raise ConfigError(
            "`residual_season` applies only with a residual base (seasonal_naive or "
            "exp_smoothing); leave it unset otherwise. "
            f"Received: residual_season={season}, residual='none'"
        )
    if spec.residual != "none" and spec.head != "direct":
        raise ConfigError(
            f"`residual: {spec.residual}` corrects the direct head's forecasts; use "
            f"head='direct'. Received: residual={spec.residual!r}, head={spec.head!r}"
        )
    if spec.head_layers and spec.head != "direct":
        raise ConfigError(
            "`head_layers` are Dense layers of the direct head; use head='direct' or leave "
            f"them empty. Received: head_layers={list(spec.head_layers)}, head={spec.head!r}"
        )


MAX_ENSEMBLE = 20


def _widths_tuple(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    widths = (value,) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        widths = tuple(widths)
    except TypeError:
        widths = None
    if widths is None or not all(
        isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths
    ):
        raise ConfigError(
            "`head_layers` must be a list of positive integers (Dense widths, may be empty). "
            f"Received: head_layers={value!r}"
        )
    return widths


def _units_tuple(value: Any) -> tuple[int, ...]:
    units = (value,) if isinstance(value, int) and not isinstance(value, bool) else value
    try:
        units = tuple(units)
    except TypeError:
        units = None
    if not units or not all(isinstance(u, int) and not isinstance(u, bool) for u in units):
        raise ConfigError(
            "`units` must be a positive integer or a non-empty list of positive integers "
            f"(one per stacked layer). Received: units={value!r}"
        )
    if min(units) < 1:
        raise ConfigError(f"`units` must all be >= 1. Received: units={value!r}")
    return units


def _quantile_tuple(value: Any) -> tuple[float, ...]:
    try:
        qs = tuple(float(q) for q in (value or ()))
    except (TypeError, ValueError):
        raise ConfigError(
            f"`quantiles` must be a list of numbers in (0, 1). Received: quantiles={value!r}"
        ) from None
    if not qs:
        return ()
    ordered = all(a < b for a, b in zip(qs, qs[1:], strict=False))
    if not ordered or qs[0] <= 0.0 or qs[-1] >= 1.0 or 0.5 not in qs:
        raise ConfigError(
            "`quantiles` must be strictly increasing levels in (0, 1) that include 0.5 "
            f"(the median is the point forecast). Received: quantiles={list(value)!r}"
        )
    return qs


@dataclass(frozen=True)
class OptimizerSpec(_Spec):
    """Compile-time training knobs, applied by `compile_model`.

    Args:
        optimizer: adam, adamw, nadam, rmsprop or sgd.
        learning_rate: initial learning rate, > 0.
        schedule: ``constant``, ``cosine`` (to 0 over `decay_steps`) or ``exponential``
            (times `decay_rate` every `decay_steps`).
        decay_steps: optimizer steps of the schedule.
        decay_rate: factor of the exponential schedule, in (0, 1].
        clipnorm: clip each gradient to this norm; None for no clipping.
        clipvalue: clip each gradient element to +-this value; None for no clipping.
        weight_decay: decoupled weight decay (adamw, sgd, ...); None for none.
        loss: point-forecast loss: mse, mae or huber. Quantile models use the pinball loss.
        metrics: metrics on the point forecast: mae, mse, rmse.
    """

    section: ClassVar[str] = "optimizer"

    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "constant"
    decay_steps: int = 1000
    decay_rate: float = 0.5
    clipnorm: float | None = None
    clipvalue: float | None = None
    weight_decay: float | None = None
    loss: str = "mse"
    metrics: tuple[str, ...] = ("mae",)

    def __post_init__(self) -> None:
        metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
        object.__setattr__(self, "metrics", metrics)
        for name, choices in (
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
            ("loss", LOSSES),
        ):
            check_choice(name, getattr(self, name), choices)
        for metric in metrics:
            check_choice("metrics", metric, METRICS)
        check_number("learning_rate", self.learning_rate, low=1e-12)
        check_number("decay_rate", self.decay_rate, low=1e-12, high=1.0)
        if not isinstance(self.decay_steps, int) or self.decay_steps < 1:
            raise ConfigError(
                f"`decay_steps` must be an integer >= 1. Received: decay_steps={self.decay_steps!r}"
            )
        for name in ("clipnorm", "clipvalue", "weight_decay"):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), low=0.0)
        if self.clipnorm is not None and self.clipvalue is not None:
            raise ConfigError(
                "Set at most one of `clipnorm` and `clipvalue`. "
                f"Received: clipnorm={self.clipnorm}, clipvalue={self.clipvalue}"
            )
