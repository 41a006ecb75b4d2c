"""What `fit` returns (`FitResult`, `Timing`), and the errors that carry a run so far."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from jnet.errors import ArgumentError, Error
from jnet.training.history import History
from jnet.typing import PyTree


class Timing(NamedTuple):
    """Wall-clock seconds of a `fit`: compiling, and training (everything else in the loop)."""

    compile_s: float
    train_s: float


class FitResult(NamedTuple):
    """What `fit` returns; a pytree, so ``jnet.checkpoint.save(path, result)`` stores it all.

    Attributes:
        params, state, opt_state: the trained parameters, model state and optimizer state
            (params / state of the best epoch when early stopping restored them); a leading
            population axis P for a population run.
        history: per-epoch logs, ``history.plot()`` draws them.
        epoch: epochs completed.
        step: optimizer steps taken.
        key: the base PRNG key the run was derived from (pass it again to resume).
        timing: compile and training seconds.
        population: the hyperparameters of a population run (``{name: (P,) array}``), or None.
    """

    params: PyTree
    state: PyTree
    opt_state: PyTree
    history: History
    epoch: int
    step: int
    key: jax.Array
    timing: Timing = Timing(0.0, 0.0)
    population: dict | None = None

    def eval_params(self) -> PyTree:
        """The weights to evaluate, predict, export or checkpoint with: what the optimizer
        declares (`jnet.optim.eval_params`: `ema`'s average, the schedule-free x_t), else
        ``params``; per member for a population. Resume training from ``params``, not these.

        Returns:
            A pytree shaped like ``params`` (leading axis P for a population).
        """
        from jnet.optim import eval_params

        weights = eval_params if self.population is None else jax.vmap(eval_params)
        return weights(self.params, self.opt_state)

    def member(self, i: int) -> FitResult:
        """Member `i` of a population run as its own `FitResult` (its key is
        ``fold_in(key, i)``).

        Raises:
            ArgumentError: not a population run, or `i` out of range.
        """
        if self.population is None:
            raise ArgumentError("member(i) is for population runs; this result is one model.",
                                where="FitResult.member")
        size = len(next(iter(self.population.values())))
        if not isinstance(i, (int, np.integer)) or not 0 <= i < size:
            raise ArgumentError(f"member index must be an int in [0, {size}), got {i!r}.",
                                where="FitResult.member")
        take = lambda tree: jax.tree.map(lambda a: a[i], tree)  # noqa: E731
        return FitResult(take(self.params), take(self.state), take(self.opt_state),
                         self.history.member(i), self.epoch, self.step,
                         jax.random.fold_in(self.key, i), self.timing, None)


class TrainingDiverged(Error, FloatingPointError):
    """The loss, the parameters or the optimizer state became NaN or inf; ``.result`` holds
    the run up to the last finite step."""

    def __init__(self, message: str, result: FitResult):
        super().__init__(message)
        self.result = result


class TrainingInterrupted(Error, RuntimeError):
    """Something that is not a jnet error (a data generator, a callback, a metric) raised
    after training started; ``.result`` holds the run so far and the original exception is
    the ``__cause__``."""

    def __init__(self, message: str, result: FitResult):
        super().__init__(message)
        self.result = result
