"""Early stopping, and the callback convention of `jnet.fit`.

A callback is any function ``cb(epoch, logs, history) -> bool`` called after each epoch
(``epoch`` counts from 0, ``logs`` holds that epoch's values, ``history`` all of them so far);
returning True stops training. `jnet.training.history.LivePlot` is one. `fit` checks each
callback's signature before training (`check_callbacks`), so a Keras-style
``on_epoch_end(epoch, logs)`` is reported at once, not after the first epoch.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

from jnet.errors import ArgumentError, ArgumentTypeError


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
        where = "EarlyStopping"
        if self.mode not in ("min", "max", "auto"):
            raise ArgumentError(f"mode must be 'min', 'max' or 'auto', got {self.mode!r}.",
                                where=where)
        if isinstance(self.patience, bool) or not isinstance(self.patience, int):
            raise ArgumentTypeError(
                f"patience must be an int >= 1 (epochs without improvement), got "
                f"{self.patience!r} ({type(self.patience).__name__}).", where=where)
        if self.patience < 1:
            raise ArgumentError(f"patience must be >= 1, got {self.patience}.", where=where)
        if isinstance(self.min_delta, bool) or not isinstance(self.min_delta, (int, float)):
            raise ArgumentTypeError(f"min_delta must be a number, got {self.min_delta!r}.",
                                    where=where)
        if self.monitor is not None and not isinstance(self.monitor, str):
            raise ArgumentTypeError(f"monitor must be a logged name such as 'val_loss', got "
                                    f"{self.monitor!r}.", where=where)

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
    """``early_stopping=`` of `jnet.fit`: an `EarlyStopping`, an int patience, or None.

    Raises:
        ArgumentTypeError: anything else.
    """
    if value is None or isinstance(value, EarlyStopping):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return EarlyStopping(patience=value)
    raise ArgumentTypeError(
        f"early_stopping must be an EarlyStopping(...), an int patience or None, got "
        f"{type(value).__name__}."
    )


def check_callbacks(callbacks: Sequence[Callable[..., Any]]) -> list[Callable[..., Any]]:
    """The callbacks as a list, each checked to accept ``(epoch, logs, history)``.

    Raises:
        ArgumentTypeError: a callback that is not callable or cannot take three positional
            arguments (e.g. Keras's ``on_epoch_end(epoch, logs)``).
    """
    if callable(callbacks):
        callbacks = [callbacks]
    checked = []
    for cb in callbacks:
        if not callable(cb):
            raise ArgumentTypeError(f"callbacks must be functions cb(epoch, logs, history) -> "
                                    f"bool, got {type(cb).__name__}.")
        try:
            inspect.signature(cb).bind(0, {}, None)
        except TypeError:
            raise ArgumentTypeError(
                f"callback {getattr(cb, '__name__', cb)!r} has the signature "
                f"{inspect.signature(cb)}, but fit calls cb(epoch, logs, history) -> bool (True "
                "stops training). Wrap a Keras-style callback: "
                "`lambda epoch, logs, history: on_epoch_end(epoch, logs)`."
            ) from None
        except ValueError:  # builtins without a signature: trust them
            pass
        checked.append(cb)
    return checked
