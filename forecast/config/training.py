"""How a model is fitted: epochs, batches, early stopping, learning-rate schedule, seeds, strategy."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from forecast.config.checks import check_bool, check_choice, check_keys, check_number
from pipelines.errors import ConfigError

# `forecast.training.distribute.make_strategy` builds each one; named here so a config
# is checked without importing TensorFlow.
STRATEGIES = ("none", "mirrored", "multi_worker")
# `training.refit`: which model a train job registers (`forecast.jobs.refit`).
REFITS = ("none", "full")


def check_strategy(name: Any) -> None:
    """Raise ConfigError naming `training.strategy` and its choices when `name` is not one."""
    check_choice("training.strategy", name, STRATEGIES)


@dataclass(frozen=True)
class TrainConfig:
    """How to fit a compiled model.

    Args:
        epochs: upper bound on epochs; early stopping usually ends sooner.
        batch_size: windows per batch (used by the caller that builds the datasets).
        patience: epochs without validation improvement before stopping; the best
            weights are restored.
        reduce_lr_patience: epochs without improvement before the learning rate is cut.
        reduce_lr_factor: factor applied to the learning rate on a plateau.
        min_lr: floor for the learning rate.
        seed: seeds Python, NumPy, TensorFlow and the shuffle order.
        deterministic: turn on TensorFlow's deterministic kernels so the same config
            gives the same metrics on CPU.
        verbose: "auto" shows a progress bar on a terminal and stays quiet otherwise;
            0, 1 or 2 as in `keras.Model.fit`.
        strategy: where training runs (`forecast.training.distribute`): ``none`` (one device),
            ``mirrored`` (every visible GPU, else every logical CPU) or ``multi_worker``
            (the machines of the TF_CONFIG environment variable; one with Keras 3.15).
            `batch_size` is then the global batch, split evenly across the replicas.
        refit: ``none`` registers the evaluated model (trained on the training part);
            ``full`` then refits the same model on all rows (training, validation and test)
            for the evaluated run's best epoch count, replaying its learning rates, and
            registers that refit, whose run is a child of the evaluated one. The default is
            ``none``: what is registered is then exactly what was scored, and a job trains
            once; production jobs that want the latest history in the model set ``full``
            (or pass ``forecast train --refit-full``).
        steps_per_execution: batches each call of Keras' compiled train (and validation)
            function runs in a loop inside the graph, instead of one call from Python per
            batch: the same steps in the same order, so the same weights, with less of the
            fixed cost a batch pays (measured in benchmarks/RESULTS.md, "Session 3").
            Callbacks see every N-th batch's logs; epoch-end callbacks are unchanged. Under
            a `strategy` other than ``none`` fit runs one batch a call (Keras 3.15's
            multi-batch loop fails under MirroredStrategy).
    """

    epochs: int = 20
    batch_size: int = 256
    patience: int = 5
    reduce_lr_patience: int = 2
    reduce_lr_factor: float = 0.5
    min_lr: float = 1e-5
    seed: int = 0
    deterministic: bool = True
    verbose: str | int = "auto"
    strategy: str = "none"
    refit: str = "none"
    steps_per_execution: int = 16

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "steps_per_execution"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"`{name}` must be an integer >= 1. Received: {name}={value!r}")
        for name in ("patience", "reduce_lr_patience", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"`{name}` must be an integer >= 0. Received: {name}={value!r}")
        for name in ("reduce_lr_factor", "min_lr"):
            check_number(f"training.{name}", getattr(self, name), low=0.0)
        if not 0.0 < self.reduce_lr_factor < 1.0:
            raise ConfigError(
                "`reduce_lr_factor` must be in (0, 1). "
                f"Received: reduce_lr_factor={self.reduce_lr_factor!r}"
            )
        check_bool("training.deterministic", self.deterministic)
        if self.verbose not in ("auto", 0, 1, 2):
            raise ConfigError(
                f"`verbose` must be one of 'auto', 0, 1, 2. Received: verbose={self.verbose!r}"
            )
        check_strategy(self.strategy)
        check_choice("training.refit", self.refit, REFITS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        check_keys(d, cls, "training")
        return cls(**d)
