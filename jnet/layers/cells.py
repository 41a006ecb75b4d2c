"""The LSTM and GRU equations (each written once, here) and the scans over time that run them.

A cell is data (`Cell`): how to project an input step, the recurrent matmul, and the
elementwise gate maths. The sequence layers (`jnet.layers.recurrent`), the one-step cells and
the hand-written backward pass (`jnet.layers.fused_rnn`) all evaluate these functions; the
equations and conventions are documented in `jnet.layers.recurrent`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jnet import initializers
from jnet.layers.base import (
    LayerError,
    PyTree,
    check_float,
    check_last_dim,
    check_mask,
    check_rank,
)
from jnet.layers.fused_rnn import fused_scan, projected, scan_inputs, step_on_input

Carry = Any  # (h, c) for the LSTM, h for the GRU


class Cell(NamedTuple):
    """One recurrent cell's maths. A step from ``carry`` on input x_t is

        pre = combine(project(params, x_t), hidden(params, output(carry)))
        carry', saved = activate(pre, carry)

    `project` is the h-free part (hoistable out of the loop), `hidden` the recurrent matmul,
    `combine` linear and `activate` elementwise; `saved` are its activated gates, from which
    ``activate_vjp(saved, carry, carry', d carry') -> (d pre, d carry)`` is its backward pass
    (the hand-written backward of `jnet.layers.fused_rnn`; autodiff would save twice as much).
    A cell whose reset gate must act before the recurrent matmul (the reset-before GRU) has no
    such split: ``hidden=None`` and its own `step`, and no hand-written backward pass.
    """

    kind: str
    gates: int
    project: Callable[[PyTree, jax.Array], jax.Array]  # x (..., F) -> (..., G·H)
    hidden: Callable[[PyTree, jax.Array], jax.Array] | None  # h (..., H) -> (..., G·H)
    combine: Callable[[jax.Array, jax.Array], Any]  # (projected x, hidden) -> pre-activations
    activate: Callable[[Any, Carry], tuple[Carry, Any]]  # (pre, carry) -> (carry', saved)
    activate_vjp: Callable[[Any, Carry, Carry, Carry], tuple[Any, Carry]] | None
    output: Callable[[Carry], jax.Array]  # carry -> h
    carry_of: Callable[[Any], Carry]  # an h-shaped value -> the carry made of it
    bias_names: tuple[str, ...]
    own_step: Callable[[PyTree, Carry, jax.Array], Carry] | None = None

    def step(self, params: PyTree, carry: Carry, xp: jax.Array) -> Carry:
        """One step from the projected input ``xp = project(params, x_t)``."""
        if self.hidden is None:
            assert self.own_step is not None  # a cell without the split brings its step
            return self.own_step(params, carry, xp)
        pre = self.combine(xp, self.hidden(params, self.output(carry)))
        return self.activate(pre, carry)[0]


def _gates(z: jax.Array, n: int) -> tuple[jax.Array, ...]:
    """Split a packed (..., n·H) pre-activation into its n gates."""
    return tuple(jnp.split(z, n, axis=-1))


def _project(params: PyTree, x: jax.Array) -> jax.Array:
    """x W_ih + b (b_ih for a reset-after GRU)."""
    return x @ params["w_ih"] + params["b_ih" if "b_ih" in params else "b"]


def _lstm_hidden(params: PyTree, h: jax.Array) -> jax.Array:
    return h @ params["w_hh"]


def _lstm_activate(z: jax.Array, carry: Carry) -> tuple[Carry, tuple[jax.Array, ...]]:
    """[i, f, g, o] = z; c' = σ(f) c + σ(i) tanh(g); h' = σ(o) tanh(c')."""
    i, f, g, o = _gates(z, 4)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * carry[1] + i * g
    return (o * jnp.tanh(c), c), (i, f, g, o)


def _lstm_activate_vjp(saved, before: Carry, after: Carry, d_after: Carry):
    """dc = dc' + dh' o (1 - tanh²c'); dz = [dc g σ'(i), dc c σ'(f), dc i (1 - g²),
    dh' tanh(c') σ'(o)] with σ' = σ(1 - σ); the carry's: (0, dc f)."""
    i, f, g, o = saved
    dh, dc = d_after
    tc = jnp.tanh(after[1])
    dc = dc + dh * o * (1.0 - tc * tc)
    dz = jnp.concatenate([dc * g * i * (1.0 - i), dc * before[1] * f * (1.0 - f),
                          dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)], axis=-1)
    return dz, (jnp.zeros_like(dh), dc * f)


def _gru_hidden(params: PyTree, h: jax.Array) -> jax.Array:
    return h @ params["w_hh"] + params["b_hh"]


def _gru_update(r_x, z_x, r_h, z_h) -> tuple[jax.Array, jax.Array]:
    """The reset and update gates r = σ(r_x + r_h), z = σ(z_x + z_h) of either GRU."""
    return jax.nn.sigmoid(r_x + r_h), jax.nn.sigmoid(z_x + z_h)


def _gru_activate(pre: tuple[jax.Array, jax.Array], h: jax.Array):
    """Reset after the matmul: n = tanh(n_x + r n_h); h' = (1 - z) n + z h."""
    r_x, z_x, n_x = _gates(pre[0], 3)
    r_h, z_h, n_h = _gates(pre[1], 3)
    r, z = _gru_update(r_x, z_x, r_h, z_h)
    n = jnp.tanh(n_x + r * n_h)
    return (1.0 - z) * n + z * h, (r, z, n, n_h)


def _gru_activate_vjp(saved, h: jax.Array, after: jax.Array, dh: jax.Array):
    """dn = dh' (1 - z)(1 - n²); dr = dn n_h σ'(r); dz = dh' (h - n) σ'(z); the input part
    [dr, dz, dn], the recurrent part [dr, dz, dn r]; the carry's: dh' z."""
    r, z, n, n_h = saved
    dn = dh * (1.0 - z) * (1.0 - n * n)
    dr = dn * n_h * r * (1.0 - r)
    dz = dh * (h - n) * z * (1.0 - z)
    return ((jnp.concatenate([dr, dz, dn], axis=-1), jnp.concatenate([dr, dz, dn * r], axis=-1)),
            dh * z)


def _gru_before_step(params: PyTree, h: jax.Array, xp: jax.Array) -> jax.Array:
    """Reset before the matmul: the n-gate matmul needs r first, n = tanh(n_x + (r h) W_hn)."""
    r_x, z_x, n_x = _gates(xp, 3)
    hidden = h.shape[-1]
    w_hh = params["w_hh"]
    r_h, z_h = _gates(h @ w_hh[:, : 2 * hidden], 2)
    r, z = _gru_update(r_x, z_x, r_h, z_h)
    return (1.0 - z) * jnp.tanh(n_x + (r * h) @ w_hh[:, 2 * hidden :]) + z * h


LSTM_CELL = Cell("LSTM", 4, _project, _lstm_hidden, jnp.add, _lstm_activate, _lstm_activate_vjp,
                 lambda carry: carry[0], lambda z: (z, z), ("b",))
GRU_CELL = Cell("GRU", 3, _project, _gru_hidden, lambda xp, zh: (xp, zh), _gru_activate,
                _gru_activate_vjp, lambda h: h, lambda z: z, ("b_ih", "b_hh"))
GRU_BEFORE_CELL = GRU_CELL._replace(hidden=None, activate_vjp=None, bias_names=("b",),
                                    own_step=_gru_before_step)


def gru_cell(reset_after: bool) -> Cell:
    return GRU_CELL if reset_after else GRU_BEFORE_CELL


def init_params(cell: Cell, key: jax.Array, in_features: int, hidden: int, inits: dict,
                forget_bias: float) -> dict:
    """Params with each init called once per gate on that gate's block, then concatenated."""
    w_ih, w_hh, b = (initializers.get(inits[k], k) for k in ("w_ih_init", "w_hh_init", "b_init"))
    blocks: dict[str, tuple[Callable[..., jax.Array], tuple[int, ...]]] = {
        "w_ih": (w_ih, (in_features, hidden)), "w_hh": (w_hh, (hidden, hidden))}
    blocks.update({name: (b, (hidden,)) for name in cell.bias_names})
    keys = jax.random.split(key, (len(blocks), cell.gates))
    # The context of PyTorch's rule, U(±1/sqrt(H)) for all (jnet.initializers); an LSTM's "b"
    # stands for PyTorch's b_ih + b_hh.
    summands = {"b": 2 if cell is LSTM_CELL else 1}
    params = {
        name: jnp.concatenate([init(k, shape, jnp.float32, fan_in=hidden,
                                    summands=summands.get(name, 1)) for k in gate_keys], axis=-1)
        for (name, (init, shape)), gate_keys in zip(blocks.items(), keys, strict=True)
    }
    if forget_bias:  # LSTM only: the f block is the second of (i, f, g, o)
        params["b"] = params["b"].at[hidden : 2 * hidden].add(forget_bias)
    return params


def check_params(kind: str, cell: Cell, params: PyTree) -> int:
    """Raise unless `params` holds exactly the cell's names with consistent shapes; return H."""
    names = ("w_ih", "w_hh", *cell.bias_names)
    if not isinstance(params, dict) or set(params) != set(names):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise LayerError(
            kind,
            f"expected params with keys {sorted(names)}, got {got}. Pass the params this "
            "layer's init made (a GRU's keys depend on reset_after).",
        )
    hidden = params["w_hh"].shape[0]
    width = cell.gates * hidden
    if params["w_hh"].shape != (hidden, width) or params["w_ih"].shape[-1:] != (width,):
        raise LayerError(
            kind,
            f"expected w_hh of shape (H, {cell.gates}H) and w_ih of shape (F, {cell.gates}H), "
            f"got {params['w_hh'].shape} and {params['w_ih'].shape}.",
        )
    return hidden


def check_carry(kind: str, cell: Cell, carry: Carry, n: int, hidden: int) -> Carry:
    want = cell.carry_of(jax.ShapeDtypeStruct((n, hidden), jnp.float32))
    # PyTreeDef compares with !=; jax's type stubs do not declare it
    if jax.tree.structure(carry) != jax.tree.structure(want) or any(  # type: ignore[operator]
        jnp.shape(c) != (n, hidden) for c in jax.tree.leaves(carry)
    ):
        what = "(h, c), each" if cell is LSTM_CELL else "h of shape"
        raise LayerError(
            kind,
            f"expected initial_state {what} (N, H) = {(n, hidden)}, got "
            f"{jax.tree.map(jnp.shape, carry)}.",
        )
    return carry


def in_dtype_of(x: jax.Array, *trees: PyTree) -> tuple[PyTree, ...]:
    """`trees` (params, carry) cast to the dtype of `x`: the layer computes in its input's
    dtype, as `Dense` and `Conv2D` do. Without it a bfloat16 input meets float32 params and
    the scan's carry would change dtype from one step to the next (a TypeError in scan)."""
    return tuple(jax.tree.map(lambda a: jnp.asarray(a, x.dtype), tree) for tree in trees)


def should_hoist(hoist: bool | None) -> bool:
    """Hoist the input projection out of the loop? None: not on CPU, where XLA measured slower
    with it (it reads each step's gates out of a (T, N, G·H) buffer; scripts/rnn_timing.py),
    and yes on accelerators, where one big matmul beats T small ones (cuDNN's choice)."""
    return jax.default_backend() != "cpu" if hoist is None else bool(hoist)


def time_mask(kind: str, mask: Any, n: int, t: int) -> jax.Array | None:
    """The (N, T) step mask, or None: a boolean (N,) mask marks real examples of a padded
    batch (for batch statistics), which pads no step, so the unmasked path runs."""
    if mask is None or isinstance(mask, (tuple, list)) or jnp.ndim(mask) != 1:
        return check_mask(kind, mask, n, t)
    if jnp.shape(mask) != (n,) or jnp.result_type(mask) != jnp.bool_:
        raise LayerError(
            kind,
            f"expected mask= as a boolean (N, T) = {(n, t)} step mask or a boolean (N,) = "
            f"({n},) example mask, got shape {jnp.shape(mask)} dtype {jnp.result_type(mask)}.",
        )
    return None


def fused_applies(cell: Cell, mask: Any) -> bool:
    """The hand-written backward covers unmasked LSTMs and reset-after GRUs."""
    return mask is None and cell.hidden is not None


def scan(cell: Cell, kind: str, params: PyTree, x: jax.Array, initial_state: Carry | None,
         mask: Any, *, reverse: bool = False, unroll: int | bool = 1, hoist: bool | None = None,
         return_sequences: bool = True, fast_grad: bool = True) -> tuple[jax.Array | None, Carry]:
    """Run `cell` over the time axis of `x` (N, T, F); returns (ys (N, T, H) or None, carry).
    Unmasked, with `fast_grad`, a cell with the hidden / activate split runs `fused_scan`."""
    check_rank(kind, x, 3, "(N, T, F)", "Add the time axis, e.g. `x[:, None, :]` for T = 1.")
    check_float(kind, x)
    check_last_dim(kind, x, params["w_ih"].shape[0])
    hidden = params["w_hh"].shape[0]
    n, t, _ = x.shape
    mask = time_mask(kind, mask, n, t)
    if initial_state is None:
        initial_state = cell.carry_of(jnp.zeros((n, hidden), x.dtype))
    carry = check_carry(kind, cell, initial_state, n, hidden)
    params, carry = in_dtype_of(x, params, carry)

    x = jnp.swapaxes(x, 0, 1)  # time-major for scan
    hoisted = should_hoist(hoist)
    if fast_grad and fused_applies(cell, mask):
        hs, carry = fused_scan(cell, hoisted, unroll, params, jnp.flip(x, 0) if reverse else x,
                               carry)
        if not return_sequences:
            return None, carry
        return jnp.swapaxes(jnp.flip(hs, 0) if reverse else hs, 0, 1), carry
    xs = scan_inputs(cell, hoisted, params, x)  # hoisted: all T projections in one matmul
    steps_mask = None if mask is None else jnp.swapaxes(mask, 0, 1)[..., None]

    def body(carry, inputs):
        x_t, m_t = inputs
        new = cell.step(params, carry, projected(cell, hoisted, params, x_t))
        if m_t is not None:  # padded step: keep the old state, output 0
            new = jax.tree.map(lambda a, b: jnp.where(m_t, a, b), new, carry)
        if not return_sequences:
            return new, None
        y = cell.output(new)
        return new, y if m_t is None else jnp.where(m_t, y, 0.0)

    carry, ys = jax.lax.scan(body, carry, (xs, steps_mask), reverse=reverse, unroll=unroll)
    return (jnp.swapaxes(ys, 0, 1) if return_sequences else None), carry


def gru_cell_of(params: PyTree) -> Cell:
    """The GRU convention its params' keys say: a single "b" is reset-before."""
    return gru_cell(not (isinstance(params, dict) and "b" in params))


def lstm_scan(params: PyTree, x: jax.Array, initial_state: Carry | None = None,
              mask: Any = None, *, reverse: bool = False, unroll: int | bool = 1,
              hoist: bool | None = None) -> tuple[jax.Array, Carry]:
    """Run an LSTM over `x` (N, T, F); returns ``(ys (N, T, H), (h, c))``.

    `params` as made by `LSTM(...).init`: ``{"w_ih": (F, 4H), "w_hh": (H, 4H), "b": (4H,)}``,
    gates (i, f, g, o). `initial_state` is ``(h0, c0)``, each (N, H) (default zeros); `mask` is
    (N, T) boolean, True on real steps. See `jnet.layers.recurrent` for the equations.
    """
    check_params("LSTM", LSTM_CELL, params)
    ys, carry = scan(LSTM_CELL, "LSTM", params, x, initial_state, mask, reverse=reverse,
                     unroll=unroll, hoist=hoist)
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
    cell = gru_cell_of(params)
    check_params("GRU", cell, params)
    ys, h = scan(cell, "GRU", params, x, initial_state, mask, reverse=reverse, unroll=unroll,
                 hoist=hoist)
    assert ys is not None  # return_sequences=True: every step's h
    return ys, h


def lstm_step(params: PyTree, carry: Carry, x: jax.Array) -> Carry:
    """One LSTM step: ``(h, c), x_t (N, F) -> (h', c')``."""
    return step_on_input(LSTM_CELL, params, carry, x)


def gru_step(params: PyTree, h: jax.Array, x: jax.Array) -> jax.Array:
    """One GRU step: ``h, x_t (N, F) -> h'`` (reset convention from the params' keys)."""
    return step_on_input(gru_cell_of(params), params, h, x)
