"""Differentiating through an update (meta-learning): with `eps_root` > 0 the derivative of one
Adam / AdamW / NAdam step with respect to the learning rate and to the gradient is finite even
where a gradient entry is exactly 0, and equals central finite differences of a float64 NumPy
reference written from the papers' equations."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnet import optim

EPS_ROOT = 1e-6
P0 = np.array([0.5, -1.0, 2.0])
G0 = np.array([0.0, 0.3, -0.7])  # entry 0 is exactly zero: √v̂ is not differentiable there
LR = 0.1
W = np.array([1.0, 2.0, 3.0])  # weights of the scalar the test differentiates (no cancelling)


def ref_adam_step(p, g, lr, b1=0.9, b2=0.999, eps=1e-8, wd=0.0):
    m, v = (1 - b1) * g, (1 - b2) * g**2
    m_hat, v_hat = m / (1 - b1), v / (1 - b2)
    return p - lr * (m_hat / (np.sqrt(v_hat + EPS_ROOT) + eps) + wd * p)


def ref_nadam_step(p, g, lr, b1=0.9, b2=0.999, eps=1e-8, psi=4e-3):
    mu1, mu2 = (b1 * (1 - 0.5 * 0.96 ** (t * psi)) for t in (1, 2))
    m, v = (1 - b1) * g, (1 - b2) * g**2
    m_hat = mu2 * m / (1 - mu1 * mu2) + (1 - mu1) * g / (1 - mu1)
    return p - lr * m_hat / (np.sqrt(v / (1 - b2) + EPS_ROOT) + eps)


CASES = {
    "adam": (lambda lr, r: optim.adam(lr, eps_root=r), ref_adam_step),
    "adamw": (lambda lr, r: optim.adamw(lr, weight_decay=0.1, eps_root=r),
              lambda p, g, lr: ref_adam_step(p, g, lr, wd=0.1)),
    "nadam": (lambda lr, r: optim.nadam(lr, eps_root=r), ref_nadam_step),
}


def one_step(make, eps_root):
    """(lr, g) -> sum of the new params, differentiable in both."""
    def f(lr, g):
        p = jnp.asarray(P0)
        opt = make(lr, eps_root)
        new, _ = opt.update(g, opt.init(p), p)
        return jnp.sum(new * W)
    return f


def central_difference(fn, x, h=1e-6):
    x = np.asarray(x, np.float64)
    if x.ndim == 0:
        return (fn(x + h) - fn(x - h)) / (2 * h)
    out = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        out.flat[i] = (fn(x + e) - fn(x - e)) / (2 * h)
    return out


@pytest.mark.parametrize("rule", sorted(CASES))
def test_grad_through_update_is_finite_and_matches_finite_differences(rule):
    make, ref = CASES[rule]
    with jax.enable_x64(True):
        f = one_step(make, EPS_ROOT)
        d_lr, d_g = jax.grad(f, argnums=(0, 1))(jnp.float64(LR), jnp.asarray(G0))
    assert math.isfinite(float(d_lr)) and np.all(np.isfinite(np.asarray(d_g)))
    want_lr = central_difference(lambda lr: np.sum(W * ref(P0, G0, lr)), LR)
    want_g = central_difference(lambda g: np.sum(W * ref(P0, g, LR)), G0)
    np.testing.assert_allclose(float(d_lr), want_lr, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(d_g), want_g, rtol=1e-5, atol=1e-8)
    # At g = 0 the step is linear in g with slope -lr·c / (√ε_root + ε), c the weight of g in
    # the bias-corrected first moment (1 for Adam): about -1e2 here, not a NaN.
    mu1, mu2 = (0.9 * (1 - 0.5 * 0.96 ** (t * 4e-3)) for t in (1, 2))
    c = mu2 * 0.1 / (1 - mu1 * mu2) + 1.0 if rule == "nadam" else 1.0
    assert np.asarray(d_g)[0] == pytest.approx(-W[0] * LR * c / (math.sqrt(EPS_ROOT) + 1e-8),
                                               rel=1e-9)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_without_eps_root_the_gradient_at_a_zero_entry_is_not_finite(rule):
    # The failure eps_root exists to fix: d√v/dv = ∞ at v = 0 poisons the derivative.
    make, _ = CASES[rule]
    with jax.enable_x64(True):
        d_g = jax.grad(one_step(make, 0.0), argnums=1)(jnp.float64(LR), jnp.asarray(G0))
    assert not np.isfinite(np.asarray(d_g)[0])
    assert np.all(np.isfinite(np.asarray(d_g)[1:]))
