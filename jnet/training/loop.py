"""The epoch loop of `jnet.fit`: the compiled pieces and the three ways to run an epoch.

Inside an epoch, everything is compiled:

- In-memory data on the device (``scan=True``) runs each epoch as ONE `jax.lax.scan` over its
  steps: the gathers of each batch and every update happen in a single compiled call, so even
  per-example SGD (``batch_size=1``) is not a Python loop. ``steps_per_call=K`` splits the epoch
  into scans of K steps so the progress bar moves within long epochs (the last chunk is padded
  with inactive steps: no recompilation).
- ``scan=False`` calls the jitted step once per batch (NumPy data is gathered on the host).
- An iterable of batches calls the jitted step once per batch it yields.

All three run the same guarded step body on a `TrainState`, so they give the same parameters.
Metrics stay on the device until the end of an epoch (or chunk): one host read per logging
interval, not per step.

Randomness is derived, never chained: with ``k_init, k_train = split(key)``, epoch e shuffles
with ``split(fold_in(k_train, e))[0]`` and step s of it drops out with
``fold_in(split(fold_in(k_train, e))[1], s)``. A run resumed from epoch k therefore replays
nothing and ends with bit-identical parameters.

A population of P members is the same program under `jax.vmap`: every compiled function takes
the members' hyperparameters ``hyper`` (a dict of arrays, ``{}`` for a single run) first and
builds its optimizer from them inside the trace, and `Program` wraps each in ``jax.vmap`` over
the hyperparameters, the `TrainState`, the members' keys and their batch plans (the data is
shared). Logs then carry a leading member axis; the step axis is always last.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import DataError, Error
from jnet.training import data as D
from jnet.typing import PyTree


class TrainState(NamedTuple):
    """What an epoch carries from step to step.

    Attributes:
        params, state, opt_state: the model's parameters and state, the optimizer's state.
        diverged: bool, set once the loss was NaN / inf (the trees then stay as before that
            step); shape ``(P,)`` for a population.
    """

    params: PyTree
    state: PyTree
    opt_state: PyTree
    diverged: jax.Array


def all_finite(*trees: PyTree) -> jax.Array:
    """One boolean: every float leaf of `trees` is finite (XLA fuses the reductions into one
    pass; integer leaves such as step counters are skipped)."""
    leaves = [leaf for tree in trees for leaf in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


def guarded(train_step: Callable) -> Callable:
    """``(ts, batch, key, active) -> (ts, logs)``: `train_step` on a `TrainState`, keeping the
    previous trees when the step is not finite or inactive (padding of a chunk, or past a
    ``steps=`` budget), and setting `diverged` for the rest of the run.

    A step is finite when its loss AND the updated params, model state and optimizer state
    are: a finite loss with a NaN gradient would otherwise commit NaN parameters. The check is
    one fused reduction inside the compiled step (no host sync); selecting old vs new costs one
    `where` per array and gives back exactly the trees from before the step that diverged.
    """

    def step(ts: TrainState, batch, key, active):
        params, state, opt_state, logs = train_step(ts.params, ts.state, ts.opt_state, batch, key)
        finite = jnp.isfinite(logs["loss"]) & all_finite(params, state, opt_state)
        ok = active & ~ts.diverged & finite
        keep = lambda n, o: jax.tree.map(lambda a, b: jnp.where(ok, a, b), n, o)  # noqa: E731
        new = TrainState(keep(params, ts.params), keep(state, ts.state),
                         keep(opt_state, ts.opt_state), ts.diverged | (active & ~finite))
        return new, dict(logs, ok=ok, active=active, diverged=active & ~ts.diverged & ~finite)

    return step


def fresh(tree: PyTree) -> PyTree:
    """The arrays of `tree` copied into new buffers: what a callback or the caller keeps of
    a training tree, since the next compiled call donates (deletes) the old ones."""
    return jax.tree.map(lambda a: jnp.array(a, copy=True) if isinstance(a, jax.Array) else a,
                        tree)


class EpochFailed(Error):
    """Raised by an epoch runner when something fails within an epoch (the data source, a
    batch, a later compilation), carrying the training state after the last step that ran;
    the driver turns it into the user's error with the run so far. Raised ``from`` the
    original exception.

    Attributes:
        ts: the `TrainState` after the last completed step.
        steps: the steps completed in this epoch before the failure.
    """

    def __init__(self, ts: TrainState, steps: int):
        super().__init__(f"failed after {steps} step(s) of the epoch")
        self.ts = ts
        self.steps = steps


def epoch_keys(k_train: jax.Array, epoch: Any) -> jax.Array:
    """``(k_shuffle, k_drop)`` of an epoch: derived from the epoch number, never chained, so a
    resumed run replays nothing (see the module docstring)."""
    return jax.random.split(jax.random.fold_in(k_train, epoch))


def reduce_logs(logs: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Stacked per-step logs (step axis last) -> epoch values: example-weighted means over the
    steps that ran (a member axis, if any, is kept)."""
    weight = jnp.where(logs["ok"], logs["count"], 0.0)
    total = jnp.maximum(jnp.sum(weight, axis=-1), 1.0)
    return {name: jnp.sum(jnp.where(logs["ok"], values * weight, 0.0), axis=-1) / total
            for name, values in logs.items()
            if name not in ("ok", "active", "diverged", "count")}


class Clock:
    """Seconds spent compiling, summed over the `Compiled` functions of one run."""

    def __init__(self):
        self.compile_s = 0.0


class Compiled:
    """A jitted function compiled ahead of time (``lower(...).compile()``) on its first call
    for each argument signature, so that compile time is measured apart from run time."""

    def __init__(self, fn: Callable, clock: Clock, **jit_kw: Any):
        self.jitted = jax.jit(fn, **jit_kw)
        self.clock = clock
        self._compiled: dict[Any, Any] = {}

    def __call__(self, *args: Any) -> Any:
        leaves, tree = jax.tree.flatten(args)
        signature = (tree, tuple((jnp.shape(a), jnp.result_type(a), getattr(a, "sharding", None))
                                 for a in leaves))
        compiled = self._compiled.get(signature)
        if compiled is None:
            start = time.perf_counter()
            compiled = self._compiled[signature] = self.jitted.lower(*args).compile()
            self.clock.compile_s += time.perf_counter() - start
        return compiled(*args)


class Program:
    """The compiled pieces of one `fit`, for one model or a population of them.

    Args:
        build_step: ``hyper -> guarded step`` (see `guarded`); ``hyper`` is ``{}`` for a
            single run, the member's hyperparameters (traced) inside a population's vmap.
        population: whether the state, keys and hyperparameters carry a member axis.
        clock: where compile time is added up.
    """

    def __init__(self, build_step: Callable[[dict], Callable], *, population: bool,
                 clock: Clock):
        self.build_step = build_step
        self.population = population
        self.clock = clock

    def members(self, fn: Callable, in_axes: tuple) -> Callable:
        """`fn` vmapped over the members (`in_axes` as for `jax.vmap`), or `fn` itself."""
        return jax.vmap(fn, in_axes=in_axes) if self.population else fn

    def compiled(self, fn: Callable, in_axes: tuple, **jit_kw: Any) -> Compiled:
        return Compiled(self.members(fn, in_axes), self.clock, **jit_kw)

    def fold_in(self, keys: jax.Array, s: int) -> jax.Array:
        return self.members(jax.random.fold_in, (0, None))(keys, s)


class ArrayEpochs:
    """Epochs over prepared in-memory `D.Arrays`: ``(ts, epoch, limit, progress) -> (ts, logs)``
    with ``limit`` the number of steps to run this epoch (None or all, or what a ``steps=``
    budget leaves)."""

    def __init__(self, program: Program, hyper: dict, data: D.Arrays, k_train: jax.Array, *,
                 batch_size: int, drop_remainder: bool, shuffle: bool, scan: bool,
                 steps_per_call: int | None):
        self.program, self.hyper, self.k_train, self.scan = program, hyper, k_train, scan
        self.steps = D.steps_per_epoch(data.n, batch_size, drop_remainder)
        self.chunk = self.steps if not scan or steps_per_call is None else min(
            steps_per_call, self.steps)
        self.data = data.on_device() if scan else data
        plan = _plan_fn(data.n, batch_size, drop_remainder, shuffle, self.steps, self.chunk)
        self.plan = jax.jit(program.members(plan, (0, None, None)))
        if scan:
            self.run = program.compiled(self._scan_chunk, (0, 0, None, 0, 0, 0, 0),
                                        donate_argnums=1)
        else:
            self.run = program.compiled(self._one_step, (0, 0, 0, 0, None), donate_argnums=1)

    def _scan_chunk(self, hyper, ts, data, idx, weight, keys, active):
        step = self.program.build_step(hyper)

        def body(ts, inputs):
            i, w, k, a = inputs
            return step(ts, data.take(i, w), k, a)

        return jax.lax.scan(body, ts, (idx, weight, keys, active))

    def _one_step(self, hyper, ts, batch, key, active):
        return self.program.build_step(hyper)(ts, batch, key, active)

    def __call__(self, ts: TrainState, epoch: int, limit: int | None,
                 progress) -> tuple[TrainState, dict]:
        limit = self.steps if limit is None else limit
        idx, weight, keys, active = self.plan(self.k_train, epoch, limit)
        if self.scan:
            return self._scans(ts, idx, weight, keys, active, limit, progress)
        return self._steps(ts, idx, weight, keys, limit, progress)

    def _scans(self, ts, idx, weight, keys, active, limit, progress):
        """The epoch as `lax.scan` calls over chunks of steps (axis -3 of the plan)."""
        chunks = math.ceil(limit / self.chunk)
        logs, done = [], 0
        try:
            for c in range(chunks):
                ts, chunk_logs = self.run(self.hyper, ts, self.data, idx[..., c, :, :],
                                          weight[..., c, :, :], keys[..., c, :],
                                          active[..., c, :])
                logs.append(chunk_logs)
                if chunks > 1:
                    jax.block_until_ready(ts.diverged)  # keep the bar honest per chunk
                done += min(self.chunk, limit - c * self.chunk)
                progress.update(min(self.chunk, limit - c * self.chunk))
        except Exception as err:
            raise _failed(err, ts, done) from err
        return ts, jax.tree.map(lambda *v: jnp.concatenate(v, axis=-1), *logs)

    def _steps(self, ts, idx, weight, keys, limit, progress):
        """The epoch as one jitted step per batch; NumPy data is gathered on the host."""
        flat = lambda a: a.reshape(*a.shape[:-3], -1, *a.shape[-1:])  # noqa: E731
        idx, weight = flat(idx), flat(weight)
        keys = keys.reshape(*keys.shape[:-2], -1)
        if isinstance(self.data.x, np.ndarray):
            idx = np.asarray(idx)
        logs, active = [], jnp.asarray(True)
        try:
            for s in range(limit):
                batch = self.data.take(idx[..., s, :], weight[..., s, :])
                ts, step_logs = self.run(self.hyper, ts, batch, keys[..., s], active)
                logs.append(step_logs)
                progress.update(1)
        except Exception as err:
            raise _failed(err, ts, len(logs)) from err
        return ts, jax.tree.map(lambda *v: jnp.stack(v, axis=-1), *logs)


def _failed(err: Exception, ts: TrainState, steps: int) -> Exception:
    """What an epoch runner raises for `err`: `err` itself when no step of the epoch ran (the
    caller's state is intact), else an `EpochFailed` carrying the state after the last step."""
    return EpochFailed(ts, steps) if steps and not isinstance(err, EpochFailed) else err


def _plan_fn(n: int, batch_size: int, drop_remainder: bool, shuffle: bool, steps: int,
             chunk: int) -> Callable:
    """``(k_train, epoch, limit) -> (idx, weight, keys, active)``, shapes ``(chunks, K, ...)``;
    steps from `limit` on are inactive."""
    chunks = math.ceil(steps / chunk)
    pad = chunks * chunk - steps  # inactive steps: the update is discarded, see `guarded`

    def plan(k_train, epoch, limit):
        k_shuffle, k_drop = epoch_keys(k_train, epoch)
        idx, weight = D.epoch_plan(k_shuffle if shuffle else None, n, batch_size,
                                   drop_remainder=drop_remainder)
        keys = jax.vmap(lambda s: jax.random.fold_in(k_drop, s))(jnp.arange(steps))
        active = jnp.arange(chunks * chunk) < jnp.minimum(limit, steps)
        if pad:
            idx = jnp.concatenate([idx, jnp.zeros((pad, batch_size), idx.dtype)])
            weight = jnp.concatenate([weight, jnp.zeros((pad, batch_size), weight.dtype)])
            keys = jnp.concatenate([keys, keys[:pad]])
        shape = lambda a: a.reshape(chunks, chunk, *a.shape[1:])  # noqa: E731
        return shape(idx), shape(weight), shape(keys), shape(active)

    return plan


class IterableEpochs:
    """Epochs over a user's iterable of batches (or a function ``epoch -> iterable``), one
    jitted step per batch, short batches padded to the first batch's size; the batches are
    shared by the members of a population."""

    def __init__(self, program: Program, hyper: dict, source: Any, k_train: jax.Array):
        self.program, self.hyper, self.source, self.k_train = program, hyper, source, k_train
        self.run = program.compiled(self._one_step, (0, 0, None, 0, None), donate_argnums=1)
        self.steps = len(source) if hasattr(source, "__len__") else None

    def _one_step(self, hyper, ts, batch, key, active):
        return self.program.build_step(hyper)(ts, batch, key, active)

    def __call__(self, ts: TrainState, epoch: int, limit: int | None,
                 progress) -> tuple[TrainState, dict]:
        source: Iterable = self.source(epoch) if callable(self.source) else self.source
        k_drop = self.program.members(lambda k: epoch_keys(k, epoch)[1], (0,))(self.k_train)
        logs, size, active = [], None, jnp.asarray(True)
        try:
            for s, item in enumerate(source):
                if limit is not None and s >= limit:
                    break
                batch = D.as_batch(item)
                size = size or int(jnp.shape(batch.x)[0])
                ts, step_logs = self.run(self.hyper, ts, D.pad_batch(batch, size),
                                         self.program.fold_in(k_drop, s), active)
                logs.append(step_logs)
                progress.update(1)
        except Exception as err:
            raise _failed(err, ts, len(logs)) from err
        if not logs:
            raise DataError(
                f"the dataset yielded no batch in epoch {epoch + 1}. A one-shot iterator (a "
                "generator) is exhausted after the first epoch; pass a list, a re-iterable "
                "object, or a function epoch -> iterable."
            )
        return ts, jax.tree.map(lambda *v: jnp.stack(v, axis=-1), *logs)
