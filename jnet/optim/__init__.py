"""Optimizers as pure state transitions, every rule written by hand (no optax).

    opt = jnet.optim.adam(learning_rate=1e-3)
    opt_state = opt.init(params)
    params, opt_state = opt.update(grads, opt_state, params)
    opt_state.step, opt_state.learning_rate        # int32 count, lr of the last update

Rules, in `RULES` (`name -> constructor`): `sgd`, `momentum`, `nesterov`, `adagrad`,
`adadelta`, `rmsprop`, `adam` (AMSGrad flag), `adamw`, `nadam`, `adamax`, `lion`, `radam`,
`adafactor`, `lamb`, `lars`, `rprop`, `muon`, `schedule_free_adamw`, `schedule_free_sgd`
(evaluate with `schedule_free_eval_params`); `sam(base, rho)` wraps any of them;
`get("adam", learning_rate=1e-2)` builds one by name. Composition: `chain` of gradient
transformations (`clip_by_value`, `clip_by_global_norm`, `add_decayed_weights`, `scale_by_*`,
`scale_by_learning_rate`) and of whole rules. Parameter groups and freezing: `partition`
({label: optimizer}, one learning rate per group), `masked` and `freeze` (bit-identical
arrays). Wrappers: `accumulate(opt, k)` (gradient accumulation), `ema(opt, decay)` (averaged
params, read with `ema_params`), `sam(opt, rho)`; `eval_params(params, opt_state)`: the weights
any optimizer says to evaluate with. Schedules live in `jnet.optim.schedules` and are
re-exported here. The learning rate the last update used:
`current_learning_rate(opt_state)`, the one way to read it. The equations, defaults and
PyTorch / Keras mappings: each rule's docstring (docs/optimizers.md collects them).
"""

from __future__ import annotations

import difflib
import inspect
import types
from collections.abc import Callable
from typing import Any, NoReturn

from jnet.errors import public
from jnet.optim.adafactor import adafactor, scale_by_adafactor
from jnet.optim.adam import (
    adam,
    adamax,
    adamw,
    nadam,
    scale_by_adam,
    scale_by_adamax,
    scale_by_nadam,
)
from jnet.optim.adaptive import (
    adadelta,
    adagrad,
    rmsprop,
    scale_by_adadelta,
    scale_by_adagrad,
    scale_by_rms,
)
from jnet.optim.base import (
    GradientTransformation,
    Optimizer,
    OptimizerError,
    OptState,
    current_learning_rate,
)
from jnet.optim.chain import chain, scale_by_learning_rate
from jnet.optim.clip import clip_by_global_norm, clip_by_value, global_norm
from jnet.optim.groups import freeze, masked, partition
from jnet.optim.layerwise import lamb, lars, scale_by_trust_ratio
from jnet.optim.lion import lion, scale_by_lion
from jnet.optim.muon import muon, muon_arrays, newton_schulz, scale_by_muon
from jnet.optim.radam import radam, scale_by_radam
from jnet.optim.rprop import rprop, scale_by_rprop
from jnet.optim.sam import sam
from jnet.optim.schedule_free import (
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from jnet.optim.schedules import (
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    linear_schedule,
    piecewise_constant_schedule,
    step_decay_schedule,
    warmup_cosine_decay_schedule,
)
from jnet.optim.sgd import momentum, nesterov, sgd, trace_momentum
from jnet.optim.weight_decay import add_decayed_weights, weights_only
from jnet.optim.wrappers import accumulate, ema, ema_params, eval_params

RULES: types.MappingProxyType[str, Callable[..., Optimizer]] = types.MappingProxyType({
    "sgd": sgd, "momentum": momentum, "nesterov": nesterov, "adagrad": adagrad,
    "adadelta": adadelta, "rmsprop": rmsprop, "adam": adam, "adamw": adamw, "nadam": nadam,
    "adamax": adamax, "lion": lion, "radam": radam, "adafactor": adafactor, "lamb": lamb,
    "lars": lars, "rprop": rprop, "muon": muon, "schedule_free_adamw": schedule_free_adamw,
    "schedule_free_sgd": schedule_free_sgd,
})
"""Every update rule by name (`name -> constructor`), in the order of the docs."""


def _rule_list() -> str:
    return ", ".join(repr(name) for name in RULES)


def _by_name(name: str, kwargs: dict[str, Any]) -> Callable[..., Optimizer]:
    """The constructor of rule `name` after checking `kwargs` against its signature."""
    if name not in RULES:
        close = difflib.get_close_matches(name.lower(), list(RULES), n=1)
        hint = f"Did you mean {close[0]!r}? " if close else ""
        raise OptimizerError(f"name_or_optimizer {name!r} is not a rule name. {hint}The rules "
                             f"are {_rule_list()}.")
    parameters = inspect.signature(RULES[name]).parameters
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        raise OptimizerError(f"{unknown[0]} is not an argument of jnet.optim.{name}; its "
                             f"arguments are {', '.join(parameters)}.")
    return RULES[name]


@public("jnet.optim.get")
def get(name_or_optimizer: str | Optimizer, **kwargs: Any) -> Optimizer:
    """An `Optimizer` from a rule name or an optimizer (`jnet.fit(model, "adam", ...)`).

        get("adam")                        # adam() with its defaults
        get("sgd", learning_rate=0.1)      # sgd(learning_rate=0.1)
        get(adam(1e-2))                    # returned as is

    Args:
        name_or_optimizer: a name in `RULES` or an `Optimizer` (passed through).
        **kwargs: arguments of the named rule (none with an `Optimizer`).

    Returns:
        An `Optimizer`.

    Raises:
        OptimizerError: an unknown name (the message lists `RULES`), an argument the rule does
            not take, arguments given with an `Optimizer`, a constructor not called
            (`jnet.optim.adam` instead of `jnet.optim.adam()`), a single transformation, or
            anything else. An argument out of range is reported by the rule itself
            (``jnet.optim.adam: b1 must lie in [0, 1), ...``).
    """
    if isinstance(name_or_optimizer, Optimizer):
        if kwargs:
            raise OptimizerError(f"{', '.join(kwargs)}: keyword arguments apply to a rule "
                                 "name only; an Optimizer is already built. Pass them to its "
                                 "constructor, e.g. adam(learning_rate=1e-2).")
        return name_or_optimizer
    if isinstance(name_or_optimizer, str):
        rule = _by_name(name_or_optimizer, kwargs)
    else:
        _refuse(name_or_optimizer)
    return rule(**kwargs)  # outside `get`'s own checks: its errors name the rule


def _refuse(given: Any) -> NoReturn:
    """Raise the `OptimizerError` for a value `get` cannot turn into an optimizer."""
    name = getattr(given, "__name__", None)
    if callable(given) and isinstance(name, str) and name in RULES and RULES[name] is given:
        raise OptimizerError(f"name_or_optimizer is the constructor jnet.optim.{name} itself, "
                             f"not an optimizer. Call it: jnet.optim.{name}() (or pass "
                             f"{name!r}).")
    if isinstance(given, GradientTransformation):
        raise OptimizerError("name_or_optimizer is a GradientTransformation (one stage), not "
                             "an Optimizer. Wrap it: jnet.optim.chain(transformation, "
                             "jnet.optim.scale_by_learning_rate(lr)).")
    if callable(given):
        raise OptimizerError(f"name_or_optimizer is the function {name or given!r}, not an "
                             "Optimizer. Call it to build one, or pass a rule name; the rules "
                             f"are {_rule_list()}.")
    raise OptimizerError(f"name_or_optimizer must be a rule name or an Optimizer, got "
                         f"{type(given).__name__} {given!r}. The rules are {_rule_list()}.")

__all__ = [
    "RULES",
    "GradientTransformation",
    "OptState",
    "Optimizer",
    "OptimizerError",
    "accumulate",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "add_decayed_weights",
    "chain",
    "clip_by_global_norm",
    "clip_by_value",
    "constant_schedule",
    "cosine_decay_schedule",
    "current_learning_rate",
    "ema",
    "ema_params",
    "eval_params",
    "exponential_decay",
    "freeze",
    "get",
    "global_norm",
    "lamb",
    "lars",
    "linear_schedule",
    "lion",
    "masked",
    "momentum",
    "muon",
    "muon_arrays",
    "nadam",
    "nesterov",
    "newton_schulz",
    "partition",
    "piecewise_constant_schedule",
    "radam",
    "rmsprop",
    "rprop",
    "sam",
    "scale_by_adadelta",
    "scale_by_adafactor",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_learning_rate",
    "scale_by_lion",
    "scale_by_muon",
    "scale_by_nadam",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_rprop",
    "scale_by_trust_ratio",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "sgd",
    "step_decay_schedule",
    "trace_momentum",
    "warmup_cosine_decay_schedule",
    "weights_only",
]
