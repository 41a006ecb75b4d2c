"""`evaluate` and `predict`: a model in evaluation mode over N examples, in fixed-size batches.

Both run one compiled `lax.scan` over the batches (the last one padded and masked out, so one
shape compiles once) and keep their compiled functions in a small cache keyed by the model, so
calling them again on the same model reuses the compilation (about 0.3 s for a small MLP,
against ~1 ms to run it). `mask=` (boolean ``(N, T)``) is batched with x and given to
``model.apply(..., mask=)``; with per-step targets the padded steps count for nothing (see
`jnet.training.step`). `Evaluator` is the piece `fit` reuses for its validation pass, once per
epoch, vmapped over the members of a population.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jnet.errors import entry_point
from jnet.layers.base import Layer, abstract_init, abstract_key
from jnet.training import checks
from jnet.training import data as D
from jnet.training.checks import check_labels, positive_int
from jnet.training.loop import Clock, Compiled, reduce_logs
from jnet.training.metrics import Metric
from jnet.training.step import LossFn, eval_step_fn, model_metrics, resolve_loss
from jnet.typing import PyTree

_COMPILED: OrderedDict[tuple, Any] = OrderedDict()
_COMPILED_MAX = 16


def _memo(key: tuple, build: Callable[[], Any]) -> Any:
    """``build()`` memoised under `key` (the 16 latest)."""
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
    """``fn(params, state, batch) -> tree`` mapped over the fixed-size batches of N examples:
    ``run(params, state, data: D.Arrays) -> tree stacked over the batches``."""
    bs = n if batch_size is None else min(int(batch_size), n)
    idx, weight = D.epoch_plan(None, n, bs)

    def run(params, state, data):
        def body(_, inputs):
            i, w = inputs
            return None, fn(params, state, data.take(i, w))

        return jax.lax.scan(body, None, (idx, weight))[1]

    return run


def out_shape(model: Layer, x: Any) -> Any:
    """The model's per-example output shape for inputs like `x` (abstract, allocates nothing)."""
    in_shape = None if model.input_shape is not None else tuple(jnp.shape(x)[1:])
    return abstract_init(model, abstract_key(), in_shape)[0]


class Evaluator:
    """Compiled evaluation of one model / loss / metrics, reused across `fit`'s epochs.

    Args:
        model, loss_fn, metric_fns: what to evaluate.
        population: params and state carry a leading member axis (values come back ``(P,)``).
        clock: where compile time is added up (`fit` reports it).
    """

    def __init__(self, model: Layer, loss_fn: LossFn, metric_fns: dict[str, Metric], *,
                 population: bool = False, clock: Clock | None = None):
        self.eval_step = eval_step_fn(model, loss_fn, metric_fns)
        self.metric_names = tuple(metric_fns)
        self.population = population
        self.clock = clock or Clock()
        self._runs: dict[tuple[int, int | None], Callable] = {}

    def __call__(self, params: PyTree, state: PyTree, data: D.Arrays,
                 batch_size: int | None) -> dict[str, Any]:
        """``{"loss": ..., metric: ...}``: floats, or ``(P,)`` arrays for a population."""
        run = self._runs.get((data.n, batch_size))
        if run is None:
            fn = _batched(self.eval_step, data.n, batch_size)
            if self.population:
                fn = jax.vmap(fn, in_axes=(0, 0, None))
            run = self._runs[(data.n, batch_size)] = Compiled(fn, self.clock)
        logs = run(params, state, data.on_device())  # batches on the last axis, members first
        logs = jax.device_get(reduce_logs(dict(logs, ok=jnp.ones_like(logs["count"], bool))))
        return {k: (float(logs[k]) if jnp.ndim(logs[k]) == 0 else logs[k])
                for k in ("loss", *self.metric_names)}


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
    mask: Any = None,
) -> dict[str, float]:
    """Loss and metrics of a model on `(x, y)`, in evaluation mode (``train=False``).

    Args:
        model, params, state: the model and its trained trees (e.g. ``result.params``).
        x, y: N examples on axis 0, as for `fit`.
        batch_size: examples per compiled batch (None: all N at once).
        loss: ``fn(outputs, targets) -> per-example losses``; default: the model's head.
        metrics: as in `fit` (default: accuracy for a classification head).
        mask: boolean ``(N, T)``, True on real time steps, batched with x.

    Returns:
        ``{"loss": ..., "accuracy": ...}``: means over all N examples (over the real steps
        with per-step targets).

    Raises:
        DataError: mismatched lengths, a bad mask, labels out of range.
        ArgumentError / ArgumentTypeError: a bad batch size, loss or metric; params or state
            that are not pytrees of arrays; a JAX tracer among the arguments (`evaluate`
            called under `jax.vmap` / `jax.jit`).
    """
    with entry_point("jnet.evaluate"):
        # its compiled functions would see tracers as arguments: a raw JAX TypeError
        checks.no_tracers("jnet.evaluate", checks.EVALUATE_FIX, model=model, params=params,
                          state=state, x=x, y=y, batch_size=batch_size, loss=loss,
                          metrics=metrics, mask=mask)
        positive_int("batch_size", batch_size, allow_none=True)
        checks.check_model_trees(params, state)
        data = D.prepare(x, y, mask, check_finite=False)
        check_labels(model, out_shape(model, data.x), data.y)
        loss_fn = resolve_loss(model, loss)
        metric_fns = model_metrics(model, metrics)
        evaluator = _memo(("evaluate", model, loss_fn, tuple(metric_fns.items())),
                          lambda: Evaluator(model, loss_fn, metric_fns))
        return evaluator(params, state, data, batch_size)


def predict(
    model: Layer,
    params: PyTree,
    state: PyTree,
    x: Any,
    *,
    batch_size: int | None = 256,
    raw: bool = False,
    mask: Any = None,
) -> jax.Array:
    """Model outputs for every example of `x`, in evaluation mode, computed in batches.

    Args:
        model, params, state: the model and its trained trees.
        x: N examples on axis 0.
        batch_size: examples per compiled batch (None: all N at once); calling again on the
            same model and shapes reuses the compiled function.
        raw: return the raw outputs (logits) even when the model has an output head.
        mask: boolean ``(N, T)``, True on real time steps, batched with x.

    Returns:
        ``head.link(outputs)`` with an output head (class probabilities for
        `ClassificationOutput`, values for `RegressionOutput`), else the raw outputs; shape
        ``(N, *out_shape)``.

    Raises:
        DataError: no batch axis, a bad mask. ArgumentError: a bad batch size.
        ArgumentTypeError: params or state that are not pytrees of arrays.
    """
    with entry_point("jnet.predict"):
        positive_int("batch_size", batch_size, allow_none=True)
        checks.check_model_trees(params, state)
        data = D.prepare(x, None, mask, check_finite=False)
    link = (lambda o: o) if raw or model.head is None else model.head.link

    def step(params, state, batch):
        outputs, _ = model.apply(params, state, batch.x, train=False, mask=batch.mask)
        return link(outputs)

    run = _memo(("predict", model, raw, data.n, batch_size),
                lambda: jax.jit(_batched(step, data.n, batch_size)))
    with entry_point("jnet.predict"):
        out = run(params, state, data.on_device())
    return out.reshape(-1, *out.shape[2:])[:data.n]
