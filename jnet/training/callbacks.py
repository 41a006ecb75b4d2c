"""Early stopping, and the callback convention of `jnet.fit`.

A callback is any function ``cb(epoch, logs, history) -> bool`` called after each epoch
(``epoch`` counts from 0, ``logs`` holds that epoch's values, ``history`` all of them so far);
returning True stops training. `jnet.training.history.LivePlot` is one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """Stop when `monitor` has not improved for `patience` epochs; restore the best weights.

    An epoch improves on the best so far when ``value < best - min_delta`` (mode ``"min"``) or
    ``value > best + min_delta`` (mode ``"max"``). ``mode="auto"`` picks ``"max"`` for names
    containing ``acc`` and ``"min"`` otherwise. With ``restore_best_weights`` (the default; Keras
    defaults to False) `jnet.fit` returns the params and model state of the best epoch; the
    optimizer state stays the last one.

    Args:
        monitor: a logged name, e.g. ``"val_loss"``, ``"val_accuracy"``, ``"loss"``; None means
            ``"val_loss"`` when there is validation data, else ``"loss"``.
        patience: epochs without improvement before stopping (>= 1).
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"`` or ``"auto"``.
        restore_best_weights: return the best epoch's params / state instead of the last.
    """

    monitor: str | None = None
    patience: int = 5
    min_delta: float = 0.0
    mode: str = "auto"
    restore_best_weights: bool = True

    def __post_init__(self):
        if self.mode not in ("min", "max", "auto"):
            raise ValueError(
                f"EarlyStopping: mode must be 'min', 'max' or 'auto', got {self.mode!r}."
            )
        if self.patience < 1:
            raise ValueError(f"EarlyStopping: patience must be >= 1, got {self.patience}.")

    def resolved(self, has_validation: bool) -> EarlyStopping:
        """This config with `monitor` and `mode` made explicit."""
        monitor = self.monitor or ("val_loss" if has_validation else "loss")
        mode = self.mode
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        return dataclasses.replace(self, monitor=monitor, mode=mode)

    def best_epoch(self, values: Sequence[float]) -> int:
        """Index of the best epoch in `values` (first value that no later one improved on).

        A pure function of the history, so a resumed run finds the same best epoch.
        """
        sign = 1.0 if self.mode == "min" else -1.0
        best, best_i = math.inf, -1
        for i, v in enumerate(values):
            if not math.isnan(v) and sign * v < best - self.min_delta:
                best, best_i = sign * v, i
        return best_i

    def should_stop(self, values: Sequence[float]) -> bool:
        """True once the last `patience` epochs brought no improvement."""
        return len(values) - 1 - self.best_epoch(values) >= self.patience


def as_early_stopping(value: EarlyStopping | int | None) -> EarlyStopping | None:
    """``early_stopping=`` of `jnet.fit`: an `EarlyStopping`, an int patience, or None."""
    if value is None or isinstance(value, EarlyStopping):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return EarlyStopping(patience=value)
    raise TypeError(
        f"jnet.fit: early_stopping must be an EarlyStopping(...), an int patience or None, got "
        f"{type(value).__name__}."
    )
