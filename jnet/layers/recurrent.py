"""Recurrent layers: `LSTM` and `GRU` over batched sequences (N, T, F), their one-step cells
`LSTMCell` / `GRUCell`, the `Bidirectional` wrapper, and the functional scans underneath.

Notation: x_t is one time step (N, F), h the hidden state (N, H), σ the logistic sigmoid,
⊙ the elementwise product. Weights multiply from the right (``x @ w``), like `Dense`.

**LSTM** (Hochreiter & Schmidhuber 1997, forget gate of Gers et al. 2000). Gates are packed in
PyTorch's order (i, f, g, o) along the last axis of every weight, so PyTorch weights load by a
transpose (`jnet.interop.lstm_from_torch`)::

    [i, f, g, o] = x_t W_ih + h_{t-1} W_hh + b          W_ih (F, 4H), W_hh (H, 4H), b (4H,)
    c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(g)
    h_t = σ(o) ⊙ tanh(c_t)

**GRU** (Cho et al. 2014). Gates in PyTorch's order (r, z, n)::

    [r_x, z_x, n_x] = x_t W_ih + b_ih                   W_ih (F, 3H), b_ih (3H,)
    [r_h, z_h, n_h] = h_{t-1} W_hh + b_hh               W_hh (H, 3H), b_hh (3H,)
    r = σ(r_x + r_h),  z = σ(z_x + z_h)
    n = tanh(n_x + r ⊙ n_h)                             reset_after=True (default)
    h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}

`reset_after=True` is the maths of PyTorch, cuDNN and Keras's default. `reset_after=False` is
Cho et al. v3 (Keras ``reset_after=False``): the reset gate applies *before* the matmul,
``n = tanh(n_x + (r ⊙ h_{t-1}) W_hn)``, and the one bias `b` (3H,) replaces `b_ih` / `b_hh`
(a second bias would be redundant there). Haiku's GRU swaps the roles of z and 1 − z.

**Speed.** The loop is one `jax.lax.scan`, so compile time does not grow with T; each step
does one fused (N, H) @ (H, G·H) matmul for all gates (two for a reset-before GRU). The part
that does not depend on h, ``x W_ih + b``, can be computed for all T steps in one big matmul
before the loop (``hoist=True``, a (T, N, G·H) array) or per step inside it
(``hoist=False``). The default (``hoist=None``) hoists on GPU/TPU and not on CPU, where XLA
measured slower with it. `unroll=k` unrolls k steps per loop iteration (less loop overhead
for small H, longer compiles). Without a mask, the LSTM and the reset-after GRU differentiate
through a hand-written backward pass (`jax.custom_vjp`, same values and gradients) whose weight
gradients are one matrix product over all steps after the reverse loop, not one per step.

**Inputs.** ``x`` (N, T, F), plus two keywords of ``apply``:

- ``mask=`` (N, T) boolean, True on real steps (build it from lengths with
  `jnet.data.mask_from_lengths`). Padded steps change neither the state nor the output: the
  state carries over unchanged and the output there is 0 (PyTorch's ``pad_packed_sequence``
  convention; Keras repeats the previous output instead). Padding may be anywhere, not only
  at the end, so ``reverse=True`` works on right-padded batches. Inside `serial` the same mask
  reaches every layer, so stacked recurrent layers skip the same steps;
- ``initial_state=`` the carry to start from (default zeros), e.g. an encoder's final state.

The carry (the state passed between steps) is ``(h, c)`` for the LSTM and ``h`` for the GRU,
each (N, H).

**Outputs.** ``return_sequences=False`` (default) gives the last hidden state (N, H) (for a
masked sequence, the state after its last real step; for ``reverse=True``, after step 0);
``return_sequences=True`` gives every step's h, (N, T, H), a plain array aligned with the
input steps also when ``reverse=True`` (Keras's ``go_backwards`` returns them reversed), so a
per-step `Dense` can follow. ``return_state=True`` outputs ``(y, final_carry)``.

**Initialisation** (Keras's choices; PyTorch uses U(±1/√H) for everything): `W_ih` Glorot
uniform (per gate, so with fans (F, H); Keras uses the whole (F, 4H)), `W_hh` orthogonal per
gate block (each (H, H) block of W_hh is an orthogonal matrix,
which keeps the recurrent Jacobian well conditioned at the start), biases zero, plus 1 on the
LSTM's forget-gate bias (``unit_forget_bias=True``; Jozefowicz et al. 2015) so the cell
remembers by default. Override with ``w_ih_init``, ``w_hh_init``, ``b_init`` (a
`jnet.initializers` name or any ``init(key, shape, dtype)``); each is called once per gate on
that gate's block, so every gate starts as if it were its own Dense layer. PyTorch's
initialisation: ``w_ih_init="torch", w_hh_init="torch", b_init="torch"`` (plus
``unit_forget_bias=False`` for an LSTM), where the LSTM's ``b`` is drawn as PyTorch's
``b_ih + b_hh``, a sum of two uniforms.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jnet import initializers
from jnet.layers.base import (
    Layer,
    LayerError,
    PyTree,
    apply_child,
    check_children,
    check_float,
    check_in_shape_rank,
    check_last_dim,
    check_mask,
    check_rank,
    container,
    init_child,
    split_key,
)
from jnet.layers.checks import is_int

Carry = Any  # (h, c) for the LSTM, h for the GRU


# ----------------------------------------------------------------------------------------
# The two cells as data: how to project inputs (hoisted out of the loop) and take one step.


class _Cell(NamedTuple):
    kind: str
    gates: int
    project: Callable[[PyTree, jax.Array], jax.Array]  # x (..., F) -> the h-free part (..., G·H)
    step: Callable[[PyTree, Carry, jax.Array], Carry]  # (params, carry, projected x_t) -> carry
    output: Callable[[Carry], jax.Array]  # carry -> h
    carry_of: Callable[[Any], Carry]  # an h-shaped value -> the carry made of it


def _gates(z: jax.Array, n: int) -> tuple[jax.Array, ...]:
    """Split a packed (..., n·H) pre-activation into its n gates."""
    return tuple(jnp.split(z, n, axis=-1))


def _lstm_project(params: PyTree, x: jax.Array) -> jax.Array:
    return x @ params["w_ih"] + params["b"]


def _lstm_step(params: PyTree, carry: Carry, xp: jax.Array) -> Carry:
    h, c = carry
    i, f, g, o = _gates(xp + h @ params["w_hh"], 4)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def _gru_project(params: PyTree, x: jax.Array) -> jax.Array:
    return x @ params["w_ih"] + params["b_ih" if "b_ih" in params else "b"]


def _gru_step(params: PyTree, h: jax.Array, xp: jax.Array) -> jax.Array:
    r_x, z_x, n_x = _gates(xp, 3)
    w_hh = params["w_hh"]
    if "b_hh" in params:  # reset after the matmul: one fused (H, 3H) matmul per step
        r_h, z_h, n_h = _gates(h @ w_hh + params["b_hh"], 3)
        r, z = jax.nn.sigmoid(r_x + r_h), jax.nn.sigmoid(z_x + z_h)
        n = jnp.tanh(n_x + r * n_h)
    else:  # reset before: the n-gate matmul needs r first
        hidden = h.shape[-1]
        r_h, z_h = _gates(h @ w_hh[:, : 2 * hidden], 2)
        r, z = jax.nn.sigmoid(r_x + r_h), jax.nn.sigmoid(z_x + z_h)
        n = jnp.tanh(n_x + (r * h) @ w_hh[:, 2 * hidden :])
    return (1.0 - z) * n + z * h


_LSTM = _Cell("LSTM", 4, _lstm_project, _lstm_step, lambda carry: carry[0], lambda z: (z, z))
_GRU = _Cell("GRU", 3, _gru_project, _gru_step, lambda h: h, lambda z: z)


def _init_params(cell: _Cell, key: jax.Array, in_features: int, hidden: int, inits: dict,
                 bias_names: tuple[str, ...], forget_bias: float) -> dict:
    """Params with each init called once per gate on that gate's block, then concatenated."""
    w_ih, w_hh, b = (initializers.get(inits[k], k) for k in ("w_ih_init", "w_hh_init", "b_init"))
    blocks: dict[str, tuple[Callable[..., jax.Array], tuple[int, ...]]] = {
        "w_ih": (w_ih, (in_features, hidden)), "w_hh": (w_hh, (hidden, hidden))}
    blocks.update({name: (b, (hidden,)) for name in bias_names})
    keys = jax.random.split(key, (len(blocks), cell.gates))
    # The context of PyTorch's rule, U(±1/sqrt(H)) for all (jnet.initializers); an LSTM's "b"
    # stands for PyTorch's b_ih + b_hh.
    summands = {"b": 2 if cell is _LSTM else 1}
    params = {
        name: jnp.concatenate([init(k, shape, jnp.float32, fan_in=hidden,
                                    summands=summands.get(name, 1)) for k in gate_keys], axis=-1)
        for (name, (init, shape)), gate_keys in zip(blocks.items(), keys, strict=True)
    }
    if forget_bias:  # LSTM only: the f block is the second of (i, f, g, o)
        params["b"] = params["b"].at[hidden : 2 * hidden].add(forget_bias)
    return params


# ----------------------------------------------------------------------------------------
# The scan.


def _check_params(kind: str, params: PyTree, names: tuple[str, ...], gates: int) -> int:
    """Raise unless `params` holds exactly `names` with consistent shapes; return H."""
    if not isinstance(params, dict) or set(params) != set(names):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise LayerError(
            kind,
            f"expected params with keys {sorted(names)}, got {got}. Pass the params this "
            "layer's init made (a GRU's keys depend on reset_after).",
        )
    hidden = params["w_hh"].shape[0]
    width = gates * hidden
    if params["w_hh"].shape != (hidden, width) or params["w_ih"].shape[-1:] != (width,):
        raise LayerError(
            kind,
            f"expected w_hh of shape (H, {gates}H) and w_ih of shape (F, {gates}H), got "
            f"{params['w_hh'].shape} and {params['w_ih'].shape}.",
        )
    return hidden


def _check_carry(kind: str, cell: _Cell, carry: Carry, n: int, hidden: int) -> Carry:
    want = cell.carry_of(jax.ShapeDtypeStruct((n, hidden), jnp.float32))
    # PyTreeDef compares with !=; jax's type stubs do not declare it
    if jax.tree.structure(carry) != jax.tree.structure(want) or any(  # type: ignore[operator]
        jnp.shape(c) != (n, hidden) for c in jax.tree.leaves(carry)
    ):
        what = "(h, c), each" if cell is _LSTM else "h of shape"
        raise LayerError(
            kind,
            f"expected initial_state {what} (N, H) = {(n, hidden)}, got "
            f"{jax.tree.map(jnp.shape, carry)}.",
        )
    return carry


def _scan(cell: _Cell, kind: str, params: PyTree, x: jax.Array, initial_state: Carry | None,
          mask: Any, reverse: bool, unroll: int | bool, hoist: bool | None,
          return_sequences: bool) -> tuple[jax.Array | None, Carry]:
    """Run `cell` over the time axis of `x` (N, T, F); returns (ys (N, T, H) or None, carry)."""
    check_rank(kind, x, 3, "(N, T, F)", "Add the time axis, e.g. `x[:, None, :]` for T = 1.")
    check_float(kind, x)
    check_last_dim(kind, x, params["w_ih"].shape[0])
    hidden = params["w_hh"].shape[0]
    n, t, _ = x.shape
    mask = check_mask(kind, mask, n, t)
    if initial_state is None:
        initial_state = cell.carry_of(jnp.zeros((n, hidden), x.dtype))
    carry = _check_carry(kind, cell, initial_state, n, hidden)
    params, carry = _in_dtype_of(x, params, carry)

    x = jnp.swapaxes(x, 0, 1)  # time-major for scan
    if _fused_applies(cell, params, mask):
        inside = not _should_hoist(hoist)
        xs = x if inside else cell.project(params, x)
        hs, carry = _fused_scan(cell.kind, inside, unroll, params,
                                jnp.flip(xs, 0) if reverse else xs, carry)
        if not return_sequences:
            return None, carry
        return jnp.swapaxes(jnp.flip(hs, 0) if reverse else hs, 0, 1), carry
    if _should_hoist(hoist):  # all T input projections in one matmul
        xs, step = cell.project(params, x), functools.partial(cell.step, params)
    else:
        xs, step = x, functools.partial(_step_on_input, cell, params)
    steps_mask = None if mask is None else jnp.swapaxes(mask, 0, 1)[..., None]

    def body(carry, inputs):
        x_t, m_t = inputs
        new = step(carry, x_t)
        if m_t is not None:  # padded step: keep the old state, output 0
            new = jax.tree.map(lambda a, b: jnp.where(m_t, a, b), new, carry)
        if not return_sequences:
            return new, None
        y = cell.output(new)
        return new, y if m_t is None else jnp.where(m_t, y, 0.0)

    carry, ys = jax.lax.scan(body, carry, (xs, steps_mask), reverse=reverse, unroll=unroll)
    return (jnp.swapaxes(ys, 0, 1) if return_sequences else None), carry


# ----------------------------------------------------------------------------------------
# The unmasked LSTM / reset-after GRU with a hand-written backward pass (`jax.custom_vjp`).
#
# Autodiff of `lax.scan` accumulates dW_hh (and dW_ih when the projection is inside the loop)
# with one small (H, N) @ (N, G·H) matmul per step inside the reverse loop. Here the reverse
# loop only carries dh (and dc) back through time and emits each step's pre-activation
# gradient dz_t (N, G·H); the weight gradients are then one large matmul each over all T·N
# rows after the loop (cuDNN's recipe): dW_hh = Σ_t h_{t-1}ᵀ dz_t, dW_ih = Σ_t x_tᵀ dz_t.
# The forward pass computes the same operations as `_lstm_step` / `_gru_step` (equal values)
# and saves the activated gates for the backward pass.


def _fused_forward(kind: str, inside: bool, unroll, params, xs, carry0):
    """Forward scan; returns ((hs (T, N, H), final carry), saved per-step arrays)."""
    w_hh = params["w_hh"]

    def body(carry, x_t):
        xp = _project(kind, params, x_t) if inside else x_t
        if kind == "LSTM":
            h, c = carry
            i, f, g, o = _gates(xp + h @ w_hh, 4)
            i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
            c = f * c + i * g
            h = o * jnp.tanh(c)
            return (h, c), (h, c, i, f, g, o)
        h = carry
        r_x, z_x, n_x = _gates(xp, 3)
        r_h, z_h, n_h = _gates(h @ w_hh + params["b_hh"], 3)
        r, z = jax.nn.sigmoid(r_x + r_h), jax.nn.sigmoid(z_x + z_h)
        n = jnp.tanh(n_x + r * n_h)
        h = (1.0 - z) * n + z * h
        return h, (h, r, z, n, n_h)

    carry, saved = jax.lax.scan(body, carry0, xs, unroll=unroll)
    return (saved[0], carry), saved


def _project(kind: str, params: PyTree, x: jax.Array) -> jax.Array:
    return (_lstm_project if kind == "LSTM" else _gru_project)(params, x)


def _lstm_reverse(w_hh, dhs, dcarry, saved, c0, unroll):
    """dz_t (T, N, 4H) of every step and (dh_0, dc_0), from the saved (h, c, i, f, g, o)."""
    _, cs, i, f, g, o = saved
    c_prev = jnp.concatenate([c0[None], cs[:-1]])

    def body(carry, inputs):
        dh, dc = carry
        dh_out, c, cp, i, f, g, o = inputs
        dh = dh + dh_out
        tc = jnp.tanh(c)
        dc = dc + dh * o * (1.0 - tc * tc)
        dz = jnp.concatenate([dc * g * i * (1.0 - i), dc * cp * f * (1.0 - f),
                              dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)], axis=-1)
        return (dz @ w_hh.T, dc * f), dz

    (dh0, dc0), dz = jax.lax.scan(body, dcarry, (dhs, cs, c_prev, i, f, g, o), reverse=True,
                                  unroll=unroll)
    return dz, dz, (dh0, dc0)


def _gru_reverse(w_hh, dhs, dh_last, saved, h0, unroll):
    """(dz_x, dz_h) (T, N, 3H) of every step (the input and recurrent pre-activations differ
    in the n gate: ∂n_h = r ∂n_x) and dh_0, from the saved (h, r, z, n, n_h)."""
    hs, r, z, n, n_h = saved
    h_prev = jnp.concatenate([h0[None], hs[:-1]])

    def body(dh, inputs):
        dh_out, hp, r, z, n, nh = inputs
        dh = dh + dh_out
        dn = dh * (1.0 - z) * (1.0 - n * n)
        dr = dn * nh * r * (1.0 - r)
        dzg = dh * (hp - n) * z * (1.0 - z)
        dz_h = jnp.concatenate([dr, dzg, dn * r], axis=-1)
        return dh * z + dz_h @ w_hh.T, (jnp.concatenate([dr, dzg, dn], axis=-1), dz_h)

    dh0, (dz_x, dz_h) = jax.lax.scan(body, dh_last, (dhs, h_prev, r, z, n, n_h), reverse=True,
                                     unroll=unroll)
    return dz_x, dz_h, dh0


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _fused_scan(kind: str, inside: bool, unroll, params, xs, carry0):
    """``(hs (T, N, H), final carry)`` of the scan over time-major `xs`: the input x_t (N, F)
    when `inside` (projected in the loop), else the projected x_t W_ih + b (N, G·H)."""
    return _fused_forward(kind, inside, unroll, params, xs, carry0)[0]


def _fused_scan_fwd(kind, inside, unroll, params, xs, carry0):
    out, saved = _fused_forward(kind, inside, unroll, params, xs, carry0)
    return out, (params, xs, carry0, saved)


def _fused_scan_bwd(kind, inside, unroll, residuals, cotangents):
    params, xs, carry0, saved = residuals
    dhs, dcarry = cotangents
    flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731 (T, N, K) -> (T·N, K)
    if kind == "LSTM":
        dz_x, dz_h, dcarry0 = _lstm_reverse(params["w_hh"], dhs, dcarry, saved, carry0[1], unroll)
        h0 = carry0[0]
    else:
        dz_x, dz_h, dcarry0 = _gru_reverse(params["w_hh"], dhs, dcarry, saved, carry0, unroll)
        h0 = carry0
    h_prev = jnp.concatenate([h0[None], saved[0][:-1]])
    grads = {"w_hh": flat(h_prev).T @ flat(dz_h)}
    if kind == "GRU":
        grads["b_hh"] = jnp.sum(dz_h, axis=(0, 1))
    if inside:  # the input projection's backward, hoisted: one matmul over all steps
        grads["w_ih"] = flat(xs).T @ flat(dz_x)
        grads["b" if kind == "LSTM" else "b_ih"] = jnp.sum(dz_x, axis=(0, 1))
        dxs = dz_x @ params["w_ih"].T
    else:
        dxs = dz_x
    grads = {name: grads.get(name, jnp.zeros_like(value)) for name, value in params.items()}
    return grads, dxs, dcarry0


_fused_scan.defvjp(_fused_scan_fwd, _fused_scan_bwd)


def _fused_applies(cell: _Cell, params: PyTree, mask: Any) -> bool:
    """The hand-written backward covers unmasked LSTMs and reset-after GRUs."""
    return mask is None and (cell is _LSTM or "b_hh" in params)


def _in_dtype_of(x: jax.Array, *trees: PyTree) -> tuple[PyTree, ...]:
    """`trees` (params, carry) cast to the dtype of `x`: the layer computes in its input's
    dtype, as `Dense` and `Conv2D` do. Without it a bfloat16 input meets float32 params and
    the scan's carry would change dtype from one step to the next (a TypeError in scan)."""
    return tuple(jax.tree.map(lambda a: jnp.asarray(a, x.dtype), tree) for tree in trees)


def _should_hoist(hoist: bool | None) -> bool:
    """Hoist the input projection out of the loop? None: not on CPU, where XLA measured slower
    with it (it reads each step's gates out of a (T, N, G·H) buffer; see README, Recurrent
    layers), and yes on accelerators, where one big matmul beats T small ones (cuDNN's choice)."""
    return jax.default_backend() != "cpu" if hoist is None else bool(hoist)


def lstm_scan(params: PyTree, x: jax.Array, initial_state: Carry | None = None,
              mask: Any = None, *, reverse: bool = False, unroll: int | bool = 1,
              hoist: bool | None = None) -> tuple[jax.Array, Carry]:
    """Run an LSTM over `x` (N, T, F); returns ``(ys (N, T, H), (h, c))``.

    `params` as made by `LSTM(...).init`: ``{"w_ih": (F, 4H), "w_hh": (H, 4H), "b": (4H,)}``,
    gates (i, f, g, o). `initial_state` is ``(h0, c0)``, each (N, H) (default zeros); `mask` is
    (N, T) boolean, True on real steps. See the module docstring for the equations.
    """
    _check_params("LSTM", params, ("w_ih", "w_hh", "b"), 4)
    ys, carry = _scan(_LSTM, "LSTM", params, x, initial_state, mask, reverse, unroll, hoist,
                      True)
    assert ys is not None  # return_sequences=True: every step's h
    return ys, carry


def gru_scan(params: PyTree, x: jax.Array, initial_state: jax.Array | None = None,
             mask: Any = None, *, reverse: bool = False, unroll: int | bool = 1,
             hoist: bool | None = None) -> tuple[jax.Array, jax.Array]:
    """Run a GRU over `x` (N, T, F); returns ``(ys (N, T, H), h)``.

    `params` as made by `GRU(...).init`; the reset convention follows from their keys:
    ``{"w_ih", "w_hh", "b_ih", "b_hh"}`` is reset-after (PyTorch), ``{"w_ih", "w_hh", "b"}``
    reset-before (Cho et al. v3). Gates (r, z, n). `initial_state` is h0 (N, H).
    """
    _check_gru_params("GRU", params)
    ys, h = _scan(_GRU, "GRU", params, x, initial_state, mask, reverse, unroll, hoist, True)
    assert ys is not None  # return_sequences=True: every step's h
    return ys, h


def _check_gru_params(kind: str, params: PyTree) -> int:
    names = ("w_ih", "w_hh", "b") if isinstance(params, dict) and "b" in params else (
        "w_ih", "w_hh", "b_ih", "b_hh")
    return _check_params(kind, params, names, 3)


def _step_on_input(cell: _Cell, params: PyTree, carry: Carry, x: jax.Array) -> Carry:
    return cell.step(params, carry, cell.project(params, x))


def lstm_step(params: PyTree, carry: Carry, x: jax.Array) -> Carry:
    """One LSTM step: ``(h, c), x_t (N, F) -> (h', c')``."""
    return _step_on_input(_LSTM, params, carry, x)


def gru_step(params: PyTree, h: jax.Array, x: jax.Array) -> jax.Array:
    """One GRU step: ``h, x_t (N, F) -> h'`` (reset convention from the params' keys)."""
    return _step_on_input(_GRU, params, h, x)


# ----------------------------------------------------------------------------------------
# Layers.


def _sequence_shape(kind: str, in_shape: tuple) -> tuple[int, int]:
    check_in_shape_rank(kind, in_shape, 2, "(T, F)",
                        "Recurrent layers take sequences; add a time axis.")
    return in_shape


def _non_default(hidden: int, **options: tuple[Any, Any]) -> dict:
    """The config `repr` shows: `hidden` plus each option given as ``(value, default)`` whose
    value differs from its default."""
    return {"hidden": hidden, **{k: v for k, (v, default) in options.items() if v != default}}


def _check_hidden(kind: str, hidden: Any) -> None:
    if not is_int(hidden) or hidden < 1:
        raise LayerError(kind, f"expected hidden to be a positive int, got {hidden!r}.")


def _recurrent(cell: _Cell, kind: str, hidden: int, bias_names: tuple[str, ...], inits: dict,
               forget_bias: float, *, return_sequences: bool, return_state: bool, reverse: bool,
               unroll: int | bool, hoist: bool | None, config: dict, name: str | None) -> Layer:
    _check_hidden(kind, hidden)
    names = ("w_ih", "w_hh", *bias_names)

    def init_fn(key, in_shape):
        steps, features = _sequence_shape(kind, in_shape)
        params = _init_params(cell, key, features, hidden, inits, bias_names, forget_bias)
        out_shape = (steps, hidden) if return_sequences else (hidden,)
        if return_state:
            out_shape = (out_shape, cell.carry_of((hidden,)))
        return out_shape, params, {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None, initial_state=None):
        _check_params(kind, params, names, cell.gates)
        ys, carry = _scan(cell, kind, params, x, initial_state, mask, reverse, unroll, hoist,
                          return_sequences)
        y = ys if return_sequences else cell.output(carry)
        return ((y, carry) if return_state else y), state

    return Layer(init_fn, apply_fn, kind=kind, name=name, config=config,
                 side_inputs=("initial_state",))


_INIT_DOC = """w_ih_init, w_hh_init, b_init: initializers (a `jnet.initializers` name or an
            ``init(key, shape, dtype)``), each called once per gate on that gate's block,
            (F, H), (H, H) and (H,). Defaults glorot_uniform, orthogonal, zeros."""


def LSTM(hidden: int, return_sequences: bool = False, return_state: bool = False, *,
         reverse: bool = False, unroll: int | bool = 1, hoist: bool | None = None,
         w_ih_init: Any = "glorot_uniform", w_hh_init: Any = "orthogonal", b_init: Any = "zeros",
         unit_forget_bias: bool = True, name: str | None = None) -> Layer:
    """Long short-term memory over (N, T, F) sequences (Hochreiter & Schmidhuber 1997).

    Params ``{"w_ih": (F, 4H), "w_hh": (H, 4H), "b": (4H,)}``, gates in PyTorch's order
    (i, f, g, o); one bias (PyTorch's b_ih + b_hh). Equations, the ``mask=`` and
    ``initial_state=`` keywords, outputs and initialisation: see `jnet.layers.recurrent`.

    Args:
        hidden: H, the size of h and c.
        return_sequences: output every step's h (N, T, H) instead of the last one (N, H).
        return_state: output ``(y, (h, c))`` with the final carry.
        reverse: run from the last step to the first (outputs stay aligned with the input).
        unroll: steps per loop iteration of `jax.lax.scan`.
        hoist: compute ``x W_ih + b`` for all steps before the loop (True) or inside it
            (False); None: what measured faster on the current backend (not on CPU).
        {inits}
        unit_forget_bias: add 1 to the forget-gate bias after `b_init` (Keras default).
    """
    config = _non_default(hidden, return_sequences=(return_sequences, False),
                          return_state=(return_state, False), reverse=(reverse, False))
    inits = dict(w_ih_init=w_ih_init, w_hh_init=w_hh_init, b_init=b_init)
    return _recurrent(_LSTM, "LSTM", hidden, ("b",), inits, float(unit_forget_bias),
                      return_sequences=return_sequences, return_state=return_state,
                      reverse=reverse, unroll=unroll, hoist=hoist, config=config, name=name)


def GRU(hidden: int, return_sequences: bool = False, return_state: bool = False, *,
        reset_after: bool = True, reverse: bool = False, unroll: int | bool = 1,
        hoist: bool | None = None, w_ih_init: Any = "glorot_uniform",
        w_hh_init: Any = "orthogonal", b_init: Any = "zeros", name: str | None = None) -> Layer:
    """Gated recurrent unit over (N, T, F) sequences (Cho et al. 2014).

    Params ``{"w_ih": (F, 3H), "w_hh": (H, 3H), "b_ih": (3H,), "b_hh": (3H,)}`` with
    ``reset_after=True`` (PyTorch's maths), ``{"w_ih", "w_hh", "b": (3H,)}`` with
    ``reset_after=False`` (Cho et al. v3); gates (r, z, n). Equations, the ``mask=`` and
    ``initial_state=`` keywords, outputs and initialisation: see `jnet.layers.recurrent`.

    Args:
        hidden: H, the size of h.
        return_sequences: output every step's h (N, T, H) instead of the last one (N, H).
        return_state: output ``(y, h)`` with the final state.
        reset_after: apply the reset gate after the recurrent matmul (PyTorch, Keras default).
        reverse: run from the last step to the first (outputs stay aligned with the input).
        unroll: steps per loop iteration of `jax.lax.scan`.
        hoist: compute ``x W_ih + b`` for all steps before the loop (True) or inside it
            (False); None: what measured faster on the current backend (not on CPU).
        {inits}
    """
    config = _non_default(hidden, return_sequences=(return_sequences, False),
                          return_state=(return_state, False), reset_after=(reset_after, True),
                          reverse=(reverse, False))
    inits = dict(w_ih_init=w_ih_init, w_hh_init=w_hh_init, b_init=b_init)
    return _recurrent(_GRU, "GRU", hidden, _gru_biases(reset_after), inits, 0.0,
                      return_sequences=return_sequences, return_state=return_state,
                      reverse=reverse, unroll=unroll, hoist=hoist, config=config, name=name)


def _gru_biases(reset_after: bool) -> tuple[str, ...]:
    return ("b_ih", "b_hh") if reset_after else ("b",)


def _cell_layer(cell: _Cell, kind: str, hidden: int, bias_names: tuple[str, ...], inits: dict,
                forget_bias: float, step: Callable[[PyTree, Carry, jax.Array], Carry],
                config: dict, name: str | None) -> Layer:
    _check_hidden(kind, hidden)
    names = ("w_ih", "w_hh", *bias_names)

    def init_fn(key, in_shape):
        check_in_shape_rank(kind, in_shape, 1, "(F,)",
                            "A cell takes one time step; use the sequence layer for (T, F).")
        params = _init_params(cell, key, in_shape[0], hidden, inits, bias_names, forget_bias)
        return (cell.carry_of((hidden,)), (hidden,)), params, {}

    def apply_fn(params, state, inputs, *, key=None, train=False, mask=None):
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise LayerError(
                kind,
                f"expected a pair (carry, x_t) with x_t (N, F) and carry None (zeros) or the "
                f"previous carry, got {type(inputs).__name__}. Use the sequence layer for "
                "(N, T, F) inputs.",
            )
        hid = _check_params(kind, params, names, cell.gates)
        carry, x = inputs
        check_rank(kind, x, 2, "(N, F)", "A cell takes one time step.")
        check_float(kind, x)
        check_last_dim(kind, x, params["w_ih"].shape[0])
        if carry is None:
            carry = cell.carry_of(jnp.zeros((x.shape[0], hid), x.dtype))
        carry = _check_carry(kind, cell, carry, x.shape[0], hid)
        carry = step(*_in_dtype_of(x, params, carry), x)
        return (carry, cell.output(carry)), state

    return Layer(init_fn, apply_fn, kind=kind, name=name, config=config)


def LSTMCell(hidden: int, *, w_ih_init: Any = "glorot_uniform", w_hh_init: Any = "orthogonal",
             b_init: Any = "zeros", unit_forget_bias: bool = True,
             name: str | None = None) -> Layer:
    """One LSTM step, for writing your own loop; same params, maths and inits as `LSTM`.

    ``init(key, (F,))``; ``apply(params, state, (carry, x_t)) -> ((carry', h'), state)`` with
    x_t (N, F) and carry ``(h, c)`` (each (N, H)) or None for zeros. It fits `jax.lax.scan`::

        step = lambda carry, x_t: cell.apply(params, {}, (carry, x_t))[0]
        carry, hs = jax.lax.scan(step, carry0, xs)       # xs time-major (T, N, F)
    """
    config = {"hidden": hidden}
    inits = dict(w_ih_init=w_ih_init, w_hh_init=w_hh_init, b_init=b_init)
    return _cell_layer(_LSTM, "LSTMCell", hidden, ("b",), inits, float(unit_forget_bias),
                       lstm_step, config, name)


def GRUCell(hidden: int, *, reset_after: bool = True, w_ih_init: Any = "glorot_uniform",
            w_hh_init: Any = "orthogonal", b_init: Any = "zeros",
            name: str | None = None) -> Layer:
    """One GRU step, for writing your own loop; same params, maths and inits as `GRU`.

    ``init(key, (F,))``; ``apply(params, state, (h, x_t)) -> ((h', h'), state)`` with x_t
    (N, F) and h (N, H) or None for zeros (the carry and the output are both h', so the
    result fits `jax.lax.scan` like `LSTMCell`'s).
    """
    config = _non_default(hidden, reset_after=(reset_after, True))
    inits = dict(w_ih_init=w_ih_init, w_hh_init=w_hh_init, b_init=b_init)
    return _cell_layer(_GRU, "GRUCell", hidden, _gru_biases(reset_after), inits, 0.0, gru_step,
                       config, name)


LSTM.__doc__ = (LSTM.__doc__ or "").replace("{inits}", _INIT_DOC)
GRU.__doc__ = (GRU.__doc__ or "").replace("{inits}", _INIT_DOC)


_MERGES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": jnp.add,
    "mean": lambda a, b: (a + b) / 2,
    "mul": jnp.multiply,
}


def _reverse_time(tree: Any) -> Any:
    """Flip the time axis (axis 1) of every (N, T, ...) array in `tree`."""
    return jax.tree.map(lambda a: jnp.flip(a, axis=1), tree)


def Bidirectional(forward: Layer, backward: Layer | None = None, merge: str = "concat",
                  name: str | None = None) -> Layer:
    """Run one sequence layer forwards in time and another backwards, and merge the outputs.

    ``Bidirectional(LSTM(64, return_sequences=True))`` or ``Bidirectional(LSTM(64), GRU(32))``.
    Both layers are ordinary forward-running layers; this wrapper feeds `backward` the input
    (and the mask) reversed in time and reverses its per-step outputs back, so both
    directions' outputs are aligned with the input steps. `backward` defaults to the same
    layer as `forward` with parameters of its own: ``{"forward": ..., "backward": ...}``
    (PyTorch's ``*_reverse`` weights are the backward ones). Because padded steps are skipped,
    reversing a right-padded batch runs the backward layer over exactly the real steps.

    With ``return_sequences=False`` the forward half is the state after the last real step
    and the backward half the state after step 0 (PyTorch's ``h_n``). With
    ``return_state=True`` on both layers the output is ``(y, (forward_carry, backward_carry))``
    and ``initial_state=`` must be such a pair.

    Args:
        forward: the layer run forwards, e.g. ``LSTM(64, return_sequences=True)``.
        backward: the layer run backwards (default: `forward` again, with its own params). Do
            not give it ``reverse=True``: the wrapper already reverses its input.
        merge: ``"concat"`` (default, PyTorch and Keras; last axis H_f + H_b), ``"sum"``,
            ``"mean"`` or ``"mul"`` (these need H_f = H_b).

    Raises:
        LayerError: a non-layer, an unknown merge, or outputs that do not merge.
    """
    backward = forward if backward is None else backward
    for what, layer in (("forward", forward), ("backward", backward)):
        if not isinstance(layer, Layer):
            raise LayerError("Bidirectional", f"expected a Layer as {what}, got "
                             f"{type(layer).__name__}, e.g. `Bidirectional(L.LSTM(64))`.")
    if merge not in _MERGES:
        raise LayerError("Bidirectional", f"merge must be one of {sorted(_MERGES)}, got {merge!r}.")
    return container(functools.partial(_bidirectional, merge=merge),
                     {"forward": forward, "backward": backward}, name=name)


def _bidirectional(children: dict[str, Layer], *, merge: str) -> Layer:
    """`forward` and `backward` (reversed in time) merged by `merge` (the definition of
    `Bidirectional`)."""
    forward, backward = children["forward"], children["backward"]
    names, merge_fn = ("forward", "backward"), _MERGES[merge]

    def merge_shapes(a, b):
        try:
            return jax.eval_shape(merge_fn, jax.ShapeDtypeStruct(a, jnp.float32),
                                  jax.ShapeDtypeStruct(b, jnp.float32)).shape
        except (TypeError, ValueError):
            raise LayerError("Bidirectional", f"cannot merge outputs of shapes {a} and {b} with "
                             f"{merge!r}; use merge='concat' or equal hidden sizes.") from None

    def init_fn(key, in_shape):
        (shape_f, p_f, s_f), (shape_b, p_b, s_b) = (
            init_child(n, layer, k, in_shape)
            for n, layer, k in zip(names, (forward, backward), split_key(key, 2), strict=True))
        if isinstance(shape_f[0], tuple):  # (y, carry): the layers return their state
            y_shape = merge_shapes(shape_f[0], shape_b[0])
            out_shape = (y_shape, (shape_f[1], shape_b[1]))
        else:
            out_shape = merge_shapes(shape_f, shape_b)
        return out_shape, {"forward": p_f, "backward": p_b}, {"forward": s_f, "backward": s_b}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None, initial_state=None):
        check_children("Bidirectional", "params", params, names)
        check_children("Bidirectional", "state", state, names)
        starts = _initial_state_pair(initial_state)
        k_f, k_b = split_key(key, 2)
        out_f, s_f = apply_child("forward", forward, params, state, x, key=k_f, train=train,
                                 mask=mask, **starts[0])
        out_b, s_b = apply_child("backward", backward, params, state, _reverse_time(x), key=k_b,
                                 train=train, mask=None if mask is None else _reverse_time(mask),
                                 **starts[1])
        new_state = {"forward": s_f, "backward": s_b}
        with_state = isinstance(out_f, tuple)  # (y, carry): the layers return their state
        (y_f, carry_f), (y_b, carry_b) = (out_f, out_b) if with_state else ((out_f, None),
                                                                            (out_b, None))
        if jnp.ndim(y_b) == 3:  # per-step outputs: back in input order
            y_b = _reverse_time(y_b)
        y = merge_fn(y_f, y_b)
        return ((y, (carry_f, carry_b)) if with_state else y), new_state

    return Layer(init_fn, apply_fn, kind="Bidirectional", config={"merge": merge},
                 side_inputs=("initial_state",))


def _initial_state_pair(initial_state: Any) -> tuple[dict, dict]:
    """``initial_state=`` of `Bidirectional` as the keywords of its two children."""
    if initial_state is None:
        return {}, {}
    if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 2:
        raise LayerError(
            "Bidirectional",
            "expected initial_state as a pair (forward_carry, backward_carry), got "
            f"{type(initial_state).__name__}.",
        )
    return {"initial_state": initial_state[0]}, {"initial_state": initial_state[1]}
