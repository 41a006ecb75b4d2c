"""REFERENCES: every rule of `jnet.optim.RULES`, by name, as a NumPy update written from its
paper's equations (the `ref_*` functions of tests/test_optim_rules.py) with the rule's default
hyperparameters. A step is `(leaf, grad, state dict, t, lr) -> new leaf`, t = 1, 2, ...

Adding a rule: write its `ref_<rule>` next to the others in tests/test_optim_rules.py (with its
CASES entries), then add one line here. tests/test_optim_references.py fails while a rule in
`jnet.optim.RULES` has no entry, and checks each entry against the rule at its defaults."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from test_optim_rules import (
    ref_adadelta,
    ref_adafactor,
    ref_adagrad,
    ref_adam,
    ref_adamax,
    ref_lamb,
    ref_lars,
    ref_lion,
    ref_momentum,
    ref_muon,
    ref_nadam,
    ref_radam,
    ref_rmsprop,
    ref_rprop,
    ref_schedule_free,
    ref_sgd,
)

Step = Callable[[np.ndarray, np.ndarray, dict, int, float], np.ndarray]


def _decoupled(step: Step, weight_decay: float) -> Step:
    """θ ← θ − α (u + λθ) on every leaf: AdamW's decay with `mask=None`."""
    def decayed(p, g, s, t, lr):
        return step(p, g, s, t, lr) - lr * weight_decay * p
    return decayed


REFERENCES: dict[str, Step] = {
    "sgd": ref_sgd,
    "momentum": ref_momentum(0.9, pytorch=False, nesterov=False),
    "nesterov": ref_momentum(0.9, pytorch=False, nesterov=True),
    "adagrad": ref_adagrad(0.0, 1e-10, in_sqrt=False),
    "adadelta": ref_adadelta(0.95, 1e-6),
    "rmsprop": ref_rmsprop(0.9, 1e-8),
    "adam": ref_adam(),
    "adamw": _decoupled(ref_adam(), 0.01),
    "nadam": ref_nadam(),
    "adamax": ref_adamax(),
    "lion": ref_lion(),
    "radam": ref_radam(),
    # eps1=None is the machine epsilon of the state dtype: float32 in these runs.
    "adafactor": ref_adafactor(eps1=float(np.finfo(np.float32).eps)),
    "lamb": ref_lamb(),
    "lars": ref_lars(),
    "rprop": ref_rprop(),  # Δ_0 = 0.01, the default learning_rate (its lr argument unused)
    "muon": ref_muon(),
    "schedule_free_adamw": ref_schedule_free(b2=0.999),
    "schedule_free_sgd": ref_schedule_free(),
}


def run(rule: str, leaves: list[np.ndarray], grads_of: Callable, lr_of_t: Callable,
        steps: int) -> list[list[np.ndarray]]:
    """The reference trajectory of `rule`: leaves after each of `steps` updates, with
    `grads_of(leaves, t)` the gradients of update t and `lr_of_t(t)` its learning rate."""
    leaves = [np.asarray(x, np.float64) for x in leaves]
    states: list[dict] = [{} for _ in leaves]
    history = []
    for t in range(1, steps + 1):
        grads = grads_of(leaves, t)
        leaves = [REFERENCES[rule](p, g, s, t, lr_of_t(t))
                  for p, g, s in zip(leaves, grads, states, strict=True)]
        history.append(leaves)
    return history
