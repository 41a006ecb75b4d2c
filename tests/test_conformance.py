"""Every layer and container in `jnet.layers.__all__` under every JAX transformation, in float64.

The layers are found at test time: every CamelCase function in ``__all__`` is a layer
constructor and must be built here (its required arguments filled by name from `ARGS`, a
container's children from `child_layers`; an input shape found by trying `CANDIDATES` until
``init`` and ``apply`` succeed), and every snake_case function that builds a layer from those
arguments (`serial`, `residual`, ...) is a container under test too. A new layer is covered
without editing this file; one with an argument name the table lacks fails
`test_every_layer_constructor_is_covered`, which says which name to add.

The matrix (`check_transformations`): jit, eval_shape, vmap, `jax.test_util.check_grads` to
second order in forward and reverse mode (grad, grad of grad, jvp, vjp against finite
differences), linearize = jvp, jacfwd = jacrev, hessian = jacrev of jacrev, grad through
`jax.checkpoint`, a `lax.scan` over stacked params; layers with a hand-written backward pass
(a ``fast_grad`` argument) give the values of plain autodiff (``fast_grad=False``) under all
of them. Sequence layers run unmasked and with an (N, T) mask. The fast default run covers a
representative subset; the whole matrix over every layer is marked slow.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jnet import layers as L

N = 2
SEQ, IMG, VOL, VEC = (3, 4), (4, 4, 4), (3, 3, 3, 4), (4,)
CANDIDATES: tuple[Any, ...] = (SEQ, IMG, VOL, VEC, (SEQ, SEQ))  # (SEQ, SEQ): a pair input
# Required constructor arguments by name. Sizes keep the feature / channel count at 4, so a
# child inside `residual` maps its input shape to itself.
ARGS: dict[str, Any] = {
    "units": 4, "filters": 4, "features": 4, "kernel_size": 2, "window": 2, "pool_size": 2,
    "size": 2, "hidden": 4, "num_heads": 2, "rate": 0.5, "shape": SEQ, "num_embeddings": 5,
    "num": 2, "n": 2, "num_groups": 2, "groups": 2, "fn_or_name": "tanh",
    "dim_feedforward": 8, "axis": -1,
}
CHILD_ARGS = ("layer", "block", "forward", "body", "inner", "child", "module")
# unmarked: one layer of each kind of fast path and a container; all of them: marked slow
FAST_SUBSET = ("Dense", "Conv2D", "LSTM", "serial")


def child_layers() -> list[list[L.Layer]]:
    """Children to build a container around, tried in order: a Dense, a recurrent layer."""
    return [[L.Dense(4), L.Dense(4)], [L.LSTM(4, return_sequences=True)] * 2]


def _build(fn: Callable[..., Any], children: list[L.Layer], extra: dict | None = None) -> Any:
    """`fn` called with its required arguments from the tables (and `extra`), None where one
    of them is not in the tables."""
    args, kwargs = [], dict(extra or {})
    for p in inspect.signature(fn).parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            args.extend(children)
        elif p.default is not p.empty or p.kind is p.VAR_KEYWORD:
            continue
        elif p.name in CHILD_ARGS:
            kwargs[p.name] = children[0]
        elif p.name in ARGS:
            kwargs[p.name] = ARGS[p.name]
        else:
            return None
    return fn(*args, **kwargs)


def _example(in_shape: Any, int_input: bool, seed: int) -> Any:
    """A batch of N examples of `in_shape` (a pair of shapes: a tuple of batches)."""
    if isinstance(in_shape[0], tuple):
        return tuple(_example(s, int_input, seed + i) for i, s in enumerate(in_shape))
    rng = np.random.default_rng(seed)
    if int_input:
        return jnp.asarray(rng.integers(0, ARGS["num_embeddings"], (N, *in_shape)), jnp.int32)
    return jnp.asarray(rng.normal(size=(N, *in_shape)))  # float64 under the tests x64


class Case(NamedTuple):
    name: str
    layer: L.Layer
    plain: L.Layer | None  # the same layer with fast_grad=False, if it has that argument
    in_shape: Any
    int_input: bool
    cell: bool  # the input is a one-step cell's pair (carry None, x_t)

    @property
    def x(self) -> Any:
        x = _example(self.in_shape, self.int_input, 0)
        return (None, x) if self.cell else x


def _probe(name: str, fn: Callable[..., Any], children: list[L.Layer]) -> Case | None:
    """The first candidate input (shape, float or int ids, a cell's ``(None, x)``) that the
    layer inits and applies on, as a Case; None if none does."""
    layer = _build(fn, children)
    fast = "fast_grad" in inspect.signature(fn).parameters
    for in_shape in CANDIDATES:
        for int_input in (False, True):
            x = _example(in_shape, int_input, 0)
            for cell in (False, True) if in_shape == VEC else (False,):
                xi = (None, x) if cell else x
                try:
                    _, params, state = layer.init(jax.random.key(0), in_shape)
                    layer.apply(params, state, xi)
                except (L.LayerError, TypeError, ValueError):
                    continue
                plain = _build(fn, children, {"fast_grad": False}) if fast else None
                return Case(name, layer, plain, in_shape, int_input, cell)
    return None


def _cases() -> tuple[dict[str, Case], list[str]]:
    """Every buildable layer as a Case, and the CamelCase constructors that could not be."""
    functions = {n: getattr(L, n) for n in L.__all__
                 if callable(getattr(L, n)) and not isinstance(getattr(L, n), type)}
    cases, missing = {}, []
    for name, fn in functions.items():
        case = None
        for children in child_layers():
            try:
                if not isinstance(_build(fn, children), L.Layer):
                    break  # an argument the tables lack, or a function that is no layer
            except L.LayerError:  # e.g. Bidirectional around a Dense: try the next children
                continue
            case = _probe(name, fn, children)
            if case is not None:
                break
        if case is not None:
            cases[name] = case
        elif name[0].isupper():
            missing.append(name)
    return cases, missing


CASES, MISSING = _cases()


def test_every_layer_constructor_is_covered():
    assert not MISSING, (
        f"no input found for {MISSING}: add their required argument names to ARGS (or an "
        "input shape to CANDIDATES) in tests/test_conformance.py")
    for name in ("Dense", "Conv2D", "LSTM", "GRU", "Bidirectional", "serial", "parallel",
                 "residual", "LSTMCell", "Embedding", "FanInSum"):
        assert name in CASES, name  # the discovery itself works


# ----------------------------------------------------------------------------------------
# The transformation matrix


def _float_leaves_close(a, b, rtol=1e-9, atol=1e-11):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)


def _functions(case: Case, layer: L.Layer, mask: Any):
    """(f(params, x) -> output, loss(params, x) -> scalar, the differentiable arguments)."""
    _, params, state = layer.init(jax.random.key(1), case.in_shape)
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    rng = np.random.default_rng(5)
    # non-zero biases and scales away from their init, so every term of the gradient counts
    params = jax.tree.map(lambda a: a + 0.2 * rng.normal(size=a.shape), params)

    def f(p, x):
        return layer.apply(p, state, x, mask=mask)[0]

    def loss(p, x):
        return sum(jnp.sum(jnp.sin(y) * (1.0 + i)) for i, y in enumerate(jax.tree.leaves(f(p, x))))

    x = case.x
    if case.int_input:  # ids are not differentiable: the params are the argument
        return (lambda p: f(p, x)), (lambda p: loss(p, x)), (params,)
    return f, loss, (params, x)


@pytest.fixture(autouse=True)
def _float64():
    with jax.enable_x64(True):
        yield


def check_transformations(case: Case, mask: Any = None, second_order: bool = True) -> None:
    f, loss, args = _functions(case, case.layer, mask)
    y = f(*args)
    # jit and eval_shape
    _float_leaves_close(jax.jit(f)(*args), y)
    shapes = jax.eval_shape(f, *args)
    assert jax.tree.map(lambda s: s.shape, shapes) == jax.tree.map(jnp.shape, y)
    # vmap: one example at a time equals the batch (layers act per example at train=False)
    if not case.int_input:
        params, x = args
        per = jax.vmap(lambda xi, mi: case.layer.apply(params, _state(case), xi,
                                                       mask=mi)[0],
                       in_axes=(0, None if mask is None else 0))(
            jax.tree.map(lambda a: a[:, None], x), None if mask is None else mask[:, None])
        _float_leaves_close(jax.tree.map(lambda a: a[:, 0], per), y)
    # grad, grad of grad, jvp, vjp against finite differences
    check_grads(f, args, order=2 if second_order else 1, modes=("fwd", "rev"))
    tangents = jax.tree.map(jnp.cos, args)
    y_dot = jax.jvp(f, args, tangents)[1]
    _float_leaves_close(jax.linearize(f, *args)[1](*tangents), y_dot)
    argnums = tuple(range(len(args)))
    _float_leaves_close(jax.jacfwd(loss, argnums)(*args), jax.jacrev(loss, argnums)(*args))
    grads = jax.grad(loss, argnums)(*args)
    _float_leaves_close(jax.grad(jax.checkpoint(loss), argnums)(*args), grads)
    if second_order:  # hessian (forward over reverse) = reverse over reverse, in the last arg
        last = len(args) - 1
        _float_leaves_close(jax.hessian(loss, last)(*args),
                            jax.jacrev(jax.jacrev(loss, last), last)(*args))
    # lax.scan over two stacked copies of the params: the sum of the two losses, and its grad
    stacked = jax.tree.map(lambda a: jnp.stack([a, 2.0 * a]), args[0])
    total = lambda s: jax.lax.scan(  # noqa: E731
        lambda c, p: (c + loss(p, *args[1:]), None), 0.0, s, length=2)[0]
    twice = jax.tree.map(lambda a: 2.0 * a, args[0])
    np.testing.assert_allclose(total(stacked), loss(*args) + loss(twice, *args[1:]), rtol=1e-10)
    g = jax.grad(total)(stacked)
    _float_leaves_close(jax.tree.map(lambda a: a[0], g), grads[0])
    if case.plain is not None:  # the hand-written backward equals plain autodiff
        f_plain, loss_plain, _ = _functions(case, case.plain, mask)
        _float_leaves_close(jax.grad(loss_plain, argnums)(*args), grads)
        _float_leaves_close(jax.jvp(f_plain, args, tangents)[1], y_dot)
        if second_order:
            _float_leaves_close(jax.hessian(loss_plain, last)(*args),
                                jax.hessian(loss, last)(*args), rtol=1e-8)


def _state(case: Case) -> Any:
    return case.layer.init(jax.random.key(1), case.in_shape)[2]


def _sequence_mask() -> jax.Array:
    """(N, T): the second sequence padded after its first step."""
    return jnp.arange(SEQ[0])[None, :] < jnp.array([SEQ[0], 1])[:, None]


@pytest.mark.parametrize("name", [n for n in FAST_SUBSET if n in CASES])
def test_fast_subset(name):
    case = CASES[name]
    check_transformations(case, second_order=name != "LSTM")  # LSTM's: in the slow run


@pytest.mark.slow
@pytest.mark.parametrize(("name", "masked"), [
    *((n, False) for n in sorted(CASES)),
    *((n, True) for n in sorted(CASES) if CASES[n].in_shape == SEQ)])  # sequence layers
def test_every_layer(name, masked):
    check_transformations(CASES[name], _sequence_mask() if masked else None)
