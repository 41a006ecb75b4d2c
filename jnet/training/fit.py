"""`fit`, `evaluate` and `predict`: a Keras-familiar driver around the pure step.

`fit` is a loop over epochs; inside an epoch, everything is compiled:

- In-memory data that fits on the device (the default when it does, ``scan=True``) runs each
  epoch as ONE `jax.lax.scan` over its steps: the shuffle, the gathers of each batch and every
  update happen in a single compiled call, so even per-example SGD (``batch_size=1``) is not a
  Python loop. ``steps_per_call=K`` splits the epoch into scans of K steps so the progress bar
  moves within long epochs (the last chunk is padded with inactive steps: no recompilation).
- ``scan=False``, or an iterable of batches, calls the jitted step once per batch.

Both paths run the same step body, so they give the same parameters. Metrics stay on the device
until the end of an epoch (or chunk): one host read per logging interval, not per step.

Randomness is derived, never chained: with ``k_init, k_train = split(key)``, epoch e shuffles
with ``split(fold_in(k_train, e))[0]`` and step s of it drops out with
``fold_in(split(fold_in(k_train, e))[1], s)``. A run resumed from epoch k therefore replays
nothing and ends with bit-identical parameters.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnet.layers.base import Layer, abstract_init
from jnet.training import data as D
from jnet.training.callbacks import EarlyStopping, as_early_stopping
from jnet.training.history import History, LivePlot
from jnet.training.metrics import Metric
from jnet.training.progress import Progress
from jnet.training.step import (
    LossFn,
    learning_rate,
    make_eval_step,
    make_train_step,
    model_metrics,
    resolve_loss,
)

PyTree = Any
Callback = Callable[[int, dict, History], bool]


class FitResult(NamedTuple):
    """What `fit` returns; a pytree, so ``jnet.checkpoint.save(path, result)`` stores it all.

    Attributes:
        params, state, opt_state: the trained parameters, model state and optimizer state
            (params / state of the best epoch when early stopping restored them).
        history: per-epoch logs, ``history.plot()`` draws them.
        epoch: epochs completed.
        step: optimizer steps taken.
        key: the base PRNG key the run was derived from (pass it again to resume).
    """

    params: PyTree
    state: PyTree
    opt_state: PyTree
    history: History
    epoch: int
    step: int
    key: jax.Array


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or inf; ``.result`` holds the run up to the last good step."""

    def __init__(self, message: str, result: FitResult):
        super().__init__(message)
        self.result = result


jax.tree_util.register_pytree_node(
    History, lambda h: ((h.history,), None), lambda _, children: History(children[0])
)


# --------------------------------------------------------------------------------------------
# The compiled pieces


def _guarded_step(train_step: Callable) -> Callable:
    """Wrap the train step so that a non-finite loss (or an inactive padding step) keeps the
    previous params / state / opt_state, and sets the `bad` flag for the rest of the run.

    ``carry = (params, state, opt_state, bad)``. Selecting old vs new costs one `where` per
    parameter, and gives back exactly the parameters before the step that diverged.
    """

    def step(carry, batch, key, active):
        params, state, opt_state, bad = carry
        new = train_step(params, state, opt_state, batch, key)
        logs = new[3]
        finite = jnp.isfinite(logs["loss"])
        ok = active & ~bad & finite
        keep = lambda n, o: jax.tree.map(lambda a, b: jnp.where(ok, a, b), n, o)  # noqa: E731
        carry = (keep(new[0], params), keep(new[1], state), keep(new[2], opt_state),
                 bad | (active & ~finite))
        logs = dict(logs, ok=ok, diverged=active & ~bad & ~finite)
        return carry, logs

    return step


def _scan_steps(step: Callable) -> Callable:
    """``(carry, x, y, idx, weight, keys, active) -> (carry, stacked logs)``: one `lax.scan`."""

    def run(carry, x, y, idx, weight, keys, active):
        def body(carry, inputs):
            i, w, k, a = inputs
            return step(carry, (x[i], y[i], w), k, a)

        return jax.lax.scan(body, carry, (idx, weight, keys, active))

    return run


def _plan_fn(n: int, batch_size: int, drop_remainder: bool, shuffle: bool, chunk: int) -> Callable:
    """``(k_train, epoch) -> (idx, weight, keys, active)`` with shapes ``(chunks, K, ...)``."""
    steps = D.steps_per_epoch(n, batch_size, drop_remainder)
    chunks = math.ceil(steps / chunk)

    def plan(k_train, epoch):
        k_shuffle, k_drop = _epoch_keys(k_train, epoch)
        idx, weight = D.epoch_plan(k_shuffle if shuffle else None, n, batch_size,
                                   drop_remainder=drop_remainder)
        keys = jax.vmap(lambda s: jax.random.fold_in(k_drop, s))(jnp.arange(steps))
        pad = chunks * chunk - steps  # inactive steps: the update is discarded, see _guarded_step
        active = jnp.arange(chunks * chunk) < steps
        if pad:
            idx = jnp.concatenate([idx, jnp.zeros((pad, batch_size), idx.dtype)])
            weight = jnp.concatenate([weight, jnp.zeros((pad, batch_size), weight.dtype)])
            keys = jnp.concatenate([keys, keys[:pad]])
        shape = lambda a: a.reshape(chunks, chunk, *a.shape[1:])  # noqa: E731
        return shape(idx), shape(weight), shape(keys), shape(active)

    return plan


def _epoch_keys(k_train: jax.Array, epoch: int) -> jax.Array:
    """``(k_shuffle, k_drop)`` of an epoch: derived from the epoch number, never chained, so a
    resumed run replays nothing (see the module docstring)."""
    return jax.random.split(jax.random.fold_in(k_train, epoch))


def _reduce_logs(logs: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-step logs (stacked) -> epoch values: example-weighted means over the steps that ran."""
    weight = jnp.where(logs["ok"], logs["count"], 0.0)
    total = jnp.maximum(jnp.sum(weight), 1.0)
    out = {}
    for name, values in logs.items():
        if name in ("ok", "diverged", "count", "lr"):
            continue
        out[name] = jnp.sum(jnp.where(logs["ok"], values * weight, 0.0)) / total
    return out


def _epoch_of_scans(run, carry, x, y, plan, steps, progress):
    """One epoch as `lax.scan` calls over chunks of steps; returns the carry and stacked logs."""
    idx, weight, keys, active = plan
    chunks, chunk = idx.shape[:2]
    step_logs = []
    for c in range(chunks):
        carry, logs = run(carry, x, y, idx[c], weight[c], keys[c], active[c])
        step_logs.append(logs)
        if chunks > 1:
            jax.block_until_ready(carry[3])  # keep the bar honest per chunk
        progress.update(min(chunk, steps - c * chunk))
    return carry, jax.tree.map(lambda *v: jnp.concatenate(v), *step_logs)


def _epoch_of_steps(run, carry, x, y, plan, steps, progress):
    """One epoch, one jitted step per batch; NumPy data is gathered on the host."""
    idx, weight, keys = (a.reshape(-1, *a.shape[2:]) for a in plan[:3])
    if isinstance(x, np.ndarray):
        idx = np.asarray(idx)
    step_logs, active = [], jnp.asarray(True)
    for s in range(steps):
        carry, logs = run(carry, (x[idx[s]], y[idx[s]], weight[s]), keys[s], active)
        step_logs.append(logs)
        progress.update(1)
    return carry, jax.tree.map(lambda *v: jnp.stack(v), *step_logs)


def _epoch_of_iterable(run, carry, source, k_drop, epoch, progress):
    """One epoch over a user's iterable of batches, short batches padded to the first's size."""
    step_logs, size, active = [], None, jnp.asarray(True)
    for s, item in enumerate(source):
        batch = D.as_batch(item)
        size = size or int(jnp.shape(batch[0])[0])
        carry, logs = run(carry, D.pad_batch(batch, size), jax.random.fold_in(k_drop, s), active)
        step_logs.append(logs)
        progress.update(1)
    if not step_logs:
        raise ValueError(
            f"jnet.fit: the dataset yielded no batch in epoch {epoch + 1}. A one-shot iterator "
            "(a generator) is exhausted after the first epoch; pass a list, a re-iterable "
            "object, or a function epoch -> iterable."
        )
    return carry, jax.tree.map(lambda *v: jnp.stack(v), *step_logs)


def _array_epochs(step, x, y, k_train, plan, steps: int, scan: bool) -> Callable:
    """``(carry, epoch, progress) -> (carry, stacked logs)`` over in-memory arrays: the epoch as
    `lax.scan` calls (data copied to the device once, here) or one jitted step per batch."""
    if scan:
        run = jax.jit(_scan_steps(step), donate_argnums=0)
        xd, yd = jnp.asarray(x), jnp.asarray(y)
        return lambda carry, epoch, progress: _epoch_of_scans(
            run, carry, xd, yd, plan(k_train, epoch), steps, progress)
    run = jax.jit(step, donate_argnums=0)
    return lambda carry, epoch, progress: _epoch_of_steps(
        run, carry, x, y, plan(k_train, epoch), steps, progress)


def _iterable_epochs(step, source, k_train) -> Callable:
    """``(carry, epoch, progress) -> (carry, stacked logs)`` over a user's iterable of batches
    (or a function ``epoch -> iterable``), one jitted step per batch."""
    run = jax.jit(step, donate_argnums=0)
    return lambda carry, epoch, progress: _epoch_of_iterable(
        run, carry, source(epoch) if callable(source) else source, _epoch_keys(k_train, epoch)[1],
        epoch, progress)


def _peek_iterable(source: Any) -> tuple[Any, tuple[int, ...]]:
    """``(source, per-example input shape)`` read from the first batch; a one-shot iterator
    (a generator) gets that batch put back in front."""
    it = iter(source(0) if callable(source) else source)
    first = next(it)
    if it is source:
        source = itertools.chain([first], it)
    return source, tuple(jnp.shape(D.as_batch(first)[0])[1:])


def _diverged(carry, history: History, epoch: int, step_count: int, key: jax.Array,
              step_in_epoch: int, manager) -> TrainingDiverged:
    """The error for a non-finite loss at `step_in_epoch` (0-based) of `epoch` (0-based);
    `carry` holds the parameters from before that step (see `_guarded_step`)."""
    latest = manager.latest_step() if manager is not None else None
    where = f" The last checkpoint is epoch {latest} in {manager.directory}." if latest else ""
    return TrainingDiverged(
        f"jnet.fit: the training loss became NaN/inf at epoch {epoch + 1}, step "
        f"{step_in_epoch + 1} of the epoch (global step {step_count + 1}). Training stopped; "
        "err.result holds the parameters from before that step." + where +
        " Lower the learning rate, add gradient clipping, or check the loss inputs.",
        FitResult(*carry[:3], history, epoch, step_count, key),
    )


def _log_names(metric_fns, opt_state, has_validation: bool) -> list[str]:
    """The names `fit` logs each epoch, in order."""
    names = ["loss", *metric_fns]
    if learning_rate(opt_state) is not None:
        names.append("lr")
    if has_validation:
        names += [f"val_{k}" for k in ("loss", *metric_fns)]
    return names


def _restore(manager, epoch: int, like_parts: dict, names: list[str]):
    """Read checkpoint `epoch` into the structure of `like_parts` (params, state, ...); its
    early-stopping ``best`` entry comes back when the file holds one (whatever this run's
    early stopping, so a resumed run may switch it on or off)."""
    has_best = "best" in manager.restore(epoch)  # structure only; a one-off read at resume
    like = _checkpoint_tree(**like_parts, epoch=0, step=0, history={}, stopped=False,
                            best=({"params": like_parts["params"], "state": like_parts["state"],
                                   "epoch": 0} if has_best else None))
    like["history"] = {k: jax.ShapeDtypeStruct((epoch,), jnp.float32) for k in names}
    restored = manager.restore(epoch, like=like)
    history = History({k: [float(v) for v in np.asarray(restored["history"][k])] for k in names})
    return restored, history


# --------------------------------------------------------------------------------------------
# evaluate / predict


def _fits_on_device(*arrays: Any) -> bool:
    """Whether the data may be copied whole to the device (a quarter of its memory, or 1 GiB)."""
    size = sum(int(np.prod(np.shape(a))) * np.dtype(jnp.result_type(a)).itemsize
               for a in arrays if a is not None)
    stats = jax.local_devices()[0].memory_stats() or {}
    limit = stats.get("bytes_limit", 4 << 30) // 4
    return size <= limit


_COMPILED: OrderedDict[tuple, Any] = OrderedDict()
_COMPILED_MAX = 16


def _memo(key: tuple, build: Callable[[], Any]) -> Any:
    """``build()`` memoised under `key` (the 16 latest), so that calling `evaluate` / `predict`
    again on the same model reuses its compiled function instead of tracing and compiling
    anew (about 0.3 s for a small MLP, against ~1 ms to run it)."""
    try:
        hash(key)
    except TypeError:  # e.g. a metric object defining __eq__ without __hash__
        return build()
    if key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key]
    value = _COMPILED[key] = build()
    if len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return value


def _batched(fn: Callable, n: int, batch_size: int | None) -> Callable:
    """``fn(params, state, batch) -> tree`` mapped over the fixed-size batches of N examples."""
    bs = n if batch_size is None else max(1, min(int(batch_size), n))
    idx, weight = D.epoch_plan(None, n, bs)

    @jax.jit
    def run(params, state, x, y):
        def body(_, inputs):
            i, w = inputs
            return None, fn(params, state, (x[i], None if y is None else y[i], w))

        return jax.lax.scan(body, None, (idx, weight))[1]

    return run


class _Evaluator:
    """Compiled evaluation of one model / loss / metrics, reused across `fit`'s epochs."""

    def __init__(self, model: Layer, loss_fn: LossFn, metric_fns: dict[str, Metric]):
        self.eval_step = make_eval_step(model, loss_fn, metric_fns)
        self.metric_names = tuple(metric_fns)
        self._runs: dict[tuple[int, int | None], Callable] = {}

    def __call__(self, params, state, x, y, batch_size) -> dict[str, float]:
        n = D.check_arrays(x, y, where="jnet.evaluate", check_finite=False)
        run = self._runs.get((n, batch_size))
        if run is None:
            run = self._runs[(n, batch_size)] = _batched(self.eval_step, n, batch_size)
        logs = run(params, state, jnp.asarray(x), jnp.asarray(y))
        logs = jax.device_get(_reduce_logs(dict(logs, ok=jnp.ones_like(logs["count"], bool))))
        return {k: float(logs[k]) for k in ("loss", *self.metric_names)}


def evaluate(
    model: Layer,
    params: PyTree,
    state: PyTree,
    x: Any,
    y: Any,
    *,
    batch_size: int | None = 256,
    loss: LossFn | None = None,
    metrics: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Loss and metrics of a model on `(x, y)`, in evaluation mode (``train=False``).

    Returns ``{"loss": ..., "accuracy": ...}``: means over all N examples (computed in
    fixed-size batches, the last one padded and masked). Calling it again on the same model
    reuses the compiled function.

    Args:
        model, params, state: the model and its trained trees (e.g. ``result.params``).
        x, y: N examples on axis 0, as for `fit`.
        batch_size: examples per compiled batch (None: all N at once).
        loss: ``fn(outputs, targets) -> per-example losses``; default: the model's head.
        metrics: as in `fit` (default: accuracy for a classification head).
    """
    loss_fn = resolve_loss(model, loss, where="jnet.evaluate")
    metric_fns = model_metrics(model, metrics)
    evaluator = _memo(("evaluate", model, loss_fn, tuple(metric_fns.items())),
                      lambda: _Evaluator(model, loss_fn, metric_fns))
    return evaluator(params, state, x, y, batch_size)


def predict(
    model: Layer,
    params: PyTree,
    state: PyTree,
    x: Any,
    *,
    batch_size: int | None = 256,
    raw: bool = False,
) -> jax.Array:
    """Model outputs for every example of `x`, in evaluation mode, computed in batches.

    With an output head, returns ``head.link(outputs)``: class probabilities for
    `ClassificationOutput`, values for `RegressionOutput` (``raw=True`` gives the logits).
    Without one, the raw outputs. Shape ``(N, *out_shape)``. `batch_size` is the number of
    examples per compiled batch (None: all N at once); calling it again on the same model and
    shapes reuses the compiled function.
    """
    n = D.check_arrays(x, None, where="jnet.predict", check_finite=False)
    link = (lambda o: o) if raw or model.head is None else model.head.link

    def step(params, state, batch):
        outputs, _ = model.apply(params, state, batch[0], train=False)
        return link(outputs)

    run = _memo(("predict", model, raw, n, batch_size), lambda: _batched(step, n, batch_size))
    out = run(params, state, jnp.asarray(x), None)
    return out.reshape(-1, *out.shape[2:])[:n]


# --------------------------------------------------------------------------------------------
# fit


def _check_labels(model: Layer, out_shape: Any, y: Any) -> None:
    """Integer labels must lie in [0, classes) and one-hot targets must have `classes` columns."""
    if model.head is None or model.head.task != "classification" or y is None:
        return
    classes = int(out_shape[-1])
    if jnp.issubdtype(jnp.result_type(y), jnp.integer):
        lo, hi = int(np.min(y)), int(np.max(y))
        if lo < 0 or hi >= classes:
            raise ValueError(
                f"jnet.fit: integer labels must lie in [0, {classes}) for a model with {classes} "
                f"outputs, got labels from {lo} to {hi}. Re-encode the labels (e.g. "
                "`np.unique(y, return_inverse=True)[1]`) or give the last Dense more units."
            )
    elif jnp.ndim(y) >= 2 and jnp.shape(y)[-1] != classes:
        raise ValueError(
            f"jnet.fit: one-hot / soft targets must have {classes} columns (the model's outputs), "
            f"got y.shape={tuple(jnp.shape(y))}."
        )


def _initial_trees(model: Layer, key: jax.Array, in_shape: tuple, params: PyTree,
                   state: PyTree) -> tuple[Any, PyTree, PyTree]:
    """``(out_shape, params, state)`` to start from: the user's trees where given, the rest from
    ``model.init(key)`` (run abstractly when both are given, so nothing is allocated)."""
    in_shape = None if model.input_shape is not None else in_shape
    if params is None or state is None:
        out_shape, init_params, init_state = model.init(key, in_shape)
        return (out_shape, init_params if params is None else params,
                init_state if state is None else state)
    return abstract_init(model, key, in_shape)[0], params, state


def _key_bits(key: jax.Array) -> np.ndarray:
    """The bits of a typed (``jax.random.key``) or raw (``PRNGKey``) key, for comparison."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key)


def _copy(tree: PyTree) -> PyTree:
    """Fresh buffers, so that donating the training carry cannot delete the user's arrays."""
    return jax.tree.map(lambda a: jnp.array(a, copy=True) if isinstance(a, jax.Array) else a, tree)


def _checkpoint_tree(params, state, opt_state, key, epoch, step, history, stopped, best):
    """What one checkpoint of `fit` holds (the history as float32 arrays of length `epoch`)."""
    tree = {
        "params": params, "state": state, "opt_state": opt_state, "key": key,
        "epoch": epoch, "step": step, "stopped": int(stopped),
        "history": {k: np.asarray(v, np.float32) for k, v in history.items()},
    }
    if best is not None:
        tree["best"] = best
    return tree


def fit(
    model: Layer,
    optimizer: Any,
    x: Any,
    y: Any = None,
    *,
    epochs: int,
    batch_size: int | None = 32,
    key: jax.Array,
    validation_data: tuple[Any, Any] | None = None,
    loss: LossFn | None = None,
    metrics: Sequence[Any] | None = None,
    shuffle: bool = True,
    drop_remainder: bool = False,
    early_stopping: EarlyStopping | int | None = None,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    keep_checkpoints: int = 3,
    resume: bool = False,
    params: PyTree = None,
    state: PyTree = None,
    opt_state: PyTree = None,
    scan: bool | None = None,
    steps_per_call: int | None = None,
    validation_batch_size: int | None = 256,
    check_finite: bool = True,
    live_plot: bool = False,
    verbose: int = 1,
    mesh: Any = None,
) -> FitResult:
    """Train `model` with `optimizer` on `(x, y)`; returns a `FitResult`.

    Args:
        model: a `Layer`. With an output head (`ClassificationOutput`, `RegressionOutput`) the
            loss comes from it; otherwise pass ``loss``.
        optimizer: a jnet optimizer (``init(params)``, ``update(grads, opt_state, params)``).
        x, y: in-memory arrays (NumPy or JAX) with N examples on axis 0. Or, with ``y=None``,
            ``x`` is an iterable of batches ``(x, y)`` / ``(x, y, weight)`` (re-iterated each
            epoch) or a function ``epoch -> iterable``: any data pipeline works. Short batches
            of an iterable are padded to the first batch's size (no recompilation); its batches
            decide the batch size, order and content (``batch_size``, ``shuffle``,
            ``drop_remainder`` and ``check_finite`` apply to arrays only).
        epochs: total epochs (a resumed run continues up to this count).
        batch_size: None = full batch (gradient descent), 1 = per-example SGD, k = mini-batches
            (default 32, as Keras). Larger than N: N, with a warning.
        key: the PRNG key everything random derives from: init, shuffles, dropout.
        validation_data: ``(x_val, y_val)``, evaluated after each epoch into ``val_*`` logs.
        loss: ``fn(outputs, targets) -> per-example losses``; overrides the head's loss.
        metrics: names (``"accuracy"``), functions ``fn(outputs, targets) -> per-example
            values`` (logged under ``fn.__name__``) or a ``{name: fn}`` dict. Default: accuracy
            for a classification head.
        shuffle: reshuffle every epoch (with a key derived from `key` and the epoch).
        drop_remainder: drop a short last batch instead of padding it with masked examples.
        early_stopping: ``EarlyStopping(monitor=..., patience=...)`` or an int patience.
        callbacks: functions ``cb(epoch, logs, history) -> bool`` run after each epoch; True
            stops training.
        checkpoint_dir: save params, model state, optimizer state, key, epoch, step and
            history there every ``checkpoint_every`` epochs (and at the end), keeping the last
            ``keep_checkpoints`` (`jnet.checkpoint.CheckpointManager`).
        resume: continue from the latest checkpoint in ``checkpoint_dir`` (bit-identical to an
            uninterrupted run with the same arguments).
        params, state, opt_state: start from these instead of ``model.init`` /
            ``optimizer.init``; any one left None comes from those (they are copied, never
            donated).
        scan: run each epoch as one `lax.scan` (default: when the data fits on the device).
        steps_per_call: with ``scan``, steps per compiled call (default: the whole epoch); the
            progress bar advances after each call.
        validation_batch_size: batch size of the validation pass (None: all at once).
        check_finite: check once, before training, that the data holds no NaN / inf.
        live_plot: redraw the history plot after each epoch (in a notebook).
        verbose: 1 shows a tqdm progress bar, 0 is silent.
        mesh: train on several devices: a `jax.sharding.Mesh` or a `jnet.distributed` plan
            (``data_parallel()``, ``fsdp()``) splits each batch over its devices; batch_size
            must be a multiple of their count. Same results as one device, up to rounding.

    Raises:
        ValueError: mismatched lengths, labels out of range, NaN / inf in the data, no loss.
        TrainingDiverged: the loss became NaN / inf; the message names the epoch and step and
            ``err.result`` holds the parameters from before that step.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"jnet.fit: epochs must be a non-negative int, got {epochs!r}.")
    loss_fn = resolve_loss(model, loss, where="jnet.fit")
    metric_fns = model_metrics(model, metrics)
    stopper = as_early_stopping(early_stopping)
    if stopper is not None:
        stopper = stopper.resolved(validation_data is not None)
    callbacks = [*callbacks, *([LivePlot()] if live_plot else [])]

    # ---- data
    iterable = y is None and not hasattr(x, "shape")
    if iterable:
        if scan:
            raise ValueError("jnet.fit: scan=True needs in-memory arrays x, y, not an iterable.")
        x, in_shape = _peek_iterable(x)
    else:
        n = D.check_arrays(x, y, check_finite=check_finite)
        batch_size = D.resolve_batch_size(batch_size, n)
        in_shape = tuple(jnp.shape(x)[1:])
        scan = _fits_on_device(x, y) if scan is None else scan
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("jnet.fit: validation_data must be a tuple (x_val, y_val).")
        D.check_arrays(*validation_data, where="jnet.fit (validation_data)",
                       check_finite=check_finite)

    # ---- parameters and keys
    k_init, k_train = jax.random.split(key)
    out_shape, params, state = _initial_trees(model, k_init, in_shape, params, state)
    if not iterable:
        _check_labels(model, out_shape, y)
    if validation_data is not None:
        _check_labels(model, out_shape, validation_data[1])
        validation_data = tuple(jnp.asarray(a) for a in validation_data)  # once, not per epoch
    params, state = _copy(params), _copy(state)
    opt_state = optimizer.init(params) if opt_state is None else _copy(opt_state)
    names = _log_names(metric_fns, opt_state, validation_data is not None)
    if stopper is not None and stopper.monitor not in names:
        raise ValueError(
            f"jnet.fit: early stopping monitors {stopper.monitor!r}, which is not logged; "
            f"logged values: {sorted(names)}. Pass validation_data or "
            "EarlyStopping(monitor=...) with one of those."
        )

    history, epoch, step_count, stopped, best = History(), 0, 0, False, None
    manager = None
    if checkpoint_dir is not None:
        from jnet.checkpoint import CheckpointManager

        # keep_best=0: exactly the last `keep_checkpoints` files, as documented (the best
        # weights of early stopping travel inside each checkpoint anyway)
        manager = CheckpointManager(checkpoint_dir, keep_last=keep_checkpoints, keep_best=0)
    if resume:
        if manager is None:
            raise ValueError("jnet.fit: resume=True needs checkpoint_dir= (where to resume from).")
        latest = manager.latest_step()
        if latest is not None:
            restored, history = _restore(
                manager, latest, dict(params=params, state=state, opt_state=opt_state, key=key),
                names)
            params, state, opt_state = restored["params"], restored["state"], restored["opt_state"]
            epoch, step_count = int(restored["epoch"]), int(restored["step"])
            stopped = bool(int(restored["stopped"]))
            if stopper is not None and stopper.restore_best_weights:
                best = restored.get("best")
                if best is None:
                    warnings.warn(
                        f"jnet.fit: checkpoint {latest} holds no best weights (it was written "
                        "without early stopping); restore_best_weights can only return the "
                        f"weights of an epoch after {latest}.", stacklevel=2)
            if not np.array_equal(_key_bits(restored["key"]), _key_bits(key)):
                warnings.warn("jnet.fit: resuming with a different key than the checkpoint's; "
                              "using the checkpoint's key for an exact continuation.", stacklevel=2)
                key = restored["key"]
                k_train = jax.random.split(key)[1]

    # ---- compiled functions
    train_step = make_train_step(model, optimizer, loss_fn, metric_fns)
    if mesh is not None:  # split batches (and maybe params) over devices: jnet.distributed
        from jnet.distributed import for_fit

        train_step, (params, state, opt_state) = for_fit(
            mesh, train_step, (params, state, opt_state), None if iterable else batch_size)
    step = _guarded_step(train_step)
    evaluator = _Evaluator(model, loss_fn, metric_fns) if validation_data is not None else None
    if iterable:
        steps = len(x) if hasattr(x, "__len__") else None
        run_epoch = _iterable_epochs(step, x, k_train)
    else:
        steps = D.steps_per_epoch(n, batch_size, drop_remainder)
        chunk = steps if not scan or steps_per_call is None else max(1, min(steps_per_call, steps))
        plan = jax.jit(_plan_fn(n, batch_size, drop_remainder, shuffle, chunk))
        run_epoch = _array_epochs(step, x, y, k_train, plan, steps, scan)

    total = None if steps is None else epochs * steps
    progress = Progress(total, initial=min(step_count, total or step_count), epochs=epochs,
                        verbose=verbose)
    carry = (params, state, opt_state, jnp.zeros((), bool))
    try:
        while epoch < epochs and not stopped:
            carry, stacked = run_epoch(carry, epoch, progress)  # logs stay on the device
            epoch_logs, diverged, ran, lr = jax.device_get(  # the epoch's one host read
                (_reduce_logs(stacked), stacked["diverged"], jnp.sum(stacked["ok"]),
                 learning_rate(carry[2])))
            step_count += int(ran)
            if diverged.any():
                raise _diverged(carry, history, epoch, step_count, key, int(np.argmax(diverged)),
                                manager)
            logs = {k: float(epoch_logs[k]) for k in ("loss", *metric_fns)}
            if lr is not None:
                logs["lr"] = float(lr)
            if evaluator is not None:
                val = evaluator(carry[0], carry[1], *validation_data, validation_batch_size)
                logs.update({f"val_{k}": v for k, v in val.items()})
            history.append(logs)
            epoch += 1

            if stopper is not None:
                values = history[stopper.monitor]
                if stopper.restore_best_weights and stopper.best_epoch(values) == epoch - 1:
                    best = {"params": _copy(carry[0]), "state": _copy(carry[1]), "epoch": epoch}
                stopped = stopper.should_stop(values)
            for cb in callbacks:
                stopped = bool(cb(epoch - 1, dict(logs), history)) or stopped
            progress.epoch_end(epoch - 1, logs)
            if manager is not None and (epoch % checkpoint_every == 0 or epoch == epochs
                                        or stopped):
                manager.save(epoch, _checkpoint_tree(*carry[:3], key, epoch, step_count,
                                                     history, stopped, best), metrics=logs)
    finally:
        progress.close()

    params, state, opt_state = carry[:3]
    if best is not None and stopper is not None and stopper.restore_best_weights:
        params, state = best["params"], best["state"]
        if verbose:
            best_epoch = int(best["epoch"])
            value = history[stopper.monitor][best_epoch - 1]
            progress.write(f"early stopping: restored the weights of epoch {best_epoch} "
                           f"({stopper.monitor}={value:.4g})")
    return FitResult(params, state, opt_state, history, epoch, step_count, key)
