"""Optimizers as pure state transitions, every rule written by hand (no optax).

    opt = jnet.optim.adam(learning_rate=1e-3)
    opt_state = opt.init(params)
    params, opt_state = opt.update(grads, opt_state, params)
    opt_state.step, opt_state.learning_rate        # int32 count, lr of the last update

Rules: `sgd`, `momentum`, `nesterov`, `adagrad`, `adadelta`, `rmsprop`, `adam` (AMSGrad flag),
`adamw`, `nadam`, `adamax`, `lion`. Composition: `chain` of gradient transformations
(`clip_by_value`, `clip_by_global_norm`, `add_decayed_weights`, `scale_by_*`,
`scale_by_learning_rate`) and of whole rules. Schedules live in `jnet.optim.schedules` and are
re-exported here. The equations, defaults and PyTorch / Keras mappings: docs/optimizers.md.
"""

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
from jnet.optim.lion import lion, scale_by_lion
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

RULES = ("sgd", "momentum", "nesterov", "adagrad", "adadelta", "rmsprop", "adam", "adamw",
         "nadam", "adamax", "lion")

__all__ = [
    "RULES",
    "GradientTransformation",
    "OptState",
    "Optimizer",
    "OptimizerError",
    "adadelta",
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
    "exponential_decay",
    "global_norm",
    "linear_schedule",
    "lion",
    "momentum",
    "nadam",
    "nesterov",
    "piecewise_constant_schedule",
    "rmsprop",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_learning_rate",
    "scale_by_lion",
    "scale_by_nadam",
    "scale_by_rms",
    "sgd",
    "step_decay_schedule",
    "trace_momentum",
    "warmup_cosine_decay_schedule",
    "weights_only",
]
