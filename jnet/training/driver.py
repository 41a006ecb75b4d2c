"""`fit`: a Keras-familiar driver around the pure step.

`fit` checks everything once (`jnet.training.checks`, `jnet.training.data.prepare`), builds
the initial `TrainState`, optionally resumes it from a checkpoint (`jnet.training.resume`),
and runs epochs (`jnet.training.loop`); after each epoch it reads the epoch's logs and the
learning rate (`jnet.optim.current_learning_rate`) in one host transfer, validates
(`jnet.training.inference.Evaluator`), records the `History`, applies early stopping and
callbacks, and checkpoints.

Budget: ``epochs=E`` or ``steps=S`` (exactly one). With ``steps`` the last epoch may be
partial (its remaining steps are inactive in the scan); the history has one row per (possibly
partial) epoch.

Timing: every compiled function is compiled ahead of time on its first call
(``jax.jit(...).lower(...).compile()``), so ``result.timing`` reports compile seconds apart
from training seconds; the progress bar shows the compile time once, after the first epoch.

Populations: ``population={"learning_rate": [1e-3, 1e-2, 1e-1]}`` with ``optimizer`` a
function ``make_optimizer(**hyperparameters) -> optimizer`` trains P members in one compiled
program (`jax.vmap` of the same epoch functions, see `jnet.training.loop`). Member i trains
exactly as ``fit(model, make_optimizer(**hyperparameters_i), ..., key=fold_in(key, i))``: its
own initialisation, shuffles and dropout keys. The result's arrays carry a leading axis P and
``result.member(i)`` is member i's own `FitResult`. Validation is per member; the history
holds ``(P,)`` values per epoch. Early stopping in a population stops when EVERY member would
have stopped (a single compiled program cannot stop members one by one), and with
``restore_best_weights`` each member gets back its own best epoch's weights. A member whose
loss becomes NaN / inf keeps its last good parameters (logged as NaN from then on, with a
warning); the run raises `TrainingDiverged` only when all members have diverged.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnet.checkpoint import CheckpointError
from jnet.errors import ArgumentError, ArgumentTypeError, DataError, Error, entry_point
from jnet.layers.base import Layer, abstract_init
from jnet.training import checks
from jnet.training import data as D
from jnet.training import resume as R
from jnet.training.callbacks import EarlyStopping, as_early_stopping, check_callbacks
from jnet.training.history import History, LivePlot
from jnet.training.inference import Evaluator
from jnet.training.loop import (
    ArrayEpochs,
    Clock,
    IterableEpochs,
    Program,
    TrainState,
    guarded,
    reduce_logs,
)
from jnet.training.progress import Progress
from jnet.training.step import LossFn, model_metrics, resolve_loss, train_step_fn

PyTree = Any
Callback = Callable[[int, dict, History], bool]


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
    """The loss became NaN or inf; ``.result`` holds the run up to the last good step."""

    def __init__(self, message: str, result: FitResult):
        super().__init__(message)
        self.result = result


# --------------------------------------------------------------------------------------------
# Argument resolution


def _as_key(key: Any) -> jax.Array:
    """A typed PRNG key from a typed key, a raw ``PRNGKey`` or an int seed."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(jnp.asarray(key))
    raise ArgumentTypeError(
        f"key must be a PRNG key (jax.random.key(0)) or an int seed, got "
        f"{'None' if key is None else type(key).__name__}. Pass key=0 for a fixed seed."
    )


def _optimizer(optimizer: Any) -> Any:
    """An optimizer from an optimizer or the name of a rule of `jnet.optim` (`jnet.optim.get`:
    an unknown name or an uncalled constructor is its clear error); any object with
    ``init`` / ``update`` passes as it is."""
    from jnet import optim

    if hasattr(optimizer, "init") and hasattr(optimizer, "update"):
        return optimizer
    return optim.get(optimizer)


def _population(population: Any, make_optimizer: Any) -> dict[str, jax.Array] | None:
    """``population=`` as ``{name: (P,) array}``; checks `make_optimizer` is a function."""
    if population is None:
        return None
    if not isinstance(population, dict) or not population:
        raise ArgumentTypeError(f"population must be a non-empty dict {{hyperparameter: list "
                                f"of values}}, got {population!r}.")
    sizes = {k: len(v) if isinstance(v, (list, tuple, np.ndarray)) else None
             for k, v in population.items()}
    if None in sizes.values() or len(set(sizes.values())) != 1 or 0 in sizes.values():
        raise ArgumentError(f"population values must be non-empty lists of one length P, got "
                            f"lengths {sizes}.")
    if not callable(make_optimizer) or hasattr(make_optimizer, "update"):
        raise ArgumentTypeError(
            "with population=, the optimizer argument must be a function "
            "make_optimizer(**hyperparameters) -> optimizer, e.g. "
            "`lambda learning_rate: jnet.optim.adam(learning_rate)`.")
    return {k: jnp.asarray(v) for k, v in population.items()}


def _budget(epochs: Any, steps: Any) -> None:
    if (epochs is None) == (steps is None):
        raise ArgumentError(f"give exactly one of epochs= and steps= (a budget of updates), "
                            f"got epochs={epochs!r}, steps={steps!r}.")
    for name, value in (("epochs", epochs), ("steps", steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, (int, np.integer)) or value < 0):
            raise ArgumentError(f"{name} must be a non-negative int, got {value!r}.")


def _validation(validation_data: Any, check_finite: bool) -> D.Arrays | None:
    """``(x, y)`` or ``(x, y, mask)`` checked like the training data, on the device."""
    if validation_data is None:
        return None
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        given = type(validation_data).__name__
        if isinstance(validation_data, (tuple, list)):
            given += f" of length {len(validation_data)}"
        raise ArgumentError(
            f"validation_data must be a tuple (x_val, y_val) or (x_val, y_val, mask_val), got "
            f"{given}.")
    return D.prepare(*validation_data, check_finite=check_finite,
                     prefix="validation ").on_device()


def _peek(source: Any) -> tuple[Any, tuple[int, ...]]:
    """``(source, per-example input shape)`` read from the first batch of an iterable; a
    one-shot iterator (a generator) gets that batch put back in front."""
    import itertools

    it = iter(source(0) if callable(source) else source)
    try:
        first = next(it)
    except StopIteration:
        raise DataError("the dataset yielded no batch.") from None
    if it is source:
        source = itertools.chain([first], it)
    batch = D.as_batch(first)
    return source, tuple(jnp.shape(batch.x)[1:])


def _lr(opt_state: Any) -> Any:
    """The learning rate of the last update, when the optimizer state records one."""
    from jnet.optim import OptState, current_learning_rate

    return current_learning_rate(opt_state) if isinstance(opt_state, OptState) else None


def _copy(tree: PyTree) -> PyTree:
    """Fresh buffers, so that donating the training state cannot delete the user's arrays."""
    return jax.tree.map(lambda a: jnp.array(a, copy=True) if isinstance(a, jax.Array) else a, tree)


class _Run:
    """One call of `fit`: the checked arguments, the state, and the epoch loop."""

    def __init__(self, a: dict):
        self.model, self.verbose = a["model"], a["verbose"]
        _budget(a["epochs"], a["steps"])
        checks.positive_int("checkpoint_every", a["checkpoint_every"])
        checks.positive_int("keep_checkpoints", a["keep_checkpoints"])
        checks.positive_int("steps_per_call", a["steps_per_call"], allow_none=True)
        checks.positive_int("validation_batch_size", a["validation_batch_size"], allow_none=True)
        checks.no_tracers(x=a["x"], y=a["y"], key=a["key"], params=a["params"])
        if a["resume"] and a["checkpoint_dir"] is None:
            raise ArgumentError("resume=True needs checkpoint_dir= (where to resume from).")
        self.epochs, self.steps, self.a = a["epochs"], a["steps"], a
        self.key = _as_key(a["key"])
        self.hyper = _population(a["population"], a["optimizer"])
        self.size = None if self.hyper is None else len(next(iter(self.hyper.values())))
        if self.hyper is None:
            self.optimizer = _optimizer(a["optimizer"])
        elif a["mesh"] is not None:
            raise ArgumentError("population= and mesh= cannot be combined yet; train the "
                                "population on one device.")
        self.loss_fn = resolve_loss(self.model, a["loss"])
        self.metric_fns = model_metrics(self.model, a["metrics"])
        self.stopper = as_early_stopping(a["early_stopping"])
        self.callbacks = check_callbacks(a["callbacks"])
        self._data(a)
        self._trees(a)
        self._check_monitor()
        self._program(a)

    def _check_monitor(self) -> None:
        """Early stopping must monitor a name this run logs."""
        if self.stopper is None:
            return
        names = ["loss", *self.metric_fns]
        names += ["lr"] if _lr(self.ts.opt_state) is not None else []
        if self.validation is not None:
            names += [f"val_{k}" for k in ("loss", *self.metric_fns)]
        if self.stopper.monitor not in names:
            raise ArgumentError(
                f"early stopping monitors {self.stopper.monitor!r}, which is not logged; "
                f"logged values: {sorted(names)}. Pass validation_data or "
                "EarlyStopping(monitor=...) with one of those.")

    def _data(self, a: dict) -> None:
        x, y = a["x"], a["y"]
        self.iterable = y is None and not hasattr(x, "shape") and a["mask"] is None
        if self.iterable:
            if a["scan"]:
                raise ArgumentError("scan=True needs in-memory arrays x, y, not an iterable.")
            self.source, self.in_shape = _peek(x)
            self.arrays = None
        else:
            self.arrays = D.prepare(x, y, a["mask"], check_finite=a["check_finite"])
            self.batch_size = D.resolve_batch_size(a["batch_size"], self.arrays.n)
            self.in_shape = tuple(jnp.shape(self.arrays.x)[1:])
        self.validation = _validation(a["validation_data"], a["check_finite"])
        if self.validation is not None and tuple(self.validation.x.shape[1:]) != self.in_shape:
            raise DataError(
                f"validation x has per-example shape {tuple(self.validation.x.shape[1:])}, the "
                f"training x {self.in_shape}. Pass validation inputs shaped like the training "
                "inputs.")
        if self.stopper is not None:
            self.stopper = self.stopper.resolved(self.validation is not None)
        if a["checkpoint_dir"] is not None:
            checks.check_writable(a["checkpoint_dir"])

    def _trees(self, a: dict) -> None:
        """The initial `TrainState` (member keys ``fold_in(key, i)`` for a population)."""
        in_shape = None if self.model.input_shape is not None else self.in_shape
        keys = (self.key if self.size is None else
                jax.vmap(lambda i: jax.random.fold_in(self.key, i))(jnp.arange(self.size)))
        split = lambda k: tuple(jax.random.split(k))  # noqa: E731
        k_init, self.k_train = jax.vmap(split)(keys) if self.size else split(keys)
        members = (lambda f: jax.vmap(f)) if self.size else (lambda f: f)
        lead = () if self.size is None else (self.size,)
        out_shape, want_params, want_state = abstract_init(
            self.model, k_init if self.size is None else k_init[0], in_shape)
        self.out_shape = out_shape
        if self.arrays is not None:
            checks.check_labels(self.model, out_shape, self.arrays.y)
        if self.validation is not None:
            checks.check_labels(self.model, out_shape, self.validation.y, "validation y")
        params, state = a["params"], a["state"]
        if params is None or state is None:
            init = members(lambda k: self.model.init(k, in_shape)[1:])(k_init)
            params = init[0] if params is None else params
            state = init[1] if state is None else state
        checks.check_tree("params", params, want_params, lead)
        checks.check_tree("state", state, want_state, lead)
        params, state = _copy(params), _copy(state)
        opt_init = members(lambda hp, p: self._make_optimizer(hp).init(p))
        opt_state = a["opt_state"]
        want_opt = jax.eval_shape(opt_init, self.hyper or {}, params)
        if opt_state is None:  # copied: it may hold the hyperparameter arrays themselves
            opt_state = _copy(opt_init(self.hyper or {}, params))
        else:
            checks.check_tree("opt_state", opt_state, jax.tree.map(
                lambda s: jax.ShapeDtypeStruct(s.shape[len(lead):], s.dtype), want_opt), lead)
            opt_state = _copy(opt_state)
        self.ts = TrainState(params, state, opt_state, jnp.zeros(lead, bool))

    def _make_optimizer(self, hyper: dict) -> Any:
        if self.hyper is None:
            return self.optimizer
        return _optimizer(self.a["optimizer"](**hyper))

    def _program(self, a: dict) -> None:
        """The compiled epoch functions, the evaluator and the checkpoint manager."""
        self.clock = Clock()
        step = None
        if a["mesh"] is not None:  # split batches (and maybe params) over devices
            from jnet.distributed import for_fit

            step, trees = for_fit(a["mesh"], train_step_fn(self.model, self.optimizer,
                                                            self.loss_fn, self.metric_fns),
                                  self.ts[:3], None if self.iterable else self.batch_size)
            self.ts = TrainState(*trees, self.ts.diverged)

        def build_step(hyper):
            return guarded(step or train_step_fn(self.model, self._make_optimizer(hyper),
                                                 self.loss_fn, self.metric_fns))

        program = Program(build_step, population=self.size is not None, clock=self.clock)
        hyper = self.hyper or {}
        if self.iterable:
            self.run_epoch = IterableEpochs(program, hyper, self.source, self.k_train)
        else:
            scan = a["scan"]
            if scan is None:
                scan = _fits_on_device(self.arrays.x, self.arrays.y, self.arrays.mask)
            self.run_epoch = ArrayEpochs(
                program, hyper, self.arrays, self.k_train, batch_size=self.batch_size,
                drop_remainder=a["drop_remainder"], shuffle=a["shuffle"], scan=scan,
                steps_per_call=a["steps_per_call"])
        self.per_epoch = self.run_epoch.steps
        self.evaluator = None if self.validation is None else Evaluator(
            self.model, self.loss_fn, self.metric_fns, population=self.size is not None,
            clock=self.clock)
        self.manager = None
        if a["checkpoint_dir"] is not None:
            from jnet.checkpoint import CheckpointManager

            # keep_best=0: exactly the last `keep_checkpoints` files, as documented (the best
            # weights of early stopping travel inside each checkpoint anyway)
            self.manager = CheckpointManager(a["checkpoint_dir"], keep_last=a["keep_checkpoints"],
                                             keep_best=0)
        plot = a["live_plot"]
        if plot:
            path = plot if isinstance(plot, (str, os.PathLike)) else os.path.join(
                a["checkpoint_dir"] or ".", "history.png")
            self.callbacks.insert(0, LivePlot(path=path))  # drawn before user callbacks run

    def _restore(self) -> None:
        """Continue from the latest checkpoint, if any (header first, tensors once)."""
        self.history, self.epoch, self.step, self.stopped, self.best = History(), 0, 0, False, None
        latest = self.manager.latest_step() if self.a["resume"] else None
        if latest is None:
            return
        meta = R.read_header(self.manager, latest)
        if self.steps is not None and meta["step"] > self.steps:
            raise ArgumentError(
                f"resume=True: the checkpoint is at step {meta['step']}, past the requested "
                f"steps={self.steps}. Pass a larger budget, or another checkpoint_dir.")
        R.check_header(meta, self.epochs if self.epochs is not None else meta["epoch"],
                       self.size)
        saved = R.restore(self.manager, meta, *self.ts[:3], self.key)
        self.ts = TrainState(saved.params, saved.state, saved.opt_state, self.ts.diverged)
        self.history, self.epoch, self.step = saved.history, saved.epoch, saved.step
        self.stopped = saved.stopped
        if self.stopper is not None and self.stopper.restore_best_weights:
            self.best = saved.best
            if saved.best is None:
                warnings.warn(
                    f"jnet.fit: checkpoint {latest} holds no best weights (it was written "
                    "without early stopping); restore_best_weights can only return the "
                    f"weights of an epoch after {latest}.", stacklevel=4)
        if not np.array_equal(jax.random.key_data(saved.key), jax.random.key_data(self.key)):
            warnings.warn("jnet.fit: resuming with a different key than the checkpoint's; "
                          "using the checkpoint's key for an exact continuation.", stacklevel=4)
            self.key = saved.key
            self._trees_keys_only()

    def _trees_keys_only(self) -> None:
        """Re-derive the training keys from `self.key` (after resuming with another key)."""
        keys = (self.key if self.size is None else
                jax.vmap(lambda i: jax.random.fold_in(self.key, i))(jnp.arange(self.size)))
        k_train = jax.vmap(lambda k: jax.random.split(k)[1])(keys) if self.size else \
            jax.random.split(keys)[1]
        self.run_epoch.k_train = k_train

    def _more(self) -> bool:
        if self.stopped:
            return False
        if self.epochs is not None:
            return self.epoch < self.epochs
        return self.step < self.steps

    def _limit(self) -> int | None:
        """Steps to run in the next epoch: all, or what the ``steps=`` budget leaves."""
        if self.steps is None:
            return self.per_epoch
        left = self.steps - self.step
        return left if self.per_epoch is None else min(self.per_epoch, left)

    def train(self) -> FitResult:
        self._restore()
        per, target = self.per_epoch, self.epochs
        if self.steps is not None and per:
            target = -(-self.steps // per)
        total = self.steps if self.steps is not None else (None if per is None
                                                           else self.epochs * per)
        progress = Progress(total, initial=min(self.step, total or self.step), epochs=target,
                            verbose=self.verbose, population=self.size is not None)
        start = time.perf_counter()
        try:
            while self._more():
                self.ts, stacked = self.run_epoch(self.ts, self.epoch, self._limit(), progress)
                self._epoch_end(stacked, progress)
            if self.stopped:
                progress.finish()
        finally:
            progress.close()
        train_s = time.perf_counter() - start - self.clock.compile_s
        return self._finish(Timing(self.clock.compile_s, max(train_s, 0.0)), progress)

    def _epoch_end(self, stacked: dict, progress: Progress) -> None:
        """Logs, validation, history, early stopping, callbacks and checkpoint of one epoch."""
        values, diverged, ran, lr = jax.device_get(  # the epoch's one host read
            (reduce_logs(stacked), stacked["diverged"], jnp.sum(stacked["active"], axis=-1),
             _lr(self.ts.opt_state)))
        self._check_diverged(diverged)
        self.step += int(np.max(ran))
        logs = {k: _host(values[k]) for k in ("loss", *self.metric_fns)}
        if lr is not None:
            logs["lr"] = _host(lr)
        if self.evaluator is not None:
            val = self.evaluator(self.ts.params, self.ts.state, self.validation,
                                 self.a["validation_batch_size"])
            logs.update({f"val_{k}": v for k, v in val.items()})
        if self.size is not None:  # diverged members log NaN from then on
            dead = np.asarray(jax.device_get(self.ts.diverged))
            logs = {k: np.where(dead, np.nan, v) if k != "lr" else v for k, v in logs.items()}
        self.history.append(logs)
        self.epoch += 1
        if self.stopper is not None:
            self._early_stopping()
        for cb in self.callbacks:
            self.stopped = bool(cb(self.epoch - 1, dict(logs), self.history)) or self.stopped
        progress.epoch_end(self.epoch - 1, logs, compile_s=self.clock.compile_s
                           if self.epoch == 1 else None)
        if self.manager is not None and (self.epoch % self.a["checkpoint_every"] == 0
                                         or not self._more()):
            self._checkpoint(logs)

    def _checkpoint(self, logs: dict) -> None:
        """Save this epoch's checkpoint. A failed write (disk full, say) must not cost the
        run: the `CheckpointError` leaves with the training result so far as ``err.result``."""
        meta = R.header(self.epoch, self.step, self.history, self.best, self.size)
        tree = R.checkpoint_tree(*self.ts[:3], self.key, self.epoch, self.step, self.history,
                                 self.stopped, self.best)
        try:
            R.save(self.manager, tree, meta, logs)
        except CheckpointError as err:
            err.result = self._result(self.ts.params, self.ts.state,
                                      Timing(self.clock.compile_s, 0.0))
            err.add_note(f"jnet.fit: the checkpoint of epoch {self.epoch} could not be written; "
                         "training stopped there and err.result holds the run so far (params, "
                         "state, opt_state, history): save it elsewhere, e.g. "
                         "`jnet.checkpoint.save(other_path, err.result)`.")
            raise

    def _check_diverged(self, diverged: np.ndarray) -> None:
        """Raise `TrainingDiverged` (every member diverged), or warn about members that did."""
        hit = diverged.any(axis=-1)
        if not hit.any():
            return
        if self.size is not None:
            members = [int(i) for i in np.flatnonzero(hit)]
            warnings.warn(f"jnet.fit: population member(s) {members} diverged (NaN/inf loss) in "
                          f"epoch {self.epoch + 1}; they keep their last good parameters.",
                          stacklevel=4)
            if not np.asarray(jax.device_get(self.ts.diverged)).all():
                return
        at = int(np.argmax(diverged if diverged.ndim == 1 else diverged[hit.argmax()]))
        self.step += at  # the updates made before the step that diverged
        latest = self.manager.latest_step() if self.manager is not None else None
        where = (f" The last checkpoint is epoch {latest} in {self.manager.directory}."
                 if latest else "")
        raise TrainingDiverged(
            f"the training loss became NaN/inf at epoch {self.epoch + 1}, step {at + 1} of the "
            f"epoch (global step {self.step + 1}). Training stopped; err.result holds the "
            "parameters from before that step." + where +
            " Lower the learning rate, add gradient clipping, or check the loss inputs.",
            self._result(self.ts.params, self.ts.state, Timing(self.clock.compile_s, 0.0)))

    def _early_stopping(self) -> None:
        """Track the best epoch (per member) and decide whether to stop (all members)."""
        table = np.asarray(self.history[self.stopper.monitor], np.float64)
        columns = table[:, None] if table.ndim == 1 else table
        best_epochs = [self.stopper.best_epoch(list(c)) for c in columns.T]
        self.stopped = all(self.stopper.should_stop(list(c)) for c in columns.T)
        if not self.stopper.restore_best_weights:
            return
        now = np.array([b == self.epoch - 1 for b in best_epochs])
        if self.size is None:
            if now[0]:
                self.best = {"params": _copy(self.ts.params), "state": _copy(self.ts.state),
                             "epoch": self.epoch}
            return
        if self.best is None:
            self.best = {"params": _copy(self.ts.params), "state": _copy(self.ts.state),
                         "epoch": np.full((self.size,), self.epoch, np.int32)}
            return
        pick = lambda new, old: jax.tree.map(  # noqa: E731
            lambda n, o: jnp.where(now.reshape(-1, *[1] * (n.ndim - 1)), n, o), new, old)
        self.best = {"params": pick(self.ts.params, self.best["params"]),
                     "state": pick(self.ts.state, self.best["state"]),
                     "epoch": np.where(now, self.epoch, self.best["epoch"]).astype(np.int32)}

    def _result(self, params: PyTree, state: PyTree, timing: Timing) -> FitResult:
        return FitResult(params, state, self.ts.opt_state, self.history, self.epoch, self.step,
                         self.key, timing, self.hyper)

    def _finish(self, timing: Timing, progress: Progress) -> FitResult:
        params, state = self.ts.params, self.ts.state
        if self.best is not None and self.stopper is not None and \
                self.stopper.restore_best_weights:
            params, state = self.best["params"], self.best["state"]
            if self.verbose and self.size is None:
                best_epoch = int(self.best["epoch"])
                value = self.history[self.stopper.monitor][best_epoch - 1]
                progress.write(f"early stopping: restored the weights of epoch {best_epoch} "
                               f"({self.stopper.monitor}={value:.4g})")
        return self._result(params, state, timing)


def _host(value: Any) -> Any:
    """A fetched log value: a float, or a ``(P,)`` float array for a population."""
    value = np.asarray(value, np.float64)
    return float(value) if value.ndim == 0 else value


def _fits_on_device(*arrays: Any) -> bool:
    """Whether the data may be copied whole to the device (a quarter of its memory, or 1 GiB)."""
    size = sum(int(np.prod(np.shape(a))) * np.dtype(jnp.result_type(a)).itemsize
               for a in arrays if a is not None)
    stats = jax.local_devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit", 4 << 30) // 4
    return size <= limit


def fit(
    model: Layer, optimizer: Any, x: Any, y: Any = None, *,
    epochs: int | None = None, steps: int | None = None, batch_size: int | None = 32,
    key: Any = None, mask: Any = None, validation_data: tuple | None = None,
    loss: LossFn | None = None, metrics: Sequence[Any] | None = None, shuffle: bool = True,
    drop_remainder: bool = False, early_stopping: EarlyStopping | int | None = None,
    callbacks: Sequence[Callback] = (), checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1, keep_checkpoints: int = 3, resume: bool = False,
    params: PyTree = None, state: PyTree = None, opt_state: PyTree = None,
    scan: bool | None = None, steps_per_call: int | None = None,
    validation_batch_size: int | None = 256, check_finite: bool = True,
    live_plot: bool | str | os.PathLike = False, verbose: int = 1, mesh: Any = None,
    population: dict[str, Sequence[Any]] | None = None,
) -> FitResult:
    """Train `model` with `optimizer` on `(x, y)`; returns a `FitResult`.

    Args:
        model: a `Layer`. With an output head (`ClassificationOutput`, `RegressionOutput`) the
            loss comes from it; otherwise pass ``loss``.
        optimizer: a jnet optimizer, or the name of a rule of `jnet.optim` (``"adam"``, its
            defaults); with ``population=``, a function ``make_optimizer(**hyperparameters)``.
        x, y: in-memory arrays (NumPy or JAX; lists are converted) with N examples on axis 0.
            Or, with ``y=None``, ``x`` is an iterable of batches ``(x, y)``, ``(x, y, weight)``
            or `jnet.data.Batch` ``(x, y, weight, mask)`` (re-iterated each epoch) or a
            function ``epoch -> iterable``. Short batches of an iterable are padded to the
            first batch's size (no recompilation); its batches decide the batch size, order and
            content (``batch_size``, ``shuffle``, ``drop_remainder``, ``mask`` and
            ``check_finite`` apply to arrays only).
        epochs: total epochs (a resumed run continues up to this count); or
        steps: a budget of updates instead (exactly one of the two); the last epoch may be
            partial.
        batch_size: None = full batch (gradient descent), 1 = per-example SGD, k = mini-batches
            (default 32, as Keras). Larger than N: N, with a warning.
        key: a PRNG key or an int seed; everything random derives from it: init, shuffles,
            dropout.
        mask: boolean ``(N, T)``, True on the real time steps of padded sequences; batched and
            shuffled with x and given to ``model.apply(..., mask=)``. With per-step targets
            padded steps count for nothing (see `jnet.training.step`).
        validation_data: ``(x_val, y_val)`` or ``(x_val, y_val, mask_val)``, evaluated after
            each epoch into ``val_*`` logs.
        loss: ``fn(outputs, targets) -> per-example losses``; overrides the head's loss.
        metrics: names (``"accuracy"``), functions ``fn(outputs, targets) -> per-example
            values`` (logged under ``fn.__name__``) or a ``{name: fn}`` dict. Default: accuracy
            for a classification head.
        shuffle: reshuffle every epoch (with a key derived from `key` and the epoch).
        drop_remainder: drop a short last batch instead of padding it with masked examples.
        early_stopping: ``EarlyStopping(monitor=..., patience=...)`` or an int patience.
        callbacks: functions ``cb(epoch, logs, history) -> bool`` run after each epoch; True
            stops training (their signature is checked before training).
        checkpoint_dir: save params, model state, optimizer state, key, epoch, step and
            history there every ``checkpoint_every`` epochs (and at the end), keeping the last
            ``keep_checkpoints`` (`jnet.checkpoint.CheckpointManager`).
        resume: continue from the latest checkpoint in ``checkpoint_dir`` (bit-identical to an
            uninterrupted run with the same arguments).
        params, state, opt_state: start from these instead of ``model.init`` /
            ``optimizer.init`` (checked against the model's structure and shapes; copied,
            never donated).
        scan: run each epoch as `lax.scan` calls (default: when the data fits on the device).
        steps_per_call: with ``scan``, steps per compiled call (default: the whole epoch); the
            progress bar advances after each call.
        validation_batch_size: batch size of the validation pass (None: all at once).
        check_finite: check once, before training, that the data holds no NaN / inf.
        live_plot: redraw the history plot after each epoch: in place in a notebook, else
            into a PNG (``live_plot="path.png"``, default ``history.png`` in the checkpoint
            directory or the working directory).
        verbose: 1 shows a tqdm progress bar, 0 is silent.
        mesh: train on several devices: a `jax.sharding.Mesh` or a `jnet.distributed` plan
            (``data_parallel()``, ``fsdp()``) splits each batch over its devices; batch_size
            must be a multiple of their count. Same results as one device, up to rounding.
        population: ``{hyperparameter: [P values]}``: train P models at once (module
            docstring).

    Returns:
        A `FitResult` (params, state, opt_state, history, epoch, step, key, timing).

    Raises:
        ArgumentError / ArgumentTypeError: a bad argument (named), before any training.
        DataError: mismatched lengths, a bad mask, labels out of range, NaN / inf in the data.
        TrainingDiverged: the loss became NaN / inf; the message names the epoch and step and
            ``err.result`` holds the parameters from before that step.
    """
    with entry_point("jnet.fit"):
        return _Run(dict(locals())).train()
