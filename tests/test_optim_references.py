"""Every rule in `jnet.optim.RULES` has a NumPy reference (tests/_optim_refs.py), and at its
default hyperparameters follows it."""

from __future__ import annotations

import inspect

import jax
import numpy as np
import pytest
from _optim_refs import REFERENCES, run
from test_optim_rules import STEPS, grad_np, make_params, run_jnet

from jnet import optim


def test_every_rule_has_a_numpy_reference():
    missing = sorted(set(optim.RULES) - set(REFERENCES))
    assert not missing, (f"jnet.optim.RULES has no NumPy reference for {missing}: write "
                         "ref_<rule> in tests/test_optim_rules.py and register it in "
                         "tests/_optim_refs.py's REFERENCES")


@pytest.mark.parametrize("rule", sorted(set(optim.RULES) & set(REFERENCES)))
def test_rule_at_its_defaults_follows_its_reference(rule):
    lr = inspect.signature(optim.RULES[rule]).parameters["learning_rate"].default
    expected = run(rule, jax.tree.leaves(make_params()), grad_np, lambda t: lr, STEPS)
    got, state = run_jnet(optim.RULES[rule]())
    # ε = 1e-8 amplifies float32 rounding where a gradient coordinate nears 0, RAdam's ρ_t
    # cancels at its switch-over, Muon's Newton-Schulz runs in float32 (see test_optim_rules);
    # a wrong equation or default moves params by far more.
    atol = {"adam": 2e-5, "adamw": 2e-5, "nadam": 2e-5, "muon": 2e-5, "radam": 1e-4}.get(rule,
                                                                                       1e-6)
    for t, (g_leaves, e_leaves) in enumerate(zip(got, expected, strict=True), start=1):
        for g, e in zip(g_leaves, e_leaves, strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=atol, err_msg=f"{rule} step {t}")
    assert int(state.step) == STEPS


def test_a_wrong_default_would_fail():
    """The comparison is sharp enough to see a default off by a little: Adam with b2 = 0.99
    instead of 0.999 leaves its reference."""
    expected = run("adam", jax.tree.leaves(make_params()), grad_np, lambda t: 1e-3, STEPS)
    got, _ = run_jnet(optim.adam(b2=0.99))
    assert max(np.max(np.abs(g - e)) for g, e in zip(got[-1], expected[-1], strict=True)) > 1e-4
