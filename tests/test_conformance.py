"""Every layer and container in `jnet.layers.__all__` under every JAX transformation, in float64.

The layers come from `tests/_layer_zoo.py` (derived at test time from ``__all__``: required
arguments by name, the first input each layer inits and applies on), so a new layer is covered
without editing this file.

The matrix (`check_transformations`): jit, eval_shape, vmap, `jax.test_util.check_grads` to
second order in forward and reverse mode (grad, grad of grad, jvp, vjp against finite
differences), linearize = jvp, jacfwd = jacrev, hessian = jacrev of jacrev, grad through
`jax.checkpoint`, a `lax.scan` over stacked params; layers with a hand-written backward pass
(a ``fast_grad`` argument) give the values of plain autodiff (``fast_grad=False``) under all
of them. Sequence layers run unmasked and with an (N, T) mask. The default run covers a
representative subset (a dense layer, a convolution with its fast path, a container); the
whole matrix over every layer is marked slow.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_zoo import build, constructors, input_for, smooth_and_small
from jax.test_util import check_grads

from jnet import layers as L

# unmarked: a dense layer, the convolution fast path and a container; all of them: marked slow.
# The recurrent fast path's default-run test is in test_recurrent_fused.py (second order too).
FAST_SUBSET = ("Dense", "Conv2D", "serial")


class Case(NamedTuple):
    name: str
    layer: L.Layer
    plain: L.Layer | None  # the same layer with fast_grad=False, if it has that argument
    in_shape: Any
    x32: Any  # the zoo's input, float32 (cast to float64 in the tests)

    @property
    def x(self) -> Any:
        return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64)
                            if jnp.issubdtype(a.dtype, jnp.floating) else a, self.x32)

    @property
    def int_input(self) -> bool:
        return not any(jnp.issubdtype(a.dtype, jnp.floating) for a in jax.tree.leaves(self.x32))


def _case(name: str, fn: Any) -> Case:
    smooth = smooth_and_small(fn)
    layer = build(fn, **smooth)
    has_fast_grad = "fast_grad" in inspect.signature(fn).parameters
    plain = build(fn, fast_grad=False, **smooth) if has_fast_grad else None
    return Case(name, layer, plain, *input_for(layer))


CASES = {name: _case(name, fn) for name, fn in constructors().items()}


def _is_sequence(case: Case) -> bool:
    return len(case.in_shape) == 2 and all(isinstance(d, int) for d in case.in_shape)


def test_the_matrix_covers_the_layers_and_their_fast_paths():
    for name in ("Dense", "Conv1D", "Conv2D", "ConvTranspose2D", "LSTM", "GRU", "Bidirectional",
                 "serial", "residual", "parallel"):
        assert name in CASES, name
    assert all(CASES[n].plain is not None for n in ("Conv2D", "ConvTranspose2D", "LSTM", "GRU"))
    assert _is_sequence(CASES["LSTM"]) and CASES["Embedding"].int_input


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


def check_transformations(case: Case, mask: Any = None) -> None:
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
    # second-order finite differences of the deep blocks (transformer layers) differ from the
    # exact derivatives by up to ~1e-4 relative; 1e-3 still catches a wrong rule
    check_grads(f, args, order=2, modes=("fwd", "rev"), rtol=1e-3)
    tangents = jax.tree.map(jnp.cos, args)
    y_dot = jax.jvp(f, args, tangents)[1]
    _float_leaves_close(jax.linearize(f, *args)[1](*tangents), y_dot)
    argnums = tuple(range(len(args)))
    _float_leaves_close(jax.jacfwd(loss, argnums)(*args), jax.jacrev(loss, argnums)(*args))
    grads = jax.grad(loss, argnums)(*args)
    _float_leaves_close(jax.grad(jax.checkpoint(loss), argnums)(*args), grads)
    # hessian (forward over reverse) = reverse over reverse, in the last argument
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
        _float_leaves_close(jax.hessian(loss_plain, last)(*args),
                            jax.hessian(loss, last)(*args), rtol=1e-8)


def _state(case: Case) -> Any:
    return case.layer.init(jax.random.key(1), case.in_shape)[2]


def _sequence_mask(case: Case) -> jax.Array:
    """(N, T): the first sequence whole, the others padded after 1, 2, ... steps."""
    n, t = jax.tree.leaves(case.x32)[0].shape[:2]
    lengths = jnp.array([t, *range(1, n)])
    return jnp.arange(t)[None, :] < lengths[:, None]


@pytest.mark.parametrize("name", [n for n in FAST_SUBSET if n in CASES])
def test_fast_subset(name):
    case = CASES[name]
    check_transformations(case)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "masked"), [
    *((n, False) for n in sorted(CASES)),
    *((n, True) for n in sorted(CASES) if _is_sequence(CASES[n]))])
def test_every_layer(name, masked):
    case = CASES[name]
    check_transformations(case, _sequence_mask(case) if masked else None)
