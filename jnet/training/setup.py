"""Everything `fit` resolves and checks before any training work: the key, the optimizer,
the budget, the data, the validation data, the population, the initial trees.

Each check raises a `jnet.Error` naming the argument (see `jnet.training.checks`); `resolve`
returns one typed `Setup` the trainer reads.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import ArgumentError, ArgumentTypeError, DataError, Error
from jnet.layers.base import Layer, abstract_init
from jnet.training import checks, compile_cache
from jnet.training import data as D
from jnet.training.loop import TrainState, fresh
from jnet.training.metrics import Metric
from jnet.training.options import Options
from jnet.training.step import LossFn, model_metrics, resolve_loss
from jnet.typing import OptimizerLike


def as_key(key: Any) -> jax.Array:
    """One typed PRNG key from a typed key, a raw ``PRNGKey`` or an int seed.

    Raises:
        ArgumentTypeError / ArgumentError: anything else (None, a string, a batch of keys,
            an int outside the 64-bit range), naming ``key``.
    """
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if not -(2**63) <= int(key) < 2**63:
            raise ArgumentError(f"key must be an int seed within 64 bits (a signed int64), "
                                f"got {key}. Pass a smaller seed, e.g. key % 2**32.")
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ArgumentError(
                f"key must be ONE PRNG key, got a batch of keys of shape {key.shape}. Pass a "
                "single key (e.g. keys[0]); to train several models at once, use population=.")
        return key
    if isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32:
        if key.shape != (2,):
            raise ArgumentError(
                f"key must be ONE raw PRNGKey of shape (2,), got uint32 shape {key.shape} (a "
                "batch of keys?). Pass a single key; to train several models, use population=.")
        return jax.random.wrap_key_data(jnp.asarray(key))
    raise ArgumentTypeError(
        f"key must be a PRNG key (jax.random.key(0)) or an int seed, got "
        f"{'None' if key is None else type(key).__name__}. Pass key=0 for a fixed seed."
    )


def as_optimizer(optimizer: Any) -> OptimizerLike:
    """An optimizer from an optimizer or the name of a rule of `jnet.optim` (`jnet.optim.get`:
    an unknown name or an uncalled constructor is its clear error); any object with
    ``init`` / ``update`` passes as it is."""
    from jnet import optim

    if hasattr(optimizer, "init") and hasattr(optimizer, "update"):
        return optimizer
    return optim.get(optimizer)


def as_population(population: Any, make_optimizer: Any) -> dict[str, jax.Array] | None:
    """``population=`` as ``{name: (P,) array}``; checks that `make_optimizer` is a function
    that takes every hyperparameter named.

    Raises:
        ArgumentTypeError / ArgumentError: not a dict of equal-length lists, an optimizer that
            is not a function, or a hyperparameter the function does not take.
    """
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
    _check_takes(make_optimizer, population)
    for k, v in population.items():
        bad = [value for value in v
               if not isinstance(value, (int, float, np.number, np.bool_, np.ndarray, jax.Array))]
        if bad:
            raise ArgumentTypeError(
                f"population[{k!r}] must hold numbers (one value of {k} per member), got "
                f"{type(bad[0]).__name__} {bad[0]!r:.40}.")
    return {k: jnp.asarray(v) for k, v in population.items()}


def _check_takes(make_optimizer: Callable[..., Any], population: dict) -> None:
    try:
        signature = inspect.signature(make_optimizer)
    except ValueError:  # builtins without a signature: trust them
        return
    try:
        signature.bind(**{k: v[0] for k, v in population.items()})
    except TypeError:
        taken = [p for p in signature.parameters if p not in ("args", "kwargs")]
        unknown = [k for k in population if k not in signature.parameters]
        raise ArgumentError(
            f"population names {unknown or list(population)}, but the optimizer function "
            f"{getattr(make_optimizer, '__name__', 'make_optimizer')}{signature} takes "
            f"{taken}. Name hyperparameters the function takes (or give it those "
            "parameters).") from None


def check_budget(epochs: Any, steps: Any) -> None:
    """Exactly one of `epochs` / `steps`, each a non-negative int."""
    if (epochs is None) == (steps is None):
        raise ArgumentError(f"give exactly one of epochs= and steps= (a budget of updates), "
                            f"got epochs={epochs!r}, steps={steps!r}.")
    for name, value in (("epochs", epochs), ("steps", steps)):
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, (int, np.integer)) or value < 0):
            raise ArgumentError(f"{name} must be a non-negative int, got {value!r}.")


def as_validation(validation_data: Any, check_finite: bool) -> D.Arrays | None:
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


def peek(source: Any) -> tuple[Any, tuple[int, ...]]:
    """``(source, per-example input shape)`` read from the first batch of an iterable; a
    one-shot iterator (a generator) gets that batch put back in front."""
    it = iter(source(0) if callable(source) else source)
    try:
        first = next(it)
    except StopIteration:
        raise DataError("the dataset yielded no batch.") from None
    if it is source:
        source = itertools.chain([first], it)
    batch = D.as_batch(first)
    return source, tuple(jnp.shape(batch.x)[1:])


@dataclasses.dataclass
class Setup:
    """The checked arguments of one `fit` call.

    Attributes:
        model, loss_fn, metric_fns: what to train and log.
        key: the run's base key; hyper: the population's ``{name: (P,) array}`` or None.
        optimizer: the resolved optimizer (None for a population: built per member).
        make_optimizer: the user's ``make_optimizer(**hyperparameters)`` of a population.
        arrays: in-memory training data, or None for an iterable `source`.
        batch_size: resolved batch size of the arrays (None for an iterable).
        in_shape: per-example input shape; validation: the validation arrays or None.
    """

    model: Layer
    loss_fn: LossFn
    metric_fns: dict[str, Metric]
    key: jax.Array
    hyper: dict[str, jax.Array] | None
    optimizer: OptimizerLike | None
    make_optimizer: Callable[..., Any] | None
    arrays: D.Arrays | None
    source: Any
    batch_size: int | None
    in_shape: tuple[int, ...]
    validation: D.Arrays | None

    @property
    def size(self) -> int | None:
        """P for a population, else None."""
        return None if self.hyper is None else len(next(iter(self.hyper.values())))

    def optimizer_for(self, hyper: dict) -> OptimizerLike:
        """The optimizer of one member (`hyper` traced under the population's vmap)."""
        if self.optimizer is not None:
            return self.optimizer
        if self.make_optimizer is None:
            raise Error("jnet.fit: a run with neither an optimizer nor make_optimizer (a jnet "
                        "bug).")
        return as_optimizer(self.make_optimizer(**hyper))

    def member_keys(self, key: jax.Array) -> jax.Array:
        """The members' keys ``fold_in(key, i)`` of a population, else `key`."""
        if self.size is None:
            return key
        return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(self.size))

    def split(self, key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(k_init, k_train)`` of the run (per member for a population)."""
        halves = lambda k: tuple(jax.random.split(k))  # noqa: E731
        keys = self.member_keys(key)
        return jax.vmap(halves)(keys) if self.size else halves(keys)


def resolve(model: Layer, optimizer: Any, x: Any, y: Any, *, key: Any, mask: Any,
            batch_size: int | None, validation_data: Any, loss: Any, metrics: Sequence[Any] | None,
            population: Any, mesh: Any, options: Options) -> Setup:
    """Check the arguments of `fit` and return its `Setup` (no training work). Turns on the
    persistent compilation cache of ``options.compilation_cache`` first, before the run
    compiles anything (the key, the model's init)."""
    if options.compilation_cache is not None:
        compile_cache.enable(options.compilation_cache)
    key = as_key(key)
    hyper = as_population(population, optimizer)
    if hyper is not None and mesh is not None:
        raise ArgumentError("population= and mesh= cannot be combined yet; train the "
                            "population on one device.")
    single = as_optimizer(optimizer) if hyper is None else None
    loss_fn = resolve_loss(model, loss)
    metric_fns = model_metrics(model, metrics)
    iterable = y is None and not hasattr(x, "shape") and mask is None
    arrays, source, size = None, None, None
    if iterable:
        if options.scan:
            raise ArgumentError("scan=True needs in-memory arrays x, y, not an iterable.")
        source, in_shape = peek(x)
    else:
        arrays = D.prepare(x, y, mask, check_finite=options.check_finite)
        size = D.resolve_batch_size(batch_size, arrays.n)
        in_shape = tuple(jnp.shape(arrays.x)[1:])
    validation = as_validation(validation_data, options.check_finite)
    if validation is not None and tuple(validation.x.shape[1:]) != in_shape:
        raise DataError(
            f"validation x has per-example shape {tuple(validation.x.shape[1:])}, the "
            f"training x {in_shape}. Pass validation inputs shaped like the training inputs.")
    return Setup(model, loss_fn, metric_fns, key, hyper, single,
                 optimizer if hyper is not None else None, arrays, source, size, in_shape,
                 validation)


def initial_state(setup: Setup, options: Options) -> TrainState:
    """The initial `TrainState`: `options`' trees (checked, copied) or fresh ones from
    ``model.init`` / ``optimizer.init`` (member i initialised with ``fold_in(key, i)``).

    Raises:
        DataError: labels that do not fit the model's outputs.
        ArgumentError: given trees that do not match the model.
    """
    model, lead = setup.model, () if setup.size is None else (setup.size,)
    in_shape = None if model.input_shape is not None else setup.in_shape
    k_init, _ = setup.split(setup.key)
    members = (lambda f: jax.vmap(f)) if setup.size else (lambda f: f)
    out_shape, want_params, want_state = abstract_init(
        model, k_init if setup.size is None else k_init[0], in_shape)
    if setup.arrays is not None:
        checks.check_labels(model, out_shape, setup.arrays.y)
    if setup.validation is not None:
        checks.check_labels(model, out_shape, setup.validation.y, "validation y")
    params, state = options.params, options.state
    if params is None or state is None:
        init = members(lambda k: model.init(k, in_shape)[1:])(k_init)
        params = init[0] if params is None else params
        state = init[1] if state is None else state
    checks.check_tree("params", params, want_params, lead)
    checks.check_tree("state", state, want_state, lead)
    params, state = fresh(params), fresh(state)
    opt_init = members(lambda hp, p: setup.optimizer_for(hp).init(p))
    opt_state = options.opt_state
    want_opt = jax.eval_shape(opt_init, setup.hyper or {}, params)
    if opt_state is None:  # copied: it may hold the hyperparameter arrays themselves
        opt_state = fresh(opt_init(setup.hyper or {}, params))
    else:
        checks.check_tree("opt_state", opt_state, jax.tree.map(
            lambda s: jax.ShapeDtypeStruct(s.shape[len(lead):], s.dtype), want_opt), lead)
        opt_state = fresh(opt_state)
    checks.no_tracers("jnet.fit", checks.FIT_FIX, optimizer=opt_state)
    return TrainState(params, state, opt_state, jnp.zeros(lead, bool))
