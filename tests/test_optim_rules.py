"""Every update rule against NumPy code written from its paper's equations (float64), over 25
steps on a random nested pytree, with a constant learning rate and with a schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnet import optim

STEPS = 25
LR = 0.05


def make_params():
    rng = np.random.default_rng(0)
    return {
        "dense": {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=(4,))},
        "extra": (rng.normal(size=(2,)), None),
        "scale": rng.normal(size=()),
    }


def to_jax(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


# Gradient of a fixed quadratic plus per-step noise, so the trajectory depends on the params.
_RNG = np.random.default_rng(1)
_CURVATURE = [np.abs(_RNG.normal(size=np.shape(x))) + 0.5
              for x in jax.tree.leaves(make_params())]
_NOISE = [[_RNG.normal(size=np.shape(x)) for x in jax.tree.leaves(make_params())]
          for _ in range(STEPS)]


def grad_np(leaves, t):
    return [c * p + n for c, p, n in zip(_CURVATURE, leaves, _NOISE[t - 1], strict=True)]


def sched_np(t):
    """The learning rate of update t (1-based) under the test schedule."""
    return LR * 0.5 ** ((t - 1) // 7)


SCHEDULE = optim.step_decay_schedule(LR, 7, 0.5)


# ---- NumPy references: one function per rule, (leaf, grad, state dict, t, lr) -> leaf --------

def ref_sgd(p, g, s, t, lr):
    return p - lr * g


def ref_momentum(gamma, pytorch, nesterov):
    def step(p, g, s, t, lr):
        if pytorch:
            s["b"] = gamma * s.get("b", 0.0) + g
            return p - lr * (g + gamma * s["b"] if nesterov else s["b"])
        s["V"] = gamma * s.get("V", 0.0) + lr * g
        return p - (lr * g + gamma * s["V"] if nesterov else s["V"])
    return step


def ref_adagrad(s0, eps, in_sqrt):
    def step(p, g, s, t, lr):
        s["s"] = s.get("s", s0) + g**2
        return p - lr * g / (np.sqrt(s["s"] + eps) if in_sqrt else np.sqrt(s["s"]) + eps)
    return step


def ref_adadelta(rho, eps):
    def step(p, g, s, t, lr):
        s["Eg"] = rho * s.get("Eg", 0.0) + (1 - rho) * g**2
        delta = -np.sqrt(s.get("Ed", 0.0) + eps) / np.sqrt(s["Eg"] + eps) * g
        s["Ed"] = rho * s.get("Ed", 0.0) + (1 - rho) * delta**2
        return p + lr * delta
    return step


def ref_rmsprop(rho, eps, in_sqrt=False, centered=False, gamma=0.0, pytorch=False):
    def step(p, g, s, t, lr):
        s["v"] = rho * s.get("v", 0.0) + (1 - rho) * g**2
        var = s["v"]
        if centered:
            s["m"] = rho * s.get("m", 0.0) + (1 - rho) * g
            var = var - s["m"] ** 2
        r = g / (np.sqrt(var + eps) if in_sqrt else np.sqrt(var) + eps)
        if gamma == 0:
            return p - lr * r
        if pytorch:
            s["b"] = gamma * s.get("b", 0.0) + r
            return p - lr * s["b"]
        s["V"] = gamma * s.get("V", 0.0) + lr * r
        return p - s["V"]
    return step


def ref_adam(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, amsgrad=False, wd=None):
    def step(p, g, s, t, lr):
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g**2
        s["vmax"] = np.maximum(s.get("vmax", 0.0), s["v"])
        v = s["vmax"] if amsgrad else s["v"]
        m_hat, v_hat = s["m"] / (1 - b1**t), v / (1 - b2**t)
        decay = 0.0 if wd is None or np.ndim(p) < 2 else wd * p  # wd mask: weights_only
        return p - lr * (m_hat / (np.sqrt(v_hat + eps_root) + eps) + decay)
    return step


def ref_nadam(b1=0.9, b2=0.999, eps=1e-8, psi=4e-3, eps_root=0.0):
    def mu(t):
        return b1 if psi is None else b1 * (1 - 0.5 * 0.96 ** (t * psi))

    def step(p, g, s, t, lr):
        prod = math.prod(mu(i) for i in range(1, t + 1))
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g**2
        m_hat = mu(t + 1) * s["m"] / (1 - prod * mu(t + 1)) + (1 - mu(t)) * g / (1 - prod)
        return p - lr * m_hat / (np.sqrt(s["v"] / (1 - b2**t) + eps_root) + eps)
    return step


def ref_adamax(b1=0.9, b2=0.999, eps=1e-8):
    def step(p, g, s, t, lr):
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["u"] = np.maximum(b2 * s.get("u", 0.0), np.abs(g))
        return p - lr / (1 - b1**t) * s["m"] / (s["u"] + eps)
    return step


def ref_lion(b1=0.9, b2=0.99, wd=0.0):
    def step(p, g, s, t, lr):
        m = s.get("m", 0.0)
        c = b1 * m + (1 - b1) * g
        s["m"] = b2 * m + (1 - b2) * g
        return p - lr * (np.sign(c) + wd * p)
    return step


CASES: dict[str, tuple[Callable, Callable]] = {
    "sgd": (lambda lr: optim.sgd(lr), ref_sgd),
    "momentum": (lambda lr: optim.momentum(lr, 0.8), ref_momentum(0.8, False, False)),
    "momentum_pytorch": (lambda lr: optim.momentum(lr, 0.8, pytorch_placement=True),
                         ref_momentum(0.8, True, False)),
    "nesterov": (lambda lr: optim.nesterov(lr, 0.8), ref_momentum(0.8, False, True)),
    "nesterov_pytorch": (lambda lr: optim.nesterov(lr, 0.8, pytorch_placement=True),
                         ref_momentum(0.8, True, True)),
    "adagrad": (lambda lr: optim.adagrad(lr), ref_adagrad(0.0, 1e-10, False)),
    "adagrad_keras": (lambda lr: optim.adagrad(lr, 0.1, 1e-7, eps_in_sqrt=True),
                      ref_adagrad(0.1, 1e-7, True)),
    "adadelta": (lambda lr: optim.adadelta(lr), ref_adadelta(0.95, 1e-6)),
    "rmsprop": (lambda lr: optim.rmsprop(lr), ref_rmsprop(0.9, 1e-8)),
    "rmsprop_keras_centered_momentum": (
        lambda lr: optim.rmsprop(lr, 0.9, 1e-2, eps_in_sqrt=True, centered=True, momentum=0.5),
        ref_rmsprop(0.9, 1e-2, True, True, 0.5)),
    "rmsprop_pytorch_momentum": (
        lambda lr: optim.rmsprop(lr, 0.99, momentum=0.5, pytorch_placement=True),
        ref_rmsprop(0.99, 1e-8, gamma=0.5, pytorch=True)),
    "adam": (lambda lr: optim.adam(lr), ref_adam()),
    "adam_amsgrad": (lambda lr: optim.adam(lr, amsgrad=True), ref_adam(amsgrad=True)),
    "adam_eps_root": (lambda lr: optim.adam(lr, 0.8, 0.9, 1e-3, 1e-4),
                      ref_adam(0.8, 0.9, 1e-3, 1e-4)),
    "adamw_masked": (lambda lr: optim.adamw(lr, weight_decay=0.1, mask=optim.weights_only),
                     ref_adam(wd=0.1)),
    "adamw_eps_root": (lambda lr: optim.adamw(lr, 0.8, 0.9, 1e-3, 0.1, optim.weights_only,
                                              eps_root=1e-4),
                       ref_adam(0.8, 0.9, 1e-3, 1e-4, wd=0.1)),
    "nadam": (lambda lr: optim.nadam(lr), ref_nadam()),
    "nadam_eps_root": (lambda lr: optim.nadam(lr, 0.8, 0.9, 1e-3, eps_root=1e-4),
                       ref_nadam(0.8, 0.9, 1e-3, eps_root=1e-4)),
    "nadam_constant_mu": (lambda lr: optim.nadam(lr, momentum_decay=None), ref_nadam(psi=None)),
    # The documented Keras 3 mapping: μ_t = β1 (1 - ½·0.96^t), ε = 1e-7.
    "nadam_keras": (lambda lr: optim.nadam(lr, eps=1e-7, momentum_decay=1.0),
                    ref_nadam(eps=1e-7, psi=1.0)),
    "adamax": (lambda lr: optim.adamax(lr), ref_adamax()),
    "lion": (lambda lr: optim.lion(lr, weight_decay=0.1), ref_lion(wd=0.1)),
}


def run_reference(ref_step, lr_of_t):
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(make_params())]
    states = [{} for _ in leaves]
    history = []
    for t in range(1, STEPS + 1):
        grads = grad_np(leaves, t)
        leaves = [ref_step(p, g, s, t, lr_of_t(t))
                  for p, g, s in zip(leaves, grads, states, strict=True)]
        history.append(leaves)
    return history


def run_jnet(opt):
    params = to_jax(make_params())
    state = opt.init(params)
    update = jax.jit(opt.update)
    history = []
    for t in range(1, STEPS + 1):
        grads = jax.tree.unflatten(jax.tree.structure(params),
                                   [jnp.asarray(g, jnp.float32) for g in
                                    grad_np([np.asarray(x) for x in jax.tree.leaves(params)], t)])
        params, state = update(grads, state, params)
        history.append([np.asarray(x) for x in jax.tree.leaves(params)])
    return history, state


@pytest.mark.parametrize("scheduled", [False, True], ids=["constant", "schedule"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_matches_numpy_reference(case, scheduled):
    make, ref_step = CASES[case]
    opt = make(SCHEDULE if scheduled else LR)
    expected = run_reference(ref_step, sched_np if scheduled else (lambda t: LR))
    got, state = run_jnet(opt)
    # With ε = 1e-8, m̂/(√v̂ + ε) amplifies float32 rounding when a gradient coordinate nears 0
    # (measured drift up to 8e-6 over 25 steps); a wrong equation moves params by >= 1e-3.
    atol = 2e-5 if case.startswith(("adam", "nadam")) and not case.endswith("eps_root") else 1e-6
    for t, (g_leaves, e_leaves) in enumerate(zip(got, expected, strict=True), start=1):
        for g, e in zip(g_leaves, e_leaves, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=atol, err_msg=f"{case} step {t}")
    assert int(state.step) == STEPS
    assert state.step.dtype == jnp.int32
