"""Recurrent layers: `LSTM` and `GRU` over batched sequences (N, T, F), their one-step cells
`LSTMCell` / `GRUCell`, and the functional scans (`lstm_scan`, `gru_scan`). The equations are
written once, in `jnet.layers.cells`; `jnet.layers.fused_rnn` holds the hand-written backward
pass; `Bidirectional` (`jnet.layers.combinators`) runs a layer both ways in time.

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
through a hand-written backward pass (same values and gradients) whose weight gradients are
one matrix product over all steps after the reverse loop, not one per step. It is the
transpose of a custom forward-mode rule, so `jax.jvp`, `jax.jacfwd`, `jax.hessian` and
`jax.vmap` work through it as through the plain scan; ``fast_grad=False`` turns it off.

**Inputs.** ``x`` (N, T, F), plus two keywords of ``apply``:

- ``mask=`` (N, T) boolean, True on real steps (build it from lengths with
  `jnet.data.mask_from_lengths`). Padded steps change neither the state nor the output: the
  state carries over unchanged and the output there is 0 (PyTorch's ``pad_packed_sequence``
  convention; Keras repeats the previous output instead). Padding may be anywhere, not only
  at the end, so ``reverse=True`` works on right-padded batches. Inside `serial` the same mask
  reaches every layer, so stacked recurrent layers skip the same steps. A boolean (N,) mask
  (which examples of a padded batch are real, for batch statistics) pads no step: the layer
  runs unmasked. The old encoding of the input as a tuple ``(x, mask)`` is an error;
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

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jnet.layers.base import (
    Layer,
    LayerError,
    PyTree,
    check_float,
    check_in_shape_rank,
    check_last_dim,
    check_rank,
)
from jnet.layers.cells import (
    LSTM_CELL,
    Carry,
    Cell,
    check_carry,
    check_params,
    gru_cell,
    gru_scan,
    gru_step,
    in_dtype_of,
    init_params,
    lstm_scan,
    lstm_step,
    scan,
)
from jnet.layers.checks import is_int

__all__ = ["GRU", "LSTM", "GRUCell", "LSTMCell", "gru_scan", "gru_step", "lstm_scan", "lstm_step"]


def _sequence_shape(kind: str, in_shape: tuple) -> tuple[int, int]:
    check_in_shape_rank(kind, in_shape, 2, "(T, F)",
                        "Recurrent layers take sequences; add a time axis.")
    return in_shape


def _non_default(hidden: int, **options: tuple[Any, Any]) -> dict:
    """The config `repr` shows: `hidden` plus each option given as ``(value, default)`` whose
    value differs from its default."""
    return {"hidden": hidden, **{k: v for k, (v, default) in options.items() if v != default}}


def _check_sequence(kind: str, x: Any) -> None:
    """Raise for the encodings of a masked batch that `mask=` replaced: ``(x, mask)``,
    ``(x, lengths)``, a dict."""
    if isinstance(x, (tuple, list, dict)):
        raise LayerError(
            kind,
            f"expected x as one (N, T, F) array, got a {type(x).__name__}. A mask is no longer "
            "part of the input: call `layer.apply(params, state, x, mask=mask)` with a boolean "
            "(N, T) mask (`jnet.data.mask_from_lengths(lengths, T)` builds it from lengths).",
        )


def _check_hidden(kind: str, hidden: Any) -> None:
    if not is_int(hidden) or hidden < 1:
        raise LayerError(kind, f"expected hidden to be a positive int, got {hidden!r}.")


def _recurrent(cell: Cell, kind: str, hidden: int, inits: dict, forget_bias: float, *,
               return_sequences: bool, return_state: bool, reverse: bool, unroll: int | bool,
               hoist: bool | None, fast_grad: bool, config: dict, name: str | None) -> Layer:
    _check_hidden(kind, hidden)

    def init_fn(key, in_shape):
        steps, features = _sequence_shape(kind, in_shape)
        params = init_params(cell, key, features, hidden, inits, forget_bias)
        out_shape = (steps, hidden) if return_sequences else (hidden,)
        if return_state:
            out_shape = (out_shape, cell.carry_of((hidden,)))
        return out_shape, params, {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None, initial_state=None):
        _check_sequence(kind, x)
        check_params(kind, cell, params)
        ys, carry = scan(cell, kind, params, x, initial_state, mask, reverse=reverse,
                         unroll=unroll, hoist=hoist, return_sequences=return_sequences,
                         fast_grad=fast_grad)
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
         unit_forget_bias: bool = True, fast_grad: bool = True,
         name: str | None = None) -> Layer:
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
        fast_grad: without a mask, differentiate through the hand-written backward pass
            (`jnet.layers.fused_rnn`; same values, every transformation works); False: autodiff
            of the plain scan.

    Raises:
        LayerError: a bad `hidden`; at apply, inputs that are not (N, T, F) floats (a tuple
            ``(x, mask)`` included: pass ``mask=``), a bad mask, initial state or params.
    """
    config = _non_default(hidden, return_sequences=(return_sequences, False),
                          return_state=(return_state, False), reverse=(reverse, False))
    inits = dict(w_ih_init=w_ih_init, w_hh_init=w_hh_init, b_init=b_init)
    return _recurrent(LSTM_CELL, "LSTM", hidden, inits, float(unit_forget_bias),
                      return_sequences=return_sequences, return_state=return_state,
                      reverse=reverse, unroll=unroll, hoist=hoist, fast_grad=fast_grad,
                      config=config, name=name)


def GRU(hidden: int, return_sequences: bool = False, return_state: bool = False, *,
        reset_after: bool = True, reverse: bool = False, unroll: int | bool = 1,
        hoist: bool | None = None, w_ih_init: Any = "glorot_uniform",
        w_hh_init: Any = "orthogonal", b_init: Any = "zeros", fast_grad: bool = True,
        name: str | None = None) -> Layer:
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
        fast_grad: without a mask and with ``reset_after=True``, differentiate through the
            hand-written backward pass (same values, every transformation works); False:
            autodiff of the plain scan.

    Raises:
        LayerError: a bad `hidden`; at apply, inputs that are not (N, T, F) floats (a tuple
            ``(x, mask)`` included: pass ``mask=``), a bad mask, initial state or params.
    """
    config = _non_default(hidden, return_sequences=(return_sequences, False),
                          return_state=(return_state, False), reset_after=(reset_after, True),
                          reverse=(reverse, False))
    inits = dict(w_ih_init=w_ih_init, w_hh_init=w_hh_init, b_init=b_init)
    return _recurrent(gru_cell(reset_after), "GRU", hidden, inits, 0.0,
                      return_sequences=return_sequences, return_state=return_state,
                      reverse=reverse, unroll=unroll, hoist=hoist, fast_grad=fast_grad,
                      config=config, name=name)


def _cell_layer(cell: Cell, kind: str, hidden: int, inits: dict, forget_bias: float,
                step: Callable[[PyTree, Carry, jax.Array], Carry], config: dict,
                name: str | None) -> Layer:
    _check_hidden(kind, hidden)

    def init_fn(key, in_shape):
        check_in_shape_rank(kind, in_shape, 1, "(F,)",
                            "A cell takes one time step; use the sequence layer for (T, F).")
        params = init_params(cell, key, in_shape[0], hidden, inits, forget_bias)
        return (cell.carry_of((hidden,)), (hidden,)), params, {}

    def apply_fn(params, state, inputs, *, key=None, train=False, mask=None):
        if not isinstance(inputs, (tuple, list)) or len(inputs) != 2:
            raise LayerError(
                kind,
                f"expected a pair (carry, x_t) with x_t (N, F) and carry None (zeros) or the "
                f"previous carry, got {type(inputs).__name__}. Use the sequence layer for "
                "(N, T, F) inputs.",
            )
        hid = check_params(kind, cell, params)
        carry, x = inputs
        check_rank(kind, x, 2, "(N, F)", "A cell takes one time step.")
        check_float(kind, x)
        check_last_dim(kind, x, params["w_ih"].shape[0])
        if carry is None:
            carry = cell.carry_of(jnp.zeros((x.shape[0], hid), x.dtype))
        carry = check_carry(kind, cell, carry, x.shape[0], hid)
        carry = step(*in_dtype_of(x, params, carry), x)
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
    return _cell_layer(LSTM_CELL, "LSTMCell", hidden, inits, float(unit_forget_bias),
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
    return _cell_layer(gru_cell(reset_after), "GRUCell", hidden, inits, 0.0, gru_step,
                       config, name)


LSTM.__doc__ = (LSTM.__doc__ or "").replace("{inits}", _INIT_DOC)
GRU.__doc__ = (GRU.__doc__ or "").replace("{inits}", _INIT_DOC)
