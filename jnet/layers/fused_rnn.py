"""The unmasked scan of a recurrent cell with a hand-written backward pass (cuDNN's recipe).

Autodiff of `lax.scan` accumulates dW_hh (and dW_ih when the projection is inside the loop)
with one small (H, N) @ (N, G·H) matmul per step inside the reverse loop. Here the reverse loop
only carries the state's gradient back through time and emits each step's gradients of the
projected input and of the recurrent matmul's output; the weight gradients are then one large
matmul each over all T·N rows after the loop: dW_hh = Σ_t h_{t-1}ᵀ dzh_t, dW_ih = Σ_t x_tᵀ dxp_t.

No gate formula is restated here: each step runs the cell's own functions
(`jnet.layers.cells.Cell`): ``activate`` forwards, its ``activate_vjp`` (written next to it)
backwards, `jax.vjp` of ``hidden`` and ``project`` for the matmuls, `jax.jvp` of the step in
forward mode. `fused_scan` is a `jax.custom_jvp` whose
tangent is a `jnet._transpose.linear_call`: forward mode runs the tangent recurrence, reverse
mode transposes it into the reverse loop below, and both nest and vmap like plain code.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from jnet._transpose import linear_call

PyTree = Any


def _forward(cell, inside: bool, unroll, params, xs, carry0):
    """``((hs (T, N, H), final carry), (carries, saved))``: every step's carry and activated
    gates, what ``cell.activate_vjp`` needs, so the reverse loop recomputes nothing."""

    def body(carry, x_t):
        xp = cell.project(params, x_t) if inside else x_t
        pre = cell.combine(xp, cell.hidden(params, cell.output(carry)))
        new, saved = cell.activate(pre, carry)
        return new, (new, saved)

    carry, (carries, saved) = jax.lax.scan(body, carry0, xs, unroll=unroll)
    return (cell.output(carries), carry), (carries, saved)


@partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def fused_scan(cell, inside: bool, unroll, params: PyTree, xs: jax.Array,
               carry0: Any) -> tuple[jax.Array, Any]:
    """``(hs (T, N, H), final carry)`` of `cell` over time-major `xs`: the input x_t (N, F)
    when `inside` (projected in the loop), else the projected x_t W_ih + b (N, G·H), with
    `params` then only the recurrent ones. Same values as the plain scan (the same
    operations), a backward pass of large matmuls."""
    return _forward(cell, inside, unroll, params, xs, carry0)[0]


@partial(fused_scan.defjvp, symbolic_zeros=True)
def _fused_scan_jvp(cell, inside, unroll, primals, tangents):
    out, (carries, saved) = _forward(cell, inside, unroll, *primals)
    # differentiated inputs only: a symbolic zero (the data, a zero initial state) costs nothing
    nonzero = jax.tree.map(lambda t: not isinstance(t, SymbolicZero), tangents)
    linear = jax.tree.map(lambda t, nz: t if nz else None, tangents, nonzero)
    tangent = linear_call(partial(_tangent, cell, inside, unroll),
                          partial(_transpose, cell, inside, unroll, nonzero),
                          (*primals, carries, saved), linear)
    return out, tangent


def _before(carry0, carries):
    """The carry before each step: carry0, then every step's carry but the last."""
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b[:-1]]), carry0, carries)


def _tangent(cell, inside, unroll, residuals, linear):
    """Forward mode: the tangent recurrence ``(dhs, d final carry)``, linear in `linear`: each
    step's `jax.jvp` at the saved carry before it."""
    params, xs, carry0, carries, _ = residuals
    linear = jax.tree.map(lambda t, p: jnp.zeros_like(p) if t is None else t,
                          linear, residuals[:3], is_leaf=lambda t: t is None)
    d_params, d_xs, d_carry0 = linear

    def step(p, carry, x):
        return cell.step(p, carry, cell.project(p, x) if inside else x)

    def body(d_carry, inputs):
        x_t, before, dx_t = inputs
        _, d_new = jax.jvp(step, (params, before, x_t), (d_params, d_carry, dx_t))
        return d_new, cell.output(d_new)

    d_carry, d_hs = jax.lax.scan(body, d_carry0, (xs, _before(carry0, carries), d_xs),
                                 unroll=unroll)
    return d_hs, d_carry


def _transpose(cell, inside, unroll, nonzero, residuals, cotangents):
    """Reverse mode: the cotangents of (params, xs, carry0) from those of (hs, final carry)."""
    params, xs, carry0, carries, saved = residuals
    d_hs, d_carry = cotangents
    before = _before(carry0, carries)
    h_before = cell.output(before)
    into_carry = jax.linear_transpose(cell.output, carry0)  # dh -> (dh, 0) for the LSTM
    add = partial(jax.tree.map, jnp.add)
    # d pre -> (d xp, d zh): of one step, and of all steps stacked
    split_t, split = (jax.linear_transpose(cell.combine, shape, shape) for shape in (
        jax.eval_shape(lambda p, x: cell.project(p, x) if inside else x, params, x)
        for x in (xs[0], xs)))
    # the recurrent map is affine in h: one backward for all steps, ``dzh -> dzh W_hhᵀ``
    hidden_vjp = jax.vjp(lambda h: cell.hidden(params, h), h_before[0])[1]

    def body(d_carry, inputs):
        d_h, saved_t, before_t, after_t = inputs
        d_after = add(d_carry, into_carry(d_h)[0])
        d_pre, d_before = cell.activate_vjp(saved_t, before_t, after_t, d_after)
        d_zh = split_t(d_pre)[1]  # the LSTM's d xp is the same array: emit d_pre once
        return add(d_before, into_carry(hidden_vjp(d_zh)[0])[0]), d_pre

    d_carry0, d_pres = jax.lax.scan(body, d_carry, (d_hs, saved, before, carries),
                                    reverse=True, unroll=unroll)
    d_xps, d_zhs = split(d_pres)
    flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731 (T, N, K) -> (T·N, K)
    # the weight gradients: one matmul each over all T·N rows
    d_params = jax.vjp(lambda p: cell.hidden(p, flat(h_before)), params)[1](flat(d_zhs))[0]
    if inside:
        _, project_vjp = jax.vjp(lambda p, x: cell.project(p, x), params, flat(xs))
        d_project, d_x = project_vjp(flat(d_xps))
        d_params, d_xs = add(d_params, d_project), d_x.reshape(xs.shape)
    else:
        d_xs = d_xps
    grads = (d_params, d_xs, d_carry0)
    return jax.tree.map(lambda g, nz: g if nz else None, grads, nonzero)
