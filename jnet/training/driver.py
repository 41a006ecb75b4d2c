"""`fit`: a Keras-familiar driver around the pure step.

`fit` checks everything once (`jnet.training.setup`), builds the initial trees, and hands
the run to `jnet.training.trainer.Trainer`: compiled epochs (`jnet.training.loop`), one host
read per epoch, validation, the `History`, and the callbacks (`jnet.callbacks`: early
stopping, checkpoints and exact resume, live plots, your own).

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
holds ``(P,)`` values per epoch. Early stopping stops when EVERY member would have stopped,
and with ``restore_best_weights`` each member gets back its own best epoch's weights. A member
that diverges (NaN / inf loss, parameters or optimizer state) keeps its last good parameters
(logged as NaN from then on, with a warning); the run raises `TrainingDiverged` only when all
members have diverged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax

from jnet.errors import ArgumentError, entry_point
from jnet.layers.base import Layer
from jnet.training import checks, deprecated
from jnet.training.callbacks import Callback, as_callbacks
from jnet.training.early_stopping import EarlyStopping, as_early_stopping
from jnet.training.options import Options, as_options
from jnet.training.result import FitResult
from jnet.training.setup import check_budget, resolve
from jnet.training.step import LossFn
from jnet.training.trainer import Trainer
from jnet.typing import OptimizerLike

OptimizerArg = str | OptimizerLike | Callable[..., OptimizerLike]
"""What `fit` accepts as its optimizer: an optimizer, the name of a `jnet.optim` rule, or
(with ``population=``) a function ``make_optimizer(**hyperparameters) -> optimizer``."""

_TRACER_ERRORS = (jax.errors.UnexpectedTracerError, jax.errors.ConcretizationTypeError,
                  jax.errors.TracerArrayConversionError, jax.errors.TracerBoolConversionError,
                  jax.errors.TracerIntegerConversionError)


def fit(
    model: Layer, optimizer: OptimizerArg, x: Any, y: Any = None, *,
    epochs: int | None = None, steps: int | None = None, batch_size: int | None = 32,
    key: Any = None, mask: Any = None, validation_data: tuple | None = None,
    loss: LossFn | None = None, metrics: Sequence[Any] | None = None, shuffle: bool = True,
    callbacks: Sequence[Callback | Callable[..., Any]] | None = None,
    early_stopping: EarlyStopping | int | None = None, verbose: int = 1,
    population: dict[str, Sequence[Any]] | None = None, mesh: Any = None,
    options: Options | None = None, **deprecated_keywords: Any,
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
            content (``batch_size``, ``shuffle``, ``mask`` and the data options apply to
            arrays only).
        epochs: total epochs (a resumed run continues up to this count); or
        steps: a budget of updates instead (exactly one of the two); the last epoch may be
            partial.
        batch_size: None = full batch (gradient descent), 1 = per-example SGD, k = mini-batches
            (default 32, as Keras). Larger than N: N, with a warning.
        key: ONE PRNG key or an int seed (a signed 64-bit int); everything random derives from it:
            init, shuffles, dropout.
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
        callbacks: `jnet.callbacks.Callback` objects (`Checkpoint`, `LivePlot`,
            `EarlyStopping`, your own) or plain functions ``cb(epoch, logs, history) -> bool``
            run after each epoch; True stops training (checked before training).
        early_stopping: ``EarlyStopping(monitor=..., patience=...)`` or an int patience (the
            same as passing the `EarlyStopping` in ``callbacks``).
        verbose: 1 shows a tqdm progress bar, 0 is silent.
        population: ``{hyperparameter: [P values]}``: train P models at once (module
            docstring).
        mesh: train on several devices: a `jax.sharding.Mesh` or a `jnet.distributed` plan
            (``data_parallel()``, ``fsdp()``) splits each batch over its devices; batch_size
            must be a multiple of their count. Same results as one device, up to rounding.
        options: a `jnet.training.Options` with the rarely used settings (scan,
            steps_per_call, validation_batch_size, check_finite, drop_remainder, initial
            params / state / opt_state, the persistent compilation_cache directory).
        **deprecated_keywords: the v0.2 keywords ``checkpoint_dir``, ``checkpoint_every``,
            ``keep_checkpoints``, ``resume``, ``live_plot`` and the fields of `Options`: they
            work until jnet 0.4, with a `DeprecationWarning` naming the replacement.

    Returns:
        A `FitResult` (params, state, opt_state, history, epoch, step, key, timing).

    Raises:
        ArgumentError / ArgumentTypeError: a bad argument (named), before any training; also
            when a JAX tracer reaches `fit` (it was called under `jax.vmap` / `jax.jit` /
            `jax.grad`: a traced x or y, epochs, or an optimizer, model or loss built from a
            traced hyperparameter), naming where the tracer sits (use ``population=``).
        DataError: mismatched lengths, a bad mask, labels out of range, NaN / inf in the data.
        CheckpointError: a `Checkpoint` directory that cannot be written or has no room for
            one checkpoint (before training).
        TrainingDiverged: the loss, parameters or optimizer state became NaN / inf; the
            message names the epoch and step and ``err.result`` holds the parameters from
            before that step.
        TrainingInterrupted: something else raised after training started (a data generator,
            a callback); ``err.result`` holds the run so far. A jnet error raised then (a bad
            batch, a checkpoint that cannot be written) keeps its class and carries
            ``err.result`` too.
    """
    with entry_point("jnet.fit"):
        # Before anything else: a traced value fails far from here, as a raw JAX error.
        checks.no_tracers("jnet.fit", checks.FIT_FIX, model=model, optimizer=optimizer,
                          x=x, y=y, epochs=epochs, steps=steps, batch_size=batch_size, key=key,
                          mask=mask, validation_data=validation_data, loss=loss,
                          metrics=metrics, shuffle=shuffle, callbacks=callbacks,
                          early_stopping=early_stopping, verbose=verbose,
                          population=population, options=options, **deprecated_keywords)
        options, first, last = deprecated.translate(deprecated_keywords, as_options(options))
        check_budget(epochs, steps)
        stopper = as_early_stopping(early_stopping)
        chosen = as_callbacks([*([stopper] if stopper else []), *first,
                               *as_callbacks(callbacks), *last])
        try:
            setup = resolve(model, optimizer, x, y, key=key, mask=mask, batch_size=batch_size,
                            validation_data=validation_data, loss=loss, metrics=metrics,
                            population=population, mesh=mesh, options=options)
            return Trainer(setup, options, chosen, epochs=epochs, steps=steps,
                           shuffle=shuffle, mesh=mesh, verbose=verbose).train()
        except _TRACER_ERRORS as err:
            raise ArgumentError("jnet.fit was called inside jax.vmap / jax.jit / jax.grad (a "
                                "traced value reached it). " + checks.FIT_FIX) from err
