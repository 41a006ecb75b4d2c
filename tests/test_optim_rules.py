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


# ---- the 2026 rules ----------------------------------------------------------------------

def ref_radam(b1=0.9, b2=0.999, eps=1e-8, threshold=5.0):
    """Liu et al. 2020, Algorithm 2 (ε on √v_t, PyTorch's placement; threshold 5 for 4)."""
    def step(p, g, s, t, lr):
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g**2
        m_hat = s["m"] / (1 - b1**t)
        rho_inf = 2 / (1 - b2) - 1
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho <= threshold:
            return p - lr * m_hat
        r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        return p - lr * r * m_hat * math.sqrt(1 - b2**t) / (np.sqrt(s["v"]) + eps)
    return step


def _rms(x):
    return np.sqrt(np.mean(np.square(x)))


def ref_adafactor(c=-0.8, eps1=1e-30, eps2=1e-3, d=1.0, wd=0.0):
    """Shazeer & Stern 2018, Algorithms 4 (matrices, factored) and 5 (vectors), with relative
    step size ρ_t = min(lr, 1/√t), no momentum; ε1 floors V̂ (PyTorch's placement)."""
    def step(p, g, s, t, lr):
        w = t**c  # 1 - β̂2_t
        a = max(eps2, _rms(p)) * min(lr, 1 / math.sqrt(t))
        if np.ndim(p) >= 2:
            s["R"] = (1 - w) * s.get("R", 0.0) + w * np.mean(g**2, axis=-1, keepdims=True)
            s["C"] = (1 - w) * s.get("C", 0.0) + w * np.mean(g**2, axis=-2, keepdims=True)
            v = s["R"] @ s["C"] / max(np.mean(s["R"]), eps1)
        else:
            s["V"] = v = (1 - w) * s.get("V", 0.0) + w * g**2
        u = g / np.sqrt(np.maximum(v, eps1**2))
        return p - lr * wd * p - a / max(1.0, _rms(u) / d) * u
    return step


def _trust(p, u, coefficient=1.0, eps=0.0):
    pn, un = np.linalg.norm(p), np.linalg.norm(u)
    return 1.0 if pn == 0 or un == 0 else coefficient * pn / (un + eps)


def ref_lamb(b1=0.9, b2=0.999, eps=1e-6, wd=0.0):
    """You et al. 2020, Algorithm 2 (LAMB) with φ the identity, norms per array."""
    def step(p, g, s, t, lr):
        s["m"] = b1 * s.get("m", 0.0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g**2
        r = (s["m"] / (1 - b1**t)) / (np.sqrt(s["v"] / (1 - b2**t)) + eps) + wd * p
        return p - lr * _trust(p, r) * r
    return step


def ref_lars(wd=0.0, coefficient=1e-3, eps=0.0, gamma=0.9, nesterov=False):
    """You, Gitman & Ginsburg 2017, Algorithm 1: the local rate η‖w‖/(‖∇L‖ + β‖w‖) times
    the global one, with heavy-ball (or Nesterov) momentum."""
    def step(p, g, s, t, lr):
        d = g + wd * p
        scaled = _trust(p, d, coefficient, eps) * d
        s["V"] = gamma * s.get("V", 0.0) + lr * scaled
        return p - (lr * scaled + gamma * s["V"] if nesterov else s["V"])
    return step


def ref_rprop(step0=1e-2, minus=0.5, plus=1.2, low=1e-6, high=50.0):
    """Riedmiller & Braun 1993 in the iRprop- form (Igel & Hüsken 2000)."""
    def step(p, g, s, t, lr):
        prev, size = s.get("prev", np.zeros_like(g)), s.get("size", np.full_like(g, step0))
        agree = g * prev
        size = np.clip(size * np.where(agree > 0, plus, np.where(agree < 0, minus, 1.0)),
                       low, high)
        g = np.where(agree < 0, 0.0, g)
        s["prev"], s["size"] = g, size
        return p - np.sign(g) * size
    return step


def newton_schulz_np(g, steps=5, coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7):
    """Jordan et al. 2024: the quintic Newton-Schulz iteration on the wide orientation."""
    a, b, c = coefficients
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / max(np.linalg.norm(x), eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if g.shape[0] > g.shape[1] else x


def ref_muon(mu=0.95, wd=0.1, nesterov=True):
    """Jordan et al. 2024 (PyTorch's form: B as an average, s = √max(1, fan_out/fan_in)) for
    2-D arrays; AdamW without decay for the vectors and scalars (the routing)."""
    adam = ref_adam()

    def step(p, g, s, t, lr):
        if np.ndim(p) != 2:
            return adam(p, g, s, t, lr)
        s["B"] = mu * s.get("B", 0.0) + (1 - mu) * g
        u = (1 - mu) * g + mu * s["B"] if nesterov else s["B"]
        scale = math.sqrt(max(1.0, p.shape[1] / p.shape[0]))
        return p - lr * wd * p - lr * scale * newton_schulz_np(u)
    return step


def ref_schedule_free(beta=0.9, b2=None, eps=1e-8, wd=0.0, warmup=0, r=0.0, power=2.0):
    """Defazio et al. 2024, Algorithm 1 (SGD) and its AdamW form: y, z and the weights c_t;
    `s["z"]` and `s["y"]` give x_t = y_t + (1 - 1/β)(z_t - y_t)."""
    def step(p, g, s, t, lr):
        lr = lr * min(1.0, t / warmup) if warmup else lr
        s["lr_max"] = max(lr, s.get("lr_max", 0.0))
        weight = t**r * s["lr_max"] ** power
        s["sum"] = s.get("sum", 0.0) + weight
        c = weight / s["sum"] if s["sum"] > 0 else 0.0
        z = s.get("z", p)
        if b2 is not None:
            s["v"] = b2 * s.get("v", 0.0) + (1 - b2) * g**2
            g = g / (np.sqrt(s["v"] / (1 - b2**t)) + eps)
        d = g + wd * p
        y = p + c * (z - p) + lr * (beta * (1 - c) - 1) * d
        s["z"], s["y"] = z - lr * d, y
        return y
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
    "radam": (lambda lr: optim.radam(lr), ref_radam()),
    "radam_paper_threshold": (lambda lr: optim.radam(lr, 0.8, 0.9, threshold=4.0),
                              ref_radam(0.8, 0.9, threshold=4.0)),
    "adafactor": (lambda lr: optim.adafactor(lr, eps1=1e-30, weight_decay=0.1),
                  ref_adafactor(wd=0.1)),
    "lamb": (lambda lr: optim.lamb(lr, weight_decay=0.1), ref_lamb(wd=0.1)),
    "lars": (lambda lr: optim.lars(lr, weight_decay=0.01, trust_coefficient=0.01),
             ref_lars(0.01, 0.01)),
    "lars_nesterov": (lambda lr: optim.lars(lr, momentum=0.5, nesterov=True),
                      ref_lars(gamma=0.5, nesterov=True)),
    "muon": (lambda lr: optim.muon(lr), ref_muon()),
    "muon_plain_momentum": (lambda lr: optim.muon(lr, 0.8, 0.0, nesterov=False),
                            ref_muon(0.8, 0.0, nesterov=False)),
    "schedule_free_adamw": (lambda lr: optim.schedule_free_adamw(lr, weight_decay=0.1,
                                                                 warmup_steps=5),
                            ref_schedule_free(b2=0.999, wd=0.1, warmup=5)),
    "schedule_free_sgd": (lambda lr: optim.schedule_free_sgd(lr, 0.8, r=1.0),
                          ref_schedule_free(0.8, r=1.0)),
}
# Rprop's learning_rate is its initial step size (no schedule): checked with a constant only.
RPROP = (lambda lr: optim.rprop(lr), ref_rprop(LR))


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


@pytest.mark.parametrize("case, scheduled", [
    *[(case, scheduled) for case in sorted(CASES) for scheduled in (False, True)],
    ("rprop", False)])
def test_rule_matches_numpy_reference(case, scheduled):
    make, ref_step = RPROP if case == "rprop" else CASES[case]
    opt = make(SCHEDULE if scheduled else LR)
    expected = run_reference(ref_step, sched_np if scheduled else (lambda t: LR))
    got, state = run_jnet(opt)
    # With ε = 1e-8, m̂/(√v̂ + ε) amplifies float32 rounding when a gradient coordinate nears 0
    # (measured drift up to 8e-6 over 25 steps; Muon's float32 Newton-Schulz 2e-6); a wrong
    # equation moves params by >= 1e-3. Float64 to 1e-10: tests/test_optim_float64.py.
    # RAdam's ρ_t = ρ_∞ - 2tβ2^t/(1-β2^t) cancels ~1999 against ~1993 at the switch-over:
    # in float32 r_t is off by ~1e-4 relative for a few steps (3e-5 in params).
    loose = case.startswith(("adam", "nadam", "muon")) and not case.endswith("eps_root")
    atol = 1e-4 if case.startswith("radam") else 2e-5 if loose else 1e-6
    for t, (g_leaves, e_leaves) in enumerate(zip(got, expected, strict=True), start=1):
        for g, e in zip(g_leaves, e_leaves, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=atol, err_msg=f"{case} step {t}")
    assert int(state.step) == STEPS
    assert state.step.dtype == jnp.int32
