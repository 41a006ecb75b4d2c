"""Muon: momentum orthogonalized by Newton-Schulz for 2-D weight matrices, AdamW for the rest."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import check_array, check_array_tree
from jnet.optim.adam import adamw
from jnet.optim.base import (
    GradientTransformation,
    Optimizer,
    OptimizerError,
    PyTree,
    ScalarOrSchedule,
    api,
    as_schedule,
    check_hyperparameter,
    learning_rate_at,
    map_unzip,
    zeros_like_state,
)
from jnet.optim.chain import build, logged_schedule
from jnet.optim.groups import grouped
from jnet.optim.masks import Mask, resolve_mask
from jnet.optim.weight_decay import weights_only

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
_LR_SCALES = ("original", "match_rms_adamw", "spectral_unclamped", "none")


def _check_iteration(steps_name: str, steps: int, coefficients_name: str,
                     coefficients: tuple[float, float, float]) -> tuple[float, float, float]:
    """The Newton-Schulz iteration count and coefficients `scale_by_muon` and `newton_schulz`
    take, checked; the coefficients as a tuple.

    Raises:
        OptimizerError: steps not an int in [1, 100), coefficients not three numbers.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps < 100:
        raise OptimizerError(f"{steps_name} must be an int in [1, 100), got {steps!r}; 5 is "
                             "usual.")
    values = tuple(coefficients) if np.iterable(coefficients) and not isinstance(
        coefficients, str) else ()
    if len(values) != 3:
        raise OptimizerError(f"{coefficients_name} must be three numbers (a, b, c), got "
                             f"{coefficients!r}. The default is {NS_COEFFICIENTS}.")
    for name, value in zip("abc", values, strict=True):
        check_hyperparameter(f"{coefficients_name} ({name})", value, -math.inf,
                             fix=f"The default is {NS_COEFFICIENTS}.")
    return values


_MATRIX_FIX = ("Newton-Schulz orthogonalizes one 2-D float matrix (m, n); for a pytree of "
               "params use jnet.optim.muon, which routes the other arrays to AdamW.")


@api("jnet.optim.newton_schulz")
def newton_schulz(g: jax.Array, coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                  steps: int = 5, eps: float = 1e-7) -> jax.Array:
    """The approximate orthogonalization O ≈ U Vᵀ of a matrix G = U S Vᵀ (Newton-Schulz).

        X_0 = G / max(‖G‖_F, ε)            (on Gᵀ when G has more rows than columns)
        A_k = X_k X_kᵀ,   X_{k+1} = a X_k + (b A_k + c A_k²) X_k

    The quintic's coefficients (a, b, c) maximise the slope at 0, so the singular values end
    near 1 (roughly in [0.7, 1.2]) rather than exactly 1, in few steps.

    Args:
        g: a matrix (m, n), any float dtype (the iteration runs in it).
        coefficients: (a, b, c).
        steps: the number of iterations.
        eps: ε, the floor of the Frobenius norm.

    Returns:
        An (m, n) array of g's dtype.

    Raises:
        OptimizerError: `g` is not a floating-point array of rank 2, steps is not an int in
            [1, 100), coefficients are not three numbers, eps is negative or not a number.
    """
    check_array("g", g, _MATRIX_FIX, floating=True, ndim=2, error=OptimizerError)
    a, b, c = _check_iteration("steps", steps, "coefficients", coefficients)
    check_hyperparameter("eps", eps, fix="eps floors ‖G‖_F; 1e-7 is usual.")
    tall = g.shape[0] > g.shape[1]
    x = g.T if tall else g
    x = x / jnp.maximum(jnp.linalg.norm(x), eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def _shape_scale(shape: tuple[int, ...], lr_scale: str) -> float:
    """The per-matrix factor of the rate for a (fan_in, fan_out) kernel."""
    fan_in, fan_out = shape
    if lr_scale == "original":
        return math.sqrt(max(1.0, fan_out / fan_in))
    if lr_scale == "match_rms_adamw":
        return 0.2 * math.sqrt(max(fan_in, fan_out))
    if lr_scale == "spectral_unclamped":
        return math.sqrt(fan_out / fan_in)
    return 1.0


class MuonState(NamedTuple):
    """The state of `scale_by_muon`.

    Attributes:
        momentum: B, the momentum buffer of each matrix (shaped like the params).
    """

    momentum: PyTree


@api("jnet.optim.scale_by_muon")
def scale_by_muon(learning_rate: ScalarOrSchedule = 1e-3, momentum: float = 0.95,
                  weight_decay: float = 0.1, eps: float = 1e-7, ns_steps: int = 5,
                  ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS, *,
                  nesterov: bool = True, lr_scale: str = "original") -> GradientTransformation:
    """The Muon step of 2-D params, learning rate and weight decay included (see `muon`).

    Its arguments (learning_rate, momentum, weight_decay, eps, ns_steps, ns_coefficients,
    nesterov, lr_scale) are `muon`'s, with the same meaning and defaults.

    Returns:
        A `GradientTransformation` with a `MuonState`; its updates are the final steps.

    Raises:
        OptimizerError: a hyperparameter out of range, or (at `init`) a param that is not 2-D.
    """
    schedule = as_schedule(learning_rate)
    check_hyperparameter("momentum", momentum, 0.0, 1.0, high_open=True,
                         fix="momentum is μ of the buffer B = μB + (1-μ)g; 0.95 is usual.")
    check_hyperparameter("weight_decay", weight_decay, fix="0.1 is PyTorch's default.")
    check_hyperparameter("eps", eps, fix="eps floors ‖G‖ before Newton-Schulz; 1e-7 is usual.")
    coefficients = _check_iteration("ns_steps", ns_steps, "ns_coefficients", ns_coefficients)
    if lr_scale not in _LR_SCALES:
        raise OptimizerError(f"lr_scale must be one of {_LR_SCALES}, got {lr_scale!r}.")

    def init(params):
        for path, p in jax.tree_util.tree_leaves_with_path(params):
            if jnp.ndim(p) != 2:
                raise OptimizerError(
                    f"params{jax.tree_util.keystr(path)} has shape {jnp.shape(p)}: the Muon "
                    "step is for 2-D matrices. Use jnet.optim.muon, which routes other arrays "
                    "to AdamW.")
        return MuonState(zeros_like_state(params))

    def update(grads, state, params, step):
        lr = learning_rate_at(schedule, step)

        def one(g, b, p):
            b = momentum * b + (1 - momentum) * g
            direction = (1 - momentum) * g + momentum * b if nesterov else b
            o = newton_schulz(direction, coefficients, ns_steps, eps)
            rate = lr.astype(g.dtype)
            return -rate * (_shape_scale(g.shape, lr_scale) * o + weight_decay * p), b

        u, b = map_unzip(one, 2, grads, state.momentum, params)
        return u, MuonState(b)

    return GradientTransformation(init, update, schedule)


@api("jnet.optim.muon_arrays")
def muon_arrays(path: tuple, param: jax.Array) -> bool:
    """The default Muon routing: True (Muon) for 2-D arrays except embedding tables (an array
    named ``embedding``, as `jnet.layers.Embedding`'s); False (AdamW) for the rest: biases,
    norm scales, scalars, conv kernels and other arrays that are not 2-D.

    Args:
        path: the array's key path, a tuple of keys.
        param: the array.

    Returns:
        A bool.

    Raises:
        OptimizerError: `param` is not an array (the mask is called with each array).
    """
    check_array_tree("param", param, "muon_arrays is a mask function `(path, param) -> bool`: "
                     "pass it as muon(muon_mask=jnet.optim.muon_arrays).", error=OptimizerError)
    return jnp.ndim(param) == 2 and "embedding" not in path


@api("jnet.optim.muon")
def muon(learning_rate: ScalarOrSchedule = 1e-3, momentum: float = 0.95,
         weight_decay: float = 0.1, eps: float = 1e-7, ns_steps: int = 5,
         ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
         adam_learning_rate: ScalarOrSchedule | None = None, adam_b1: float = 0.9,
         adam_b2: float = 0.999, *, nesterov: bool = True, lr_scale: str = "original",
         muon_mask: Mask = muon_arrays) -> Optimizer:
    """Muon: SGD-momentum whose step for each weight matrix is orthogonalized.

        B_t = μ B_{t-1} + (1-μ) G_t
        Ũ_t = (1-μ) G_t + μ B_t              (nesterov=False: Ũ_t = B_t)
        O_t = NS_k(Ũ_t)                       (`newton_schulz`: O ≈ U Vᵀ of Ũ = U S Vᵀ)
        W_t = W_{t-1} - α_t λ W_{t-1} - α_t s O_t,    s = √max(1, fan_out / fan_in)

    Only 2-D matrices take this step (`muon_mask`, by default `muon_arrays`): embedding
    tables, biases, norm scales and arrays that are not 2-D (conv kernels, scalars) are
    updated by `adamw(adam_learning_rate, adam_b1, adam_b2, 1e-8, weight_decay,
    mask=weights_only)`, as the paper recommends. `current_learning_rate` reports α_t.
    Newton-Schulz runs in the state dtype (float32 for float32 or bfloat16 params); PyTorch
    runs it in bfloat16. s is for jnet's (fan_in, fan_out) kernels; PyTorch's (out, in)
    weights give the same number.

    Args:
        learning_rate: α_t, a number >= 0 or a schedule `step -> lr`.
        momentum: μ in [0, 1).
        weight_decay: λ >= 0, decoupled (θ ← θ(1 - α_t λ)), also for the AdamW arrays (but
            not their biases and norm scales).
        eps: ε >= 0, the floor of ‖Ũ‖_F in Newton-Schulz.
        ns_steps: k, the Newton-Schulz iterations, an int in [1, 100).
        ns_coefficients: (a, b, c) of the quintic iteration.
        adam_learning_rate: the AdamW arrays' rate (None: `learning_rate`).
        adam_b1, adam_b2: the AdamW arrays' β1, β2 in [0, 1).
        nesterov: use the Nesterov direction Ũ_t (keyword only).
        lr_scale: s: "original" (above, Keller Jordan's), "match_rms_adamw" (0.2 √max(fan_in,
            fan_out), Moonshot's, to reuse AdamW's rate), "spectral_unclamped"
            (√(fan_out / fan_in)) or "none" (1) (keyword only).
        muon_mask: which arrays take the Muon step: a function `(path, param) -> bool`, a
            function `params -> pytree of bools`, or that pytree (keyword only).

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: a hyperparameter out of range; at `init`, a mask of the wrong
            structure or selecting an array that is not 2-D.

    Defaults:
        learning_rate=1e-3, momentum=0.95, weight_decay=0.1, eps=1e-7, ns_steps=5,
        ns_coefficients=(3.4445, -4.775, 2.0315), adam_b1=0.9, adam_b2=0.999, nesterov
        (PyTorch `Muon`).

    PyTorch:
        `Muon(lr, weight_decay, momentum, nesterov, ns_coefficients, eps, ns_steps)`
        Same defaults and update (`adjust_lr_fn` = `lr_scale`), 2-D params only: PyTorch
        refuses the others, which need a second optimizer (here the AdamW group).

    Keras:
        `Muon(learning_rate, ..., exclude_embeddings=True)`
        Keras also routes embeddings and arrays that are not 2-D to AdamW; it defaults
        weight_decay = 0.004 and scales the step with `rms_rate=0.2` (Moonshot's form,
        `lr_scale="match_rms_adamw"`).

    References:
        Jordan et al. 2024, "Muon: An optimizer for hidden layers in neural networks";
        Liu et al. 2025, "Muon is Scalable for LLM Training" (match_rms_adamw).
    """
    check_hyperparameter("adam_b1", adam_b1, 0.0, 1.0, high_open=True)
    check_hyperparameter("adam_b2", adam_b2, 0.0, 1.0, high_open=True)
    rate = learning_rate if adam_learning_rate is None else adam_learning_rate
    matrices = scale_by_muon(learning_rate, momentum, weight_decay, eps, ns_steps,
                             ns_coefficients, nesterov=nesterov, lr_scale=lr_scale)
    others = adamw(rate, adam_b1, adam_b2, 1e-8, weight_decay, weights_only)

    def marks(params):
        return jax.tree.map(lambda on: "muon" if on else "adamw",
                            resolve_mask(muon_mask, params, "muon_mask"))

    return build("muon", (grouped({"muon": (matrices,), "adamw": others.transforms}, marks,
                                  logged_schedule((matrices,))),))
