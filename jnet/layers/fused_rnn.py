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


def by_gate(xs: jax.Array, gates: int) -> tuple[jax.Array, ...]:
    """Projected inputs (T, N, G·H) as G arrays (T, N, H), to scan over; `join_gates` packs a
    step back. One copy before the loop saves a slow one in it: XLA:CPU emits scalar code for
    a fusion that reads several slices of one dynamically sliced step (x_t[:, :H],
    x_t[:, H:2H], ...), 0.11 ms a step at N = 64, H = 128 against 0.02 ms for per-gate
    inputs; the slices of the packed step then cancel against the concatenation."""
    return tuple(jnp.split(xs, gates, axis=-1))


def join_gates(x_t: tuple[jax.Array, ...]) -> jax.Array:
    """One step's per-gate inputs (`by_gate`) packed into (N, G·H)."""
    return jnp.concatenate(x_t, axis=-1)


def scan_inputs(cell, hoist: bool, params, xs):
    """What a forward loop over time-major `xs` (T, N, F) scans: each step's x_t (N, F), or
    with `hoist` all T projections x W_ih + b computed before the loop, one array per gate
    (`by_gate`). `projected` turns one scanned step into the cell's x_t W_ih + b."""
    return by_gate(cell.project(params, xs), cell.gates) if hoist else xs


def projected(cell, hoist: bool, params, x_t):
    """x_t W_ih + b (N, G·H) of one step scanned from `scan_inputs`."""
    return join_gates(x_t) if hoist else cell.project(params, x_t)


def _forward(cell, hoist: bool, unroll, params, xs, carry0):
    """``((hs (T, N, H), final carry), (carries, saved))``: every step's carry and activated
    gates, what ``cell.activate_vjp`` needs, so the reverse loop recomputes nothing."""

    def body(carry, x_t):
        pre = cell.combine(projected(cell, hoist, params, x_t),
                           cell.hidden(params, cell.output(carry)))
        new, saved = cell.activate(pre, carry)
        return new, (new, saved)

    carry, (carries, saved) = jax.lax.scan(body, carry0, scan_inputs(cell, hoist, params, xs),
                                           unroll=unroll)
    return (cell.output(carries), carry), (carries, saved)


@partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
def fused_scan(cell, hoist: bool, unroll, params: PyTree, xs: jax.Array,
               carry0: Any) -> tuple[jax.Array, Any]:
    """``(hs (T, N, H), final carry)`` of `cell` over time-major inputs `xs` (T, N, F), the
    input projection computed before the loop (`hoist`) or per step inside it. Same values as
    the plain scan (the same operations), a backward pass of large matmuls."""
    return _forward(cell, hoist, unroll, params, xs, carry0)[0]


@partial(fused_scan.defjvp, symbolic_zeros=True)
def _fused_scan_jvp(cell, hoist, unroll, primals, tangents):
    out, (carries, saved) = _forward(cell, hoist, unroll, *primals)
    # differentiated inputs only: a symbolic zero (the data, a zero initial state) costs nothing
    nonzero = jax.tree.map(lambda t: not isinstance(t, SymbolicZero), tangents)
    linear = jax.tree.map(lambda t, nz: t if nz else None, tangents, nonzero)
    tangent = linear_call(partial(_tangent, cell, unroll),
                          partial(_transpose, cell, unroll, nonzero),
                          (*primals, carries, saved), linear)
    return out, tangent


def _before(carry0, carries):
    """The carry before each step: carry0, then every step's carry but the last."""
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b[:-1]]), carry0, carries)


def _tangent(cell, unroll, residuals, linear):
    """Forward mode: the tangent recurrence ``(dhs, d final carry)``, linear in `linear`: each
    step's `jax.jvp` at the saved carry before it (projecting x_t in the step)."""
    params, xs, carry0, carries, _ = residuals
    linear = jax.tree.map(lambda t, p: jnp.zeros_like(p) if t is None else t,
                          linear, residuals[:3], is_leaf=lambda t: t is None)
    d_params, d_xs, d_carry0 = linear

    def body(d_carry, inputs):
        x_t, before, dx_t = inputs
        _, d_new = jax.jvp(partial(step_on_input, cell), (params, before, x_t),
                           (d_params, d_carry, dx_t))
        return d_new, cell.output(d_new)

    d_carry, d_hs = jax.lax.scan(body, d_carry0, (xs, _before(carry0, carries), d_xs),
                                 unroll=unroll)
    return d_hs, d_carry


def step_on_input(cell, params: PyTree, carry: Any, x: jax.Array) -> Any:
    """One step of `cell` from the input x_t (N, F)."""
    return cell.step(params, carry, cell.project(params, x))


def _transpose(cell, unroll, nonzero, residuals, cotangents):
    """Reverse mode: the cotangents of (params, xs, carry0) from those of (hs, final carry)."""
    params, xs, carry0, carries, saved = residuals
    d_hs, d_carry = cotangents
    before = _before(carry0, carries)
    h_before = cell.output(before)
    into_carry = jax.linear_transpose(cell.output, carry0)  # dh -> (dh, 0) for the LSTM
    add = partial(jax.tree.map, jnp.add)
    # d pre -> (d xp, d zh): of one step, and of all steps stacked
    split_t, split = (jax.linear_transpose(cell.combine, shape, shape) for shape in (
        jax.eval_shape(cell.project, params, x) for x in (xs[0], xs)))
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
    d_hidden = jax.vjp(lambda p: cell.hidden(p, flat(h_before)), params)[1](flat(d_zhs))[0]
    d_project, d_x = jax.vjp(cell.project, params, flat(xs))[1](flat(d_xps))
    grads = (add(d_hidden, d_project), d_x.reshape(xs.shape), d_carry0)
    return jax.tree.map(lambda g, nz: g if nz else None, grads, nonzero)
