"""`EarlyStopping`: a `Callback` that stops on a plateau and restores the best weights.

With a population (``fit(..., population=...)``) each member has its own best epoch and best
weights; training stops when EVERY member would have stopped (one compiled program cannot
stop members one by one).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import ArgumentError, ArgumentTypeError, entry_point
from jnet.training.callbacks import Best, Callback, RunState
from jnet.training.loop import fresh


@dataclasses.dataclass(frozen=True)
class EarlyStopping(Callback):
    """Stop when `monitor` has not improved for `patience` epochs; restore the best weights.

    An epoch improves on the best so far when ``value < best - min_delta`` (mode ``"min"``) or
    ``value > best + min_delta`` (mode ``"max"``). ``mode="auto"`` picks ``"max"`` for names
    containing ``acc`` and ``"min"`` otherwise. With ``restore_best_weights`` (the default; Keras
    defaults to False) `jnet.fit` returns the params and model state of the best epoch; the
    optimizer state stays the last one. Pass it in ``callbacks=[...]`` or as
    ``early_stopping=``; it keeps nothing between runs (the run state holds the best weights),
    so one object can serve several `fit` calls.

    Args:
        monitor: a logged name, e.g. ``"val_loss"``, ``"val_accuracy"``, ``"loss"``; None means
            ``"val_loss"`` when there is validation data, else ``"loss"``.
        patience: epochs without improvement before stopping (>= 1).
        min_delta: the smallest change that counts as an improvement.
        mode: ``"min"``, ``"max"`` or ``"auto"``.
        restore_best_weights: return the best epoch's params / state instead of the last.

    Raises:
        ArgumentError / ArgumentTypeError: a bad value, named; at the start of `fit`, a
            `monitor` the run does not log.
    """

    monitor: str | None = None
    patience: int = 5
    min_delta: float = 0.0
    mode: str = "auto"
    restore_best_weights: bool = True

    def __post_init__(self) -> None:
        with entry_point("EarlyStopping"):
            if self.mode not in ("min", "max", "auto"):
                raise ArgumentError(f"mode must be 'min', 'max' or 'auto', got {self.mode!r}.")
            if isinstance(self.patience, bool) or not isinstance(self.patience, int):
                raise ArgumentTypeError(
                    f"patience must be an int >= 1 (epochs without improvement), got "
                    f"{self.patience!r} ({type(self.patience).__name__}).")
            if self.patience < 1:
                raise ArgumentError(f"patience must be >= 1, got {self.patience}.")
            if isinstance(self.min_delta, bool) or not isinstance(self.min_delta, (int, float)):
                raise ArgumentTypeError(f"min_delta must be a number, got {self.min_delta!r}.")
            if self.monitor is not None and not isinstance(self.monitor, str):
                raise ArgumentTypeError(f"monitor must be a logged name such as 'val_loss', "
                                        f"got {self.monitor!r}.")

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

    def _for(self, run: RunState) -> EarlyStopping:
        return self.resolved("val_loss" in run.names)

    def on_train_begin(self, run: RunState) -> None:
        """Check that the monitored name is logged; warn when a resumed run has no best
        weights to restore."""
        monitor = self._for(run).monitor
        if monitor not in run.names:
            raise ArgumentError(
                f"early stopping monitors {monitor!r}, which is not logged; logged values: "
                f"{sorted(run.names)}. Pass validation_data or EarlyStopping(monitor=...) with "
                "one of those.")
        if self.restore_best_weights and run.epoch > 0 and run.best is None:
            warnings.warn(
                f"jnet.fit: the run resumed at epoch {run.epoch} holds no best weights (its "
                "checkpoint was written without early stopping); restore_best_weights can "
                f"only return the weights of an epoch after {run.epoch}.", stacklevel=2)

    def on_epoch_end(self, run: RunState) -> bool:
        """Track the best epoch (per member) and stop when every member would."""
        rule = self._for(run)
        table = np.asarray(run.history[str(rule.monitor)], np.float64)
        columns = table[:, None] if table.ndim == 1 else table
        if self.restore_best_weights:
            now = np.array([rule.best_epoch(list(c)) == run.epoch - 1 for c in columns.T])
            run.best = _keep_best(run, now)
        return all(rule.should_stop(list(c)) for c in columns.T)

    def on_train_end(self, run: RunState) -> None:
        """Give the run the best epoch's params and state back."""
        if not self.restore_best_weights or run.best is None:
            return
        run.params, run.state = run.best.params, run.best.state
        if run.size is None:
            monitor = str(self._for(run).monitor)
            epoch = int(run.best.epoch)
            run.write(f"early stopping: restored the weights of epoch {epoch} "
                      f"({monitor}={run.history[monitor][epoch - 1]:.4g})")


def _keep_best(run: RunState, now: np.ndarray) -> Best | None:
    """The best weights after this epoch: this epoch's where it is the best (`now`, one flag
    per member), the kept ones elsewhere. Copies: the next epoch donates the run's buffers."""
    if run.size is None:
        if now[0]:
            return Best(fresh(run.params), fresh(run.state), run.epoch)
        return run.best
    if run.best is None:
        return Best(fresh(run.params), fresh(run.state),
                    np.full((run.size,), run.epoch, np.int32))
    pick = lambda new, old: jax.tree.map(  # noqa: E731
        lambda n, o: jnp.where(now.reshape(-1, *[1] * (n.ndim - 1)), n, o), new, old)
    return Best(pick(run.params, run.best.params), pick(run.state, run.best.state),
                np.where(now, run.epoch, run.best.epoch).astype(np.int32))


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
