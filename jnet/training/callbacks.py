"""The callback protocol of `jnet.fit`: a typed run state and three hooks.

    class PrintLoss(jnet.callbacks.Callback):
        def on_epoch_end(self, run):
            print(run.epoch, run.logs["loss"])
            return run.logs["loss"] < 0.01        # True stops training

A `Callback` sees one `RunState`: the epoch and step counters, the epoch's logs, the
`History`, the current params / state / opt_state and the run's key. ``on_epoch_end`` runs
after every epoch (after validation) and may stop training by returning True or by setting
``run.stop = True``; ``on_train_begin`` runs once before the first step (a `Checkpoint`
resumes there), ``on_train_end`` once after the last (`EarlyStopping` restores its best
weights there). Built-in callbacks (`EarlyStopping`, `Checkpoint`, `LivePlot`) use nothing
but this protocol.

Plain functions ``cb(epoch, logs, history) -> bool`` (the v0.2 callbacks) keep working:
``epoch`` counts from 0, ``logs`` is a copy of the epoch's logs, True stops. `fit` checks
their signature before training, so a Keras-style ``on_epoch_end(epoch, logs)`` function is
reported at once, not after the first epoch.

Order: at each epoch end the callbacks run by increasing `Callback.order` (stable: the order
given, then `Checkpoint`, whose order is 1, so that it saves what the others decided); at the
start they run in the reverse order (a checkpoint is resumed before the others look at the
run).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from jnet.errors import ArgumentTypeError
from jnet.training.history import History
from jnet.typing import PyTree


class Best(NamedTuple):
    """The weights of the best epoch so far (`EarlyStopping` keeps them; checkpoints hold
    them): params, model state and the 1-based epoch (a ``(P,)`` array for a population)."""

    params: PyTree
    state: PyTree
    epoch: Any


def _silent(message: str) -> None:
    """The `RunState.write` of a run without a progress bar."""


@dataclasses.dataclass
class RunState:
    """Where a `fit` run stands, as callbacks see it (and may change it).

    Attributes:
        params, state, opt_state: the current trees (a leading axis P for a population).
            Valid until the next epoch starts, which takes over (donates) their buffers:
            copy what you keep (`jnet.training.loop.fresh`).
        key: the run's base PRNG key (a `Checkpoint` resumed from another key replaces it).
        history: the `History` of every epoch so far.
        names: the names logged each epoch (``"loss"``, metrics, ``"lr"``, ``"val_*"``).
        planned_epochs, planned_steps: the budget (`fit`'s ``epochs=`` or ``steps=``; the
            other is None).
        population: ``{hyperparameter: (P,) array}`` of a population run, else None.
        epoch: epochs completed (the epoch that just ended is ``epoch - 1`` counting from 0).
        step: optimizer steps taken.
        logs: the last epoch's logs: floats, or ``(P,)`` arrays for a population.
        stop: set True to stop after this epoch.
        best: the best epoch's weights when `EarlyStopping` keeps them, else None.
        write: prints a line above the progress bar (nothing with ``verbose=0``).
    """

    params: PyTree
    state: PyTree
    opt_state: PyTree
    key: jax.Array
    history: History
    names: tuple[str, ...]
    planned_epochs: int | None
    planned_steps: int | None
    population: dict[str, jax.Array] | None = None
    epoch: int = 0
    step: int = 0
    logs: dict[str, Any] = dataclasses.field(default_factory=dict)
    stop: bool = False
    best: Best | None = None
    write: Callable[[str], None] = _silent

    @property
    def size(self) -> int | None:
        """P, the number of members of a population run, or None."""
        return None if self.population is None else len(next(iter(self.population.values())))

    def more(self) -> bool:
        """Whether another epoch will run: not stopped and the budget not spent."""
        if self.stop:
            return False
        if self.planned_epochs is not None:
            return self.epoch < self.planned_epochs
        return self.planned_steps is not None and self.step < self.planned_steps


class Callback:
    """Base class of `fit` callbacks: override the hooks you need (each does nothing here).

    Attributes:
        order: callbacks run by increasing order at each epoch end (0; `Checkpoint` 1).
    """

    order: int = 0

    def on_train_begin(self, run: RunState) -> None:
        """Called once before the first step (after the trees are built)."""

    def on_epoch_end(self, run: RunState) -> bool | None:
        """Called after each epoch; return True (or set ``run.stop``) to stop training."""
        return None

    def on_train_end(self, run: RunState) -> None:
        """Called once after the last epoch (not when training failed)."""


class FunctionCallback(Callback):
    """A plain function ``fn(epoch, logs, history) -> bool`` as a `Callback` (v0.2 style)."""

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn

    def on_epoch_end(self, run: RunState) -> bool | None:
        return bool(self.fn(run.epoch - 1, dict(run.logs), run.history))


def _check_function(cb: Callable[..., Any]) -> None:
    """Raise unless `cb` can be called as ``cb(epoch, logs, history)``."""
    try:
        inspect.signature(cb).bind(0, {}, None)
    except TypeError:
        raise ArgumentTypeError(
            f"callback {getattr(cb, '__name__', cb)!r} has the signature "
            f"{inspect.signature(cb)}, but fit calls cb(epoch, logs, history) -> bool (True "
            "stops training). Wrap a Keras-style callback: "
            "`lambda epoch, logs, history: on_epoch_end(epoch, logs)`, or subclass "
            "jnet.callbacks.Callback."
        ) from None
    except ValueError:  # builtins without a signature: trust them
        pass


def as_callbacks(callbacks: Sequence[Any] | Callable[..., Any] | Callback | None
                 ) -> list[Callback]:
    """``callbacks=`` of `fit` as `Callback` objects sorted by their `order` (stable).

    Raises:
        ArgumentTypeError: an entry that is neither a `Callback` nor a function that takes
            ``(epoch, logs, history)`` (e.g. Keras's ``on_epoch_end(epoch, logs)``).
    """
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback) or callable(callbacks):
        callbacks = [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        raise ArgumentTypeError(f"callbacks must be a list of jnet.callbacks.Callback or "
                                f"functions, got {type(callbacks).__name__}.")
    checked: list[Callback] = []
    for cb in callbacks:
        if isinstance(cb, Callback):
            checked.append(cb)
            continue
        if not callable(cb):
            raise ArgumentTypeError(f"callbacks must be jnet.callbacks.Callback objects or "
                                    f"functions cb(epoch, logs, history) -> bool, got "
                                    f"{type(cb).__name__}.")
        _check_function(cb)
        checked.append(FunctionCallback(cb))
    return sorted(checked, key=lambda c: c.order)
