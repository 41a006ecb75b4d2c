"""Learning-rate schedules against their closed forms in NumPy, and inside jit."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnet import optim

STEPS = np.arange(0, 40)


def cosine(step, init, decay_steps, alpha):
    frac = min(step, decay_steps) / decay_steps
    return init * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * frac)) + alpha)


def warmup_cosine(step, init, peak, warmup, decay_steps, end):
    if step < warmup:
        return init + (peak - init) * step / warmup
    frac = min(step - warmup, decay_steps - warmup) / (decay_steps - warmup)
    return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * frac))


CASES = {
    "constant": (optim.constant_schedule(0.3), lambda s: 0.3),
    "piecewise": (optim.piecewise_constant_schedule(1.0, {5: 0.5, 12: 0.1}),
                  lambda s: 1.0 * (0.5 if s >= 5 else 1) * (0.1 if s >= 12 else 1)),
    "step": (optim.step_decay_schedule(0.2, 7, 0.5), lambda s: 0.2 * 0.5 ** (s // 7)),
    "exponential": (optim.exponential_decay(0.1, 0.9, 4), lambda s: 0.1 * 0.9 ** (s / 4)),
    "exponential_staircase": (optim.exponential_decay(0.1, 0.9, 4, staircase=True),
                              lambda s: 0.1 * 0.9 ** (s // 4)),
    "linear_warmup": (optim.linear_schedule(0.0, 0.5, 10),
                      lambda s: 0.5 * min(s, 10) / 10),
    "cosine": (optim.cosine_decay_schedule(0.4, 25, 0.1), lambda s: cosine(s, 0.4, 25, 0.1)),
    "warmup_cosine": (optim.warmup_cosine_decay_schedule(0.01, 1.0, 5, 30, 0.05),
                      lambda s: warmup_cosine(s, 0.01, 1.0, 5, 30, 0.05)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_schedule_matches_closed_form(name):
    schedule, formula = CASES[name]
    got = jax.jit(jax.vmap(schedule))(jnp.asarray(STEPS, jnp.int32))
    np.testing.assert_allclose(got, [formula(int(s)) for s in STEPS], rtol=1e-6, atol=1e-7)


def test_rule_uses_schedule_of_steps_already_taken():
    # sgd on f(θ) = θ (g = 1): θ_t = θ_0 - Σ_{i<t} lr(i), and the state logs lr(t - 1).
    schedule, formula = CASES["warmup_cosine"]
    opt = optim.sgd(schedule)
    theta, state = jnp.zeros(()), opt.init(jnp.zeros(()))
    for t in range(1, 12):
        theta, state = opt.update(jnp.ones(()), state, theta)
        assert float(state.learning_rate) == pytest.approx(formula(t - 1), rel=1e-6)
    assert float(theta) == pytest.approx(-sum(formula(i) for i in range(11)), rel=1e-5)


def test_schedules_reject_bad_step_counts():
    with pytest.raises(optim.OptimizerError, match="step_size"):
        optim.step_decay_schedule(0.1, 0)
    with pytest.raises(optim.OptimizerError, match="transition_steps"):
        optim.linear_schedule(0.0, 1.0, 2.5)


def test_periodic_cosine_follows_pytorch_closed_form_past_t_max():
    # PyTorch CosineAnnealingLR: η_t = η_min + (η_0 - η_min)·½(1 + cos(π t / T_max)) for every
    # t (period 2·T_max); the default form stays at η_min after T_max.
    init, t_max, alpha = 0.4, 10, 0.1
    steps = jnp.arange(0, 45, dtype=jnp.int32)
    eta_min = alpha * init
    closed = [eta_min + (init - eta_min) * 0.5 * (1 + math.cos(math.pi * t / t_max))
              for t in range(45)]
    periodic = jax.vmap(optim.cosine_decay_schedule(init, t_max, alpha, periodic=True))(steps)
    np.testing.assert_allclose(periodic, closed, rtol=1e-6, atol=1e-7)
    clamped = jax.vmap(optim.cosine_decay_schedule(init, t_max, alpha))(steps)
    np.testing.assert_allclose(clamped[:t_max + 1], closed[:t_max + 1], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(clamped[t_max:], eta_min, rtol=1e-6)
    assert float(periodic[2 * t_max]) == pytest.approx(init, rel=1e-6)


def test_float64_step_decay_run_matches_numpy_to_1e_15():
    # Under x64 the schedule computes in float64 (not float32), so a float64 SGD-with-momentum
    # run under StepLR follows a float64 NumPy reference to rounding.
    a, lr0, gamma, step_size = np.array([3.0, 0.7, 1.3]), 0.1, 0.3, 4
    with jax.enable_x64(True):
        schedule = optim.step_decay_schedule(lr0, step_size, gamma)
        values = jax.vmap(schedule)(jnp.arange(20, dtype=jnp.int32))
        assert values.dtype == jnp.float64
        np.testing.assert_allclose(values, [lr0 * gamma ** (s // step_size) for s in range(20)],
                                   rtol=1e-15, atol=0)
        opt = optim.momentum(schedule, 0.9, pytorch_placement=True)
        x = jnp.asarray([1.0, -2.0, 0.5], jnp.float64)
        state = opt.init(x)
        update = jax.jit(opt.update)
        got = []
        for _ in range(20):
            x, state = update(jnp.asarray(a) * x, state, x)
            got.append(np.asarray(x))
    ref_x, b = np.array([1.0, -2.0, 0.5]), np.zeros(3)
    for t in range(1, 21):
        b = 0.9 * b + a * ref_x
        ref_x = ref_x - lr0 * gamma ** ((t - 1) // step_size) * b
        np.testing.assert_allclose(got[t - 1], ref_x, rtol=1e-15, atol=1e-15)


def test_schedules_compute_in_float32_without_x64():
    for schedule, _ in CASES.values():
        assert jnp.asarray(schedule(jnp.asarray(3, jnp.int32))).dtype == jnp.float32
