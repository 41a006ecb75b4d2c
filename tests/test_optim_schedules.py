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
