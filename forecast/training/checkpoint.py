"""Per-epoch checkpoints that let a killed fit continue where it stopped, to the same weights.

Keras' `BackupAndRestore` keeps the weights and the epoch, but not the state of the other
callbacks: after a resume, early stopping would wait `patience` epochs afresh and forget its
best weights, and the learning-rate schedule would forget its plateau. `EpochCheckpoint`
saves all of it after each epoch, in a new folder that replaces the previous one only once
it is complete, so a kill at any moment leaves the last finished epoch readable:

```
<dir>/latest                  name of the newest complete folder ("epoch-0003")
<dir>/epoch-0003/weights.weights.h5   model weights and optimizer state (learning rate too)
<dir>/epoch-0003/best.npz     early stopping's best weights so far
<dir>/epoch-0003/state.json   epoch, history, early-stopping and plateau counters
```
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from pipelines.errors import ConfigError

log = logging.getLogger(__name__)

_FORMAT = "rnn-forecast/checkpoint-v1"
_LATEST = "latest"


class EpochCheckpoint(keras.callbacks.Callback):
    """Save weights, optimizer and schedule state after every epoch; restore them on resume.

    Args:
        directory: the checkpoint folder (created when missing).
        early_stopping: the fit's `EarlyStopping`, whose counters and best weights are kept.
        plateau: the fit's `ReduceLROnPlateau`, whose counters are kept.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        early_stopping: keras.callbacks.EarlyStopping,
        plateau: keras.callbacks.ReduceLROnPlateau,
    ) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.early_stopping = early_stopping
        self.plateau = plateau
        self.history: dict[str, list[float]] = {}
        self._restored: dict[str, Any] | None = None
        self._best: list[np.ndarray] | None = None

    # ------------------------------------------------------------------ resume
    def restore_weights(self, model: keras.Model, *, epochs: int) -> int:
        """Load the last finished epoch into `model`; return the epoch to start from.

        Returns 0 (and changes nothing) when there is no checkpoint; `epochs` when the
        checkpointed fit had already stopped early or finished, so `fit` runs no epoch.

        Raises:
            ConfigError: the checkpoint does not fit the model (another architecture).
        """
        folder = latest_folder(self.directory)
        if folder is None:
            return 0
        state = json.loads((folder / "state.json").read_text())
        if state.get("format") != _FORMAT:
            raise ConfigError(
                f"Checkpoint {folder} has format {state.get('format')!r}; expected {_FORMAT!r}."
            )
        shapes = [list(w.shape) for w in model.weights]
        if state["shapes"] != shapes:
            # Keras' load_weights only warns and skips variables that do not match.
            raise ConfigError(
                f"Checkpoint {folder} does not fit this model: it holds weights of shapes "
                f"{state['shapes']}, the model has {shapes}; it was saved by a model with "
                f"another architecture."
            )
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(folder / "weights.weights.h5")
        best = folder / "best.npz"
        if best.is_file():
            with np.load(best) as arrays:
                self._best = [arrays[f"w{i}"] for i in range(len(arrays.files))]
        self._restored = state
        self.history = {k: list(v) for k, v in state["history"].items()}
        epoch = int(state["epoch"])
        return epochs if state.get("stopped") else min(epoch, epochs)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        # The schedules reset themselves in their own on_train_begin, which ran before this.
        state = self._restored
        if state is None:
            return
        early, plateau = state["early_stopping"], state["plateau"]
        es = self.early_stopping
        es.wait, es.best_epoch, es.stopped_epoch = early["wait"], early["best_epoch"], 0
        es.best = _number(early["best"])
        es.best_weights = self._best
        self.plateau.wait = plateau["wait"]
        self.plateau.cooldown_counter = plateau["cooldown_counter"]
        self.plateau.best = _number(plateau["best"])

    # ------------------------------------------------------------------ save
    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        es, plateau = self.early_stopping, self.plateau
        state = {
            "format": _FORMAT,
            "epoch": epoch + 1,
            "stopped": bool(self.model.stop_training),
            "history": self.history,
            "shapes": [list(w.shape) for w in self.model.weights],
            "early_stopping": {
                "wait": es.wait,
                "best_epoch": es.best_epoch,
                "best": _plain(es.best),
            },
            "plateau": {
                "wait": plateau.wait,
                "cooldown_counter": plateau.cooldown_counter,
                "best": _plain(plateau.best),
            },
        }
        self._write(epoch + 1, state, es.best_weights)

    def _write(self, epoch: int, state: dict[str, Any], best: list | None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch:04d}"
        tmp = self.directory / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        self.model.save_weights(tmp / "weights.weights.h5")
        if best is not None:
            np.savez(tmp / "best.npz", **{f"w{i}": np.asarray(w) for i, w in enumerate(best)})
        (tmp / "state.json").write_text(json.dumps(state))
        final = self.directory / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        pointer = self.directory / f".{_LATEST}.tmp"
        pointer.write_text(name)
        os.replace(pointer, self.directory / _LATEST)  # the switch to the new epoch is atomic
        for old in self.directory.glob("epoch-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)


def latest_folder(directory: str | os.PathLike[str]) -> Path | None:
    """The newest complete epoch folder of a checkpoint directory; None when there is none."""
    pointer = Path(directory) / _LATEST
    if not pointer.is_file():
        return None
    folder = Path(directory) / pointer.read_text().strip()
    return folder if (folder / "state.json").is_file() else None


def checkpoint_epoch(directory: str | os.PathLike[str]) -> int:
    """The number of finished epochs a checkpoint directory holds (0 when none)."""
    folder = latest_folder(directory)
    return int(json.loads((folder / "state.json").read_text())["epoch"]) if folder else 0


def remove_checkpoint(directory: str | os.PathLike[str]) -> None:
    """Delete a checkpoint directory once the model it was training is saved."""
    shutil.rmtree(directory, ignore_errors=True)


def skip_epochs(train_data: tf.data.Dataset, epochs: int) -> None:
    """Advance a reshuffling dataset to where it was after `epochs` epochs of `model.fit`.

    A seeded dataset (`to_dataset`, `Dataset.shuffle`) draws a new order each time an
    iterator is opened on it; in a new process the draws start again from the first, so a
    resumed fit would see epoch 0's order again. Keras 3.15's `EpochIterator` opens one
    iterator per epoch when the dataset's length is unknown, and two when it is known (one
    at the start of the epoch and one, unused, after its last batch; see
    keras/src/trainers/epoch_iterator.py); this opens as many. The resume test compares
    the weights with an uninterrupted fit, so a change in Keras shows there.
    """
    known = int(train_data.cardinality()) >= 0
    for _ in range(epochs * (2 if known else 1)):
        iter(train_data)


def _plain(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)
