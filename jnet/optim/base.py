"""The types of `jnet.optim` and the helpers every rule shares.

Two levels, as in optax but written for jnet's contract:

* A `GradientTransformation` maps updates to updates: `init(params) -> state` and
  `update(updates, state, params, step) -> (updates, state)`, where `step` is the 1-based
  int32 index t of the update being computed. Transformations that apply a step size carry
  its schedule in their `schedule` field (None otherwise).
* An `Optimizer` is what users hold: `init(params) -> OptState` and
  `update(grads, opt_state, params) -> (params, opt_state)`. `chain` builds one from
  transformations; every rule (`adam`, `sgd`, ...) is such a chain.

Sign convention: the updates leaving the last transformation are ADDED to the parameters, so
`scale_by_learning_rate` multiplies by -lr and the "scale_by_*" rules return ascent directions.

Dtypes: each state array follows its parameter's dtype, except that parameters stored in fewer
than 32 bits (bfloat16, float16) get float32 state; gradients and parameters are promoted to that
state dtype inside `update`, and the new parameters are cast back to each parameter's own dtype.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import Error, check_array_tree, entry_point, public
from jnet.typing import PyTree, Schedule

# A schedule (`jnet.typing.Schedule`) sees an int32 scalar array counting the updates already
# applied and must be traceable: it runs under `jax.jit`.
ScalarOrSchedule = float | jax.Array | Schedule

F = TypeVar("F", bound=Callable[..., Any])


class OptimizerError(Error, ValueError):
    """An optimizer was given something it cannot use.

    The message says what was expected, what was given and the fix; `where` names the public
    `jnet.optim` function the user called (``jnet.optim.adamw: b1 must lie in [0, 1), got 2.
    ...``), whichever helper found the problem.
    """


# True while a public jnet.optim function runs: the functions it calls (adamw calls
# scale_by_adam, chain, ...) then leave the naming of errors to it, the one the user called.
_INSIDE = contextvars.ContextVar("jnet_optim_inside", default=False)


@contextlib.contextmanager
def named(where: str) -> Iterator[None]:
    """`jnet.errors.entry_point(where)` for the outermost jnet.optim call only.

    `adamw(b1=2)` reports ``jnet.optim.adamw`` although `scale_by_adam` finds the problem.
    """
    if _INSIDE.get():
        yield
        return
    token = _INSIDE.set(True)
    try:
        with entry_point(where):
            yield
    finally:
        _INSIDE.reset(token)


def api(where: str) -> Callable[[F], F]:
    """Decorator form of `named`: a public jnet.optim function names itself in its errors."""
    return public(where, context=named)


class GradientTransformation(NamedTuple):
    """One stage of an optimizer: `init(params) -> state`,
    `update(updates, state, params, step) -> (updates, state)`; `schedule` is the learning-rate
    schedule the stage applies (None when it applies no step size; a schedule returning a dict
    `{label: lr}` for `partition`); `frozen` is None or `params -> pytree of bools`, True for
    the arrays the stage freezes: the optimizer then leaves them bit-identical whatever the
    other stages of its chain compute (see `freeze`)."""

    init: Callable[[PyTree], PyTree]
    update: Callable[[PyTree, PyTree, PyTree, jax.Array], tuple[PyTree, PyTree]]
    schedule: Schedule | None = None
    frozen: Callable[[PyTree], PyTree] | None = None


class OptState(NamedTuple):
    """The state of an `Optimizer`: a pytree of arrays (jit, vmap and checkpoint friendly).

    Attributes:
        step: int32 scalar, the number of updates applied so far.
        learning_rate: float32 scalar, the learning rate used by the last update (before the
            first update: the one the first update will use); for a `partition`, a dict
            `{label: float32 scalar}`, one rate per group. Read it with
            `current_learning_rate`.
        inner: one state per transformation of the chain, in order.
    """

    step: jax.Array
    learning_rate: jax.Array | dict[str, jax.Array]
    inner: tuple


class Optimizer(NamedTuple):
    """An optimizer: `init(params) -> OptState`,
    `update(grads, opt_state, params) -> (params, opt_state)`; both pure and jit-able.
    `transforms` are the stages it chains (so `chain` can extend it)."""

    init: Callable[[PyTree], OptState]
    update: Callable[[PyTree, OptState, PyTree], tuple[PyTree, OptState]]
    transforms: tuple[GradientTransformation, ...]


class EmptyState(NamedTuple):
    """The state of a stateless transformation (clipping, weight decay, the learning rate)."""


@api("jnet.optim.current_learning_rate")
def current_learning_rate(opt_state: OptState) -> jax.Array | dict[str, jax.Array]:
    """The learning rate of the last update: THE way to read it (logging, `jnet.fit`'s
    ``history["lr"]``).

    An optimizer whose last rate-applying stage is a `partition` (parameter groups) has one
    rate per group: the result is then a dict `{label: rate}` (`jnet.fit` logs it as
    ``history["lr/<label>"]``); a frozen group (`freeze()`) reports 0.

    Args:
        opt_state: the `OptState` returned by an optimizer's `init` or `update` (jnet.optim
            optimizers only; before the first update: the rate the first update will use).

    Returns:
        A float32 scalar array (batched under `jax.vmap`), or for a `partition` a dict
        `{label: float32 scalar}`.

    Raises:
        OptimizerError: `opt_state` is not an `OptState`.
    """
    if not isinstance(opt_state, OptState):
        raise OptimizerError(
            f"opt_state must be the OptState of a jnet.optim optimizer, got "
            f"{type(opt_state).__name__}. Pass the state returned by `opt.init(params)` or "
            "`opt.update(...)` of an optimizer built by jnet.optim.")
    return opt_state.learning_rate


_PARAMS_FIX = ("Pass the params pytree returned by the model's init; optimizers update "
               "floating-point arrays only, so keep integer or boolean constants out of it (e.g. "
               "in the layer state).")


def check_params(params: PyTree, name: str = "params", fix: str = _PARAMS_FIX) -> None:
    """Raise unless `params` (or the tree called `name`: grads, updates) is a pytree of
    floating-point arrays, the trees every optimizer and its helpers take. Types and dtypes
    only: under `jax.jit` it runs once, at trace time.

    Raises:
        OptimizerError: naming the first leaf that is not a floating-point array, and `fix`.
    """
    check_array_tree(name, params, fix, floating=True, error=OptimizerError)


EVAL_FIX = ("Pass the params the optimizer holds (what its `update` returned, e.g. "
            "result.params) with the opt_state of the same run (result.opt_state).")


def check_like(name: str, tree: PyTree, reference_name: str, reference: PyTree,
               fix: str) -> None:
    """Raise unless `tree` has the structure and leaf shapes of `reference` (trace-time: it
    compares tree structures and shapes, never values).

    Raises:
        OptimizerError: another structure (both are shown) or a leaf of another shape.
    """
    tree_def, reference_def = jax.tree.structure(tree), jax.tree.structure(reference)
    if tree_def != reference_def:  # type: ignore[operator]  # jaxlib has no PyTreeDef stub
        raise OptimizerError(
            f"{name} must have the structure of `{reference_name}`.\n  {name}:  {tree_def}\n"
            f"  {reference_name}: {reference_def}\n{fix}")
    for (path, leaf), other in zip(jax.tree_util.tree_leaves_with_path(tree),
                                   jax.tree.leaves(reference), strict=True):
        if np.shape(leaf) != np.shape(other):
            where = jax.tree_util.keystr(path)
            raise OptimizerError(f"{name}{where} has shape {np.shape(leaf)}, but "
                                 f"{reference_name}{where} has shape {np.shape(other)}. {fix}")


def is_tracer(value: Any) -> bool:
    """True for a value only known inside a trace (e.g. a learning rate vmapped over)."""
    return isinstance(value, jax.core.Tracer)


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    return f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, int | float) else str(np.asarray(value))


def check_hyperparameter(name: str, value: Any, low: float = 0.0, high: float = math.inf, *,
                         low_open: bool = False, high_open: bool = False,
                         fix: str = "") -> None:
    """Raise `OptimizerError` unless `value` is a real scalar in the interval (inf excluded).

    Checked: Python numbers, NumPy scalars and arrays, concrete JAX arrays. Tracers (e.g. a
    learning rate `jax.vmap`-ed over to train a population) cannot be checked: their values
    are unknown when the optimizer is built.

    Args:
        name: the argument's name, as the user wrote it (``"b1"``).
        value: what was given.
        low, high: the bounds; `high` = inf is always open.
        low_open, high_open: exclude the bound.
        fix: how to fix a value out of range (appended to the message).

    Raises:
        OptimizerError: a non-number (string, None, bool, list) or a non-scalar array, or a
            number outside the interval or NaN.
    """
    if is_tracer(value):
        return
    interval = _interval(low, high, low_open, high_open or high == math.inf)
    if isinstance(value, bool) or not isinstance(value, int | float | np.generic | np.ndarray
                                                      | jax.Array):
        raise OptimizerError(f"{name} must be a number in {interval}, got "
                             f"{type(value).__name__} {value!r}. {fix}".rstrip())
    if np.ndim(value) != 0 or not np.issubdtype(np.asarray(value).dtype, np.number):
        raise OptimizerError(f"{name} must be a real scalar in {interval}, got an array of "
                             f"shape {np.shape(value)} and dtype {np.asarray(value).dtype}. "
                             f"{fix}".rstrip())
    number = float(value)
    below = number <= low if low_open else number < low
    above = number >= high if high_open or high == math.inf else number > high
    if below or above or math.isnan(number):
        raise OptimizerError(f"{name} must lie in {interval}, got {_shown(value)}. {fix}".rstrip())


EPS_FIX = "eps guards a division by zero; 1e-8 is usual."


def check_decay_and_eps(name: str, decay: Any, usual: float, eps: Any) -> None:
    """A moving-average decay rate `name` in [0, 1) (`usual`: the value the message suggests)
    and ε >= 0: the checks the squared-gradient rules share.

    Raises:
        OptimizerError: either out of range (see `check_hyperparameter`).
    """
    check_hyperparameter(name, decay, 0.0, 1.0, high_open=True,
                         fix=f"{name} is a moving-average decay rate; {usual:g} is usual.")
    check_hyperparameter("eps", eps, fix=EPS_FIX)


_LR_FIX = ("Pass a non-negative finite number such as 1e-3, or a schedule `step -> lr` "
           "(jnet.optim.cosine_decay_schedule, ...).")


def _check_schedule(schedule: Schedule) -> None:
    """Evaluate `schedule` at step 0 outside any trace and check the value; a schedule that
    cannot be evaluated concretely (it closes over a tracer, needs a vmap axis, ...) is left
    unchecked, to fail or not when it runs.

    Raises:
        OptimizerError: a callable that cannot take the step (`lambda: 0.1`), or a value at
            step 0 that is not a rate.
    """
    try:
        inspect.signature(schedule).bind(0)
    except TypeError as error:
        raise OptimizerError(
            f"learning_rate is a callable that does not take the step ({error}): a schedule "
            "maps the int32 number of updates already applied to a rate, e.g. "
            "`lambda step: 0.1 * 0.5 ** (step // 10)`; for a constant pass the number (0.1)."
        ) from None
    except ValueError:  # no signature to read (some builtins): leave it to the call below
        pass
    try:
        with jax.ensure_compile_time_eval():
            value = schedule(jnp.zeros((), jnp.int32))
    except Exception:  # whatever it is, the schedule is not checkable here
        return
    if is_tracer(value):
        return
    if (value is None or isinstance(value, bool | str) or np.ndim(value) != 0
            or not np.issubdtype(np.asarray(value).dtype, np.number)):
        raise OptimizerError(
            f"learning_rate schedule must return a real scalar, but at step 0 it returned "
            f"{type(value).__name__} {value!r}. A schedule maps the int32 step to one rate, "
            "e.g. `lambda step: 0.1 * 0.5 ** (step // 10)`.")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise OptimizerError(f"learning_rate schedule gives {_shown(value)} at step 0; a "
                             f"learning rate must lie in [0, inf). Check the schedule's values "
                             "(its sign and initial value).")


def as_schedule(learning_rate: ScalarOrSchedule) -> Schedule:
    """A callable `step -> lr` from a number, a scalar array or a schedule (returned as is,
    after a check of its value at step 0).

    Raises:
        OptimizerError: a string or other non-number, an array that is not a scalar, a
            negative, NaN or infinite rate, a schedule whose value at step 0 is one of those.
    """
    if callable(learning_rate) and not isinstance(learning_rate, np.ndarray | jax.Array):
        _check_schedule(learning_rate)
        return learning_rate
    if (isinstance(learning_rate, np.ndarray | jax.Array) and not is_tracer(learning_rate)
            and np.ndim(learning_rate) != 0):
        raise OptimizerError(
            f"learning_rate must be a scalar or a schedule `step -> lr`, got an array of shape "
            f"{np.shape(learning_rate)}. To try several rates at once, jax.vmap over a function "
            "that builds the optimizer from one rate.")
    check_hyperparameter("learning_rate", learning_rate, fix=_LR_FIX)
    return lambda step: jnp.asarray(learning_rate)


def learning_rate_at(schedule: Schedule, step: jax.Array) -> jax.Array:
    """The learning rate of update number `step` (1-based): `schedule(step - 1)`.

    Schedules see the number of updates already applied (0 for the first), like optax. The
    stages that apply it cast it to each update's dtype, so a float64 run (under
    `jax_enable_x64`) steps with the float64 rate the jnet schedules compute.
    """
    return jnp.asarray(schedule(step - 1))


def float_step(step: jax.Array) -> jax.Array:
    """The int32 step as JAX's default float (float64 under x64), for powers like β^t."""
    return jnp.asarray(step).astype(jnp.result_type(float))


def state_dtype(dtype: Any) -> np.dtype:
    """The dtype of the optimizer state for a parameter of `dtype` (float32 below 32 bits)."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.itemsize < 4 else dtype


def to_state_dtype(tree: PyTree) -> PyTree:
    """`tree` with every leaf cast to its state dtype."""
    return jax.tree.map(lambda x: jnp.asarray(x).astype(state_dtype(jnp.result_type(x))), tree)


def zeros_like_state(params: PyTree) -> PyTree:
    """Zeros shaped like `params`, in each leaf's state dtype."""
    return jax.tree.map(lambda p: jnp.zeros(jnp.shape(p), state_dtype(jnp.result_type(p))),
                        params)


def map_unzip(fn: Callable[..., tuple], width: int, first: PyTree,
              *rest: PyTree) -> tuple[PyTree, ...]:
    """`jax.tree.map(fn, first, *rest)` for an `fn` returning a `width`-tuple, as `width`
    trees (also for trees without leaves, where `jax.tree.transpose` fails)."""
    treedef: Any = jax.tree.structure(first)  # jaxlib ships no PyTreeDef stub
    outs = [fn(*args) for args in zip(*(treedef.flatten_up_to(t) for t in (first, *rest)),
                                      strict=True)]
    return tuple(jax.tree.unflatten(treedef, [out[i] for out in outs]) for i in range(width))


def ema(decay: float | jax.Array, avg: PyTree, x: PyTree, power: int = 1) -> PyTree:
    """avg ← decay·avg + (1 - decay)·x**power, leafwise: the moving average every rule keeps."""
    return jax.tree.map(lambda a, g: decay * a + (1 - decay) * g**power, avg, x)


def bias_correction(decay: float | jax.Array, step: jax.Array) -> jax.Array:
    """1 - decay**t, the factor that unbiases a zero-initialised moving average after t steps."""
    return 1.0 - jnp.power(decay, float_step(step))
