"""The epoch loop of `fit`: compiled epochs, one host read per epoch, validation, history,
callbacks, and the errors that keep the run so far.

After each epoch the trainer reads the epoch's logs, the divergence flags and the learning
rate in one host transfer (`jnet.optim.current_learning_rate`; a dict ``{group: lr}`` is
logged as ``lr/<group>``), validates (`jnet.training.inference.Evaluator`), appends the
`History` and calls the callbacks with the `RunState`.

Failures keep the work. Once a step has run, any exception (a data generator that raises or
runs dry, a batch larger than the first, a validation pass or metric that fails, a callback
that raises, a checkpoint that cannot be written) reaches the user as a `jnet.Error` whose
``.result`` is the run so far (params after the last step that ran, history of the completed
epochs): a jnet error keeps its class and gets the result attached, anything else becomes a
`TrainingInterrupted` raised ``from`` the original.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import Error
from jnet.training.callbacks import Callback, RunState
from jnet.training.history import History
from jnet.training.inference import Evaluator
from jnet.training.loop import (
    ArrayEpochs,
    Clock,
    EpochFailed,
    IterableEpochs,
    Program,
    TrainState,
    guarded,
    reduce_logs,
)
from jnet.training.options import Options
from jnet.training.progress import Progress
from jnet.training.result import FitResult, Timing, TrainingDiverged, TrainingInterrupted
from jnet.training.setup import Setup, initial_state
from jnet.training.step import train_step_fn


def lr_of(opt_state: Any) -> Any:
    """The learning rate of the last update (an array, or ``{group: array}``), when the
    optimizer state records one; else None."""
    from jnet.optim import OptState, current_learning_rate

    return current_learning_rate(opt_state) if isinstance(opt_state, OptState) else None


def lr_logs(lr: Any) -> dict[str, Any]:
    """``{"lr": lr}``, ``{"lr/<group>": lr, ...}`` for a dict, or ``{}``."""
    if lr is None:
        return {}
    if isinstance(lr, dict):
        return {f"lr/{group}": value for group, value in lr.items()}
    return {"lr": lr}


def fits_on_device(*arrays: Any) -> bool:
    """Whether the data may be copied whole to the device (a quarter of its memory, or 1 GiB)."""
    size = sum(int(np.prod(np.shape(a))) * np.dtype(jnp.result_type(a)).itemsize
               for a in arrays if a is not None)
    stats = jax.local_devices()[0].memory_stats() or {}
    return size <= stats.get("bytes_limit", 4 << 30) // 4


def build_epochs(setup: Setup, options: Options, ts: TrainState, *, shuffle: bool, mesh: Any,
                 clock: Clock) -> tuple[ArrayEpochs | IterableEpochs, TrainState]:
    """The compiled epoch runner of this run, and `ts` placed on the mesh (if any)."""
    step = None
    if mesh is not None:  # split batches (and maybe params) over devices
        from jnet.distributed import for_fit

        step, trees = for_fit(mesh, train_step_fn(setup.model, setup.optimizer_for({}),
                                                  setup.loss_fn, setup.metric_fns),
                              ts[:3], setup.batch_size)
        params, state, opt_state = trees
        ts = TrainState(params, state, opt_state, ts.diverged)

    def build_step(hyper: dict) -> Any:
        return guarded(step or train_step_fn(setup.model, setup.optimizer_for(hyper),
                                             setup.loss_fn, setup.metric_fns))

    program = Program(build_step, population=setup.size is not None, clock=clock)
    k_train = setup.split(setup.key)[1]
    if setup.arrays is None:  # an iterable of batches
        return IterableEpochs(program, setup.hyper or {}, setup.source, k_train), ts
    arrays = setup.arrays
    scan = options.scan
    if scan is None:
        scan = fits_on_device(arrays.x, arrays.y, arrays.mask)
    batch_size = arrays.n if setup.batch_size is None else setup.batch_size
    return ArrayEpochs(program, setup.hyper or {}, arrays, k_train, batch_size=batch_size,
                       drop_remainder=options.drop_remainder, shuffle=shuffle, scan=scan,
                       steps_per_call=options.steps_per_call), ts


class Trainer:
    """One `fit` run: the compiled epochs, the `RunState` and the callbacks.

    Args:
        setup: the checked arguments; options: the `Options`.
        callbacks: sorted by their order (`jnet.training.callbacks.as_callbacks`).
        epochs, steps: the budget (one is None); shuffle, mesh, verbose: as `fit`'s.
    """

    def __init__(self, setup: Setup, options: Options, callbacks: list[Callback], *,
                 epochs: int | None, steps: int | None, shuffle: bool, mesh: Any,
                 verbose: int):
        self.setup, self.callbacks, self.verbose = setup, callbacks, verbose
        self.clock = Clock()
        ts = initial_state(setup, options)
        self.run_epoch, self.ts = build_epochs(setup, options, ts, shuffle=shuffle, mesh=mesh,
                                               clock=self.clock)
        self.evaluator = None if setup.validation is None else Evaluator(
            setup.model, setup.loss_fn, setup.metric_fns, population=setup.size is not None,
            clock=self.clock)
        self.validation_batch_size = options.validation_batch_size
        self.eval_weights = options.eval_weights
        names = ["loss", *setup.metric_fns, *lr_logs(lr_of(self.ts.opt_state))]
        if setup.validation is not None:
            names += [f"val_{k}" for k in ("loss", *setup.metric_fns)]
        self.run = RunState(*self.ts[:3], setup.key, History(), tuple(names), epochs, steps,
                            setup.hyper)
        self.start_step = 0

    def train(self) -> FitResult:
        """Run every epoch; returns the `FitResult` (see the module docstring for errors)."""
        run = self.run
        for cb in reversed(self.callbacks):  # a Checkpoint resumes before the others look
            cb.on_train_begin(run)
        self.ts = TrainState(run.params, run.state, run.opt_state, self.ts.diverged)
        self.run_epoch.k_train = self.setup.split(run.key)[1]  # the resumed run's key
        self.start_step = run.step
        progress = self._progress()
        run.write = progress.write
        start = time.perf_counter()
        try:
            while run.more():
                self._epoch(progress)
            if run.stop:
                progress.finish()
        except TrainingDiverged:
            raise
        except Exception as err:
            self._keep(err)
            raise
        finally:
            progress.close()
        for cb in self.callbacks:
            cb.on_train_end(run)
        return self._result(time.perf_counter() - start - self.clock.compile_s)

    def _progress(self) -> Progress:
        run, per = self.run, self.run_epoch.steps
        target = run.planned_epochs
        if run.planned_steps is not None and per:
            target = -(-run.planned_steps // per)
        total = run.planned_steps if run.planned_steps is not None else (
            None if per is None else (run.planned_epochs or 0) * per)
        return Progress(total, initial=min(run.step, total or run.step), epochs=target,
                        verbose=self.verbose, population=run.size is not None)

    def _limit(self) -> int | None:
        """Steps to run in the next epoch: all, or what the ``steps=`` budget leaves."""
        per, run = self.run_epoch.steps, self.run
        if run.planned_steps is None:
            return per
        left = run.planned_steps - run.step
        return left if per is None else min(per, left)

    def _epoch(self, progress: Progress) -> None:
        """One epoch: the compiled steps, then logs, validation, history and callbacks."""
        run = self.run
        self.ts, stacked = self.run_epoch(self.ts, run.epoch, self._limit(), progress)
        values, diverged, ran, lr, dead = jax.device_get(  # the epoch's one host read
            (reduce_logs(stacked), stacked["diverged"], jnp.sum(stacked["active"], axis=-1),
             lr_of(self.ts.opt_state), self.ts.diverged))
        self._check_diverged(np.asarray(diverged), np.asarray(dead))
        run.step += int(np.max(ran))
        run.params, run.state, run.opt_state = self.ts[:3]
        logs = {k: values[k] for k in ("loss", *self.setup.metric_fns)}
        if self.evaluator is not None and self.setup.validation is not None:
            val = self.evaluator(self._eval_params(), run.state, self.setup.validation,
                                 self.validation_batch_size)
            logs.update({f"val_{k}": v for k, v in val.items()})
        # members that diverged log NaN from then on (a single run has raised already)
        logs = {k: _host(np.where(dead, np.nan, v)) for k, v in logs.items()}
        logs.update({k: _host(v) for k, v in lr_logs(lr).items()})
        run.logs = logs
        run.history.append(logs)
        run.epoch += 1
        for cb in self.callbacks:
            run.stop = bool(cb.on_epoch_end(run)) or run.stop
        progress.epoch_end(run.epoch - 1, logs,
                           compile_s=self.clock.compile_s if run.epoch == 1 else None)

    def _eval_params(self) -> Any:
        """The weights to validate with (`Options.eval_weights`; the optimizer's hook)."""
        run = self.run
        if self.eval_weights == "params":
            return run.params
        return self._result(0.0).eval_params()

    def _check_diverged(self, diverged: np.ndarray, dead: np.ndarray) -> None:
        """Raise `TrainingDiverged` when every member (the one model) has diverged; warn about
        the members of a population that did."""
        hit = diverged.any(axis=-1)
        if not hit.any():
            return
        if not dead.all():
            warnings.warn(f"jnet.fit: population member(s) {np.flatnonzero(hit).tolist()} "
                          f"diverged (NaN/inf loss, parameters or optimizer state) in epoch "
                          f"{self.run.epoch + 1}; they keep their last good parameters.",
                          stacklevel=5)
            return
        row = diverged if diverged.ndim == 1 else diverged[int(np.argmax(hit))]
        at = int(np.argmax(row))
        run = self.run
        run.step += at  # the updates made before the step that diverged
        run.params, run.state, run.opt_state = self.ts[:3]
        raise TrainingDiverged(
            f"the training loss, parameters or optimizer state became NaN/inf at epoch "
            f"{run.epoch + 1}, step {at + 1} of the epoch (global step {run.step + 1}). "
            "Training stopped; err.result holds the parameters from before that step. Lower "
            "the learning rate, add gradient clipping, or check the loss inputs.",
            self._result(0.0))

    def _keep(self, err: Exception) -> None:
        """Give an error raised after training started the run so far (module docstring);
        returns (the caller re-raises `err` as it is) when no step of this call ran."""
        run = self.run
        cause: BaseException = err
        if isinstance(err, EpochFailed):  # part of an epoch ran: keep its steps
            run.step += err.steps
            self.ts = err.ts
            run.params, run.state, run.opt_state = err.ts[:3]
            cause = err.__cause__ or err
        elif run.step == self.start_step:
            return
        result = self._result(0.0)
        if isinstance(cause, Error):
            cause.result = result
            cause.add_note(
                f"jnet.fit: training stopped in epoch {run.epoch + 1} (after {run.step} "
                "step(s)); err.result holds the run so far (params, state, opt_state, history "
                "of the completed epochs): save it, e.g. "
                "`jnet.checkpoint.save(path, err.result)`.")
            raise cause
        raise TrainingInterrupted(
            f"training stopped in epoch {run.epoch + 1} by {type(cause).__name__}: {cause}. "
            "err.result holds the run so far (params after the last step that ran, the "
            "history of the completed epochs); the original error is err.__cause__.",
            result) from cause

    def _result(self, train_s: float) -> FitResult:
        run = self.run
        return FitResult(run.params, run.state, run.opt_state, run.history, run.epoch,
                         run.step, run.key, Timing(self.clock.compile_s, max(train_s, 0.0)),
                         run.population)


def _host(value: Any) -> Any:
    """A fetched log value: a float, or a ``(P,)`` float array for a population."""
    value = np.asarray(value, np.float64)
    return float(value) if value.ndim == 0 else value

