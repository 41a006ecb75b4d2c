"""Bad inputs to jnet.optim: each raises `OptimizerError` (a `jnet.Error` and a `ValueError`)
before any training, and the message starts with the public function the user called and
names the offending argument."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
from jnet import optim

PARAMS = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}


def _update_with(opt, state, grads=PARAMS, params=PARAMS):
    return lambda: opt.update(grads, state, params)


# (id, thunk, argument named in the message, public function named as `where`)
CASES = [
    # learning rates: Python numbers, NumPy scalars, concrete JAX scalars, strings, arrays
    ("lr_negative", lambda: optim.sgd(-0.1), "learning_rate", "jnet.optim.sgd"),
    ("lr_nan", lambda: optim.adam(math.nan), "learning_rate", "jnet.optim.adam"),
    ("lr_inf", lambda: optim.rmsprop(math.inf), "learning_rate", "jnet.optim.rmsprop"),
    ("lr_numpy_scalar", lambda: optim.sgd(np.float32(-1e-3)), "learning_rate",
     "jnet.optim.sgd"),
    ("lr_jax_scalar", lambda: optim.momentum(jnp.asarray(-0.5)), "learning_rate",
     "jnet.optim.momentum"),
    ("lr_string", lambda: optim.adam("1e-3"), "learning_rate", "jnet.optim.adam"),
    ("lr_none", lambda: optim.lion(None), "learning_rate", "jnet.optim.lion"),
    ("lr_array", lambda: optim.sgd(jnp.array([0.1, 0.2])), "learning_rate", "jnet.optim.sgd"),
    # schedules, evaluated once at step 0 when the optimizer is built
    ("schedule_negative", lambda: optim.adam(lambda s: -0.1 + 0.0 * s), "learning_rate",
     "jnet.optim.adam"),
    ("schedule_nan", lambda: optim.nadam(lambda s: jnp.nan * s), "learning_rate",
     "jnet.optim.nadam"),
    ("schedule_not_scalar", lambda: optim.adamw(lambda s: jnp.full(3, 0.1)), "learning_rate",
     "jnet.optim.adamw"),
    # betas, eps, decays: helpers find them, the rule the user called is named
    ("adam_b1", lambda: optim.adam(b1=2), "b1", "jnet.optim.adam"),
    ("adamw_b1", lambda: optim.adamw(b1=-0.1), "b1", "jnet.optim.adamw"),
    ("adam_b2_one", lambda: optim.adam(b2=1.0), "b2", "jnet.optim.adam"),
    ("adamax_b2_string", lambda: optim.adamax(b2="0.999"), "b2", "jnet.optim.adamax"),
    ("adam_eps", lambda: optim.adam(eps=-1e-8), "eps", "jnet.optim.adam"),
    ("adam_eps_root", lambda: optim.adam(eps_root=math.nan), "eps_root", "jnet.optim.adam"),
    ("lion_b1_one", lambda: optim.lion(b1=1.0), "b1", "jnet.optim.lion"),
    ("nadam_momentum_decay", lambda: optim.nadam(momentum_decay=-1.0), "momentum_decay",
     "jnet.optim.nadam"),
    ("rmsprop_decay", lambda: optim.rmsprop(decay=1.5), "decay", "jnet.optim.rmsprop"),
    ("rmsprop_momentum", lambda: optim.rmsprop(momentum=1.0), "momentum",
     "jnet.optim.rmsprop"),
    ("momentum_negative", lambda: optim.momentum(momentum=-0.1), "momentum",
     "jnet.optim.momentum"),
    ("nesterov_bool", lambda: optim.nesterov(momentum=True), "momentum", "jnet.optim.nesterov"),
    ("adadelta_rho", lambda: optim.adadelta(rho=1.0), "rho", "jnet.optim.adadelta"),
    ("adagrad_accumulator", lambda: optim.adagrad(initial_accumulator_value=-1.0),
     "initial_accumulator_value", "jnet.optim.adagrad"),
    ("adamw_weight_decay", lambda: optim.adamw(weight_decay=-1e-2), "weight_decay",
     "jnet.optim.adamw"),
    ("lion_weight_decay_nan", lambda: optim.lion(weight_decay=math.nan), "weight_decay",
     "jnet.optim.lion"),
    ("add_decayed_weights", lambda: optim.add_decayed_weights(np.float64(-0.1)), "weight_decay",
     "jnet.optim.add_decayed_weights"),
    # clipping: the bound must be positive
    ("clip_norm_zero", lambda: optim.clip_by_global_norm(0.0), "max_norm",
     "jnet.optim.clip_by_global_norm"),
    ("clip_value_negative", lambda: optim.clip_by_value(-1.0), "max_value",
     "jnet.optim.clip_by_value"),
    # schedule constructors
    ("step_size_zero", lambda: optim.step_decay_schedule(0.1, 0), "step_size",
     "jnet.optim.step_decay_schedule"),
    ("transition_steps_float", lambda: optim.linear_schedule(0.0, 1.0, 2.5), "transition_steps",
     "jnet.optim.linear_schedule"),
    ("decay_before_warmup", lambda: optim.warmup_cosine_decay_schedule(0.0, 1.0, 10, 5),
     "decay_steps", "jnet.optim.warmup_cosine_decay_schedule"),
    ("cosine_alpha", lambda: optim.cosine_decay_schedule(0.1, 10, alpha=2.0), "alpha",
     "jnet.optim.cosine_decay_schedule"),
    ("exponential_init_negative", lambda: optim.exponential_decay(-0.1, 0.9, 10), "init_value",
     "jnet.optim.exponential_decay"),
    ("piecewise_scale", lambda: optim.piecewise_constant_schedule(0.1, {5: -1.0}),
     "boundaries_and_scales", "jnet.optim.piecewise_constant_schedule"),
    # rules by name
    ("get_unknown", lambda: optim.get("adamm"), "name_or_optimizer", "jnet.optim.get"),
    ("get_constructor", lambda: optim.get(optim.adam), "name_or_optimizer", "jnet.optim.get"),
    ("get_transformation", lambda: optim.get(optim.clip_by_value(1.0)), "name_or_optimizer",
     "jnet.optim.get"),
    ("get_number", lambda: optim.get(3), "name_or_optimizer", "jnet.optim.get"),
    ("get_other_function", lambda: optim.get(optim.scale_by_adam), "name_or_optimizer",
     "jnet.optim.get"),
    ("get_bad_keyword", lambda: optim.get("adam", lr=1e-3), "lr", "jnet.optim.get"),
    ("get_kwargs_with_optimizer", lambda: optim.get(optim.adam(), learning_rate=1.0),
     "learning_rate", "jnet.optim.get"),
    ("get_bad_value", lambda: optim.get("adam", b1=1.5), "b1", "jnet.optim.adam"),
    # chain, state, init and update
    ("chain_not_a_stage", lambda: optim.chain("adam"), "parts", "jnet.optim.chain"),
    ("chain_no_rate", lambda: optim.chain(optim.clip_by_value(1.0)), "parts",
     "jnet.optim.chain"),
    ("current_lr_not_state", lambda: optim.current_learning_rate({"lr": 0.1}), "opt_state",
     "jnet.optim.current_learning_rate"),
    ("mask_structure", lambda: optim.adamw(mask={"w": True}).init(PARAMS), "mask",
     "jnet.optim.adamw(...).init"),
    ("mask_not_bool", lambda: optim.lion(weight_decay=0.1, mask={"w": 1.0, "b": True})
     .init(PARAMS), "mask", "jnet.optim.lion(...).init"),
    ("mask_function_structure", lambda: optim.chain(
        optim.add_decayed_weights(0.1, mask=lambda p: [True]), optim.sgd()).init(PARAMS),
     "mask", "jnet.optim.chain(...).init"),
    ("int_params", lambda: optim.sgd().init({"n": jnp.ones(2, jnp.int32)}), "params",
     "jnet.optim.sgd(...).init"),
    ("state_of_other_rule", lambda: _update_with(optim.adam(), optim.sgd().init(PARAMS))(),
     "opt_state", "jnet.optim.adam(...).update"),
    ("state_of_other_params", lambda: _update_with(
        optim.adam(), optim.adam().init({"w": jnp.ones((3, 2)), "b": jnp.zeros(3)}))(),
     "opt_state", "jnet.optim.adam(...).update"),
    ("state_not_opt_state", lambda: _update_with(optim.momentum(), {"velocity": PARAMS})(),
     "opt_state", "jnet.optim.momentum(...).update"),
    ("state_mismatch_under_jit", lambda: jax.jit(optim.adam().update)(
        PARAMS, optim.nadam().init(PARAMS), PARAMS), "opt_state", "jnet.optim.adam(...).update"),
    ("grads_structure", lambda: _update_with(optim.adam(), optim.adam().init(PARAMS),
                                             grads={"w": jnp.ones((2, 3))})(),
     "grads", "jnet.optim.adam(...).update"),
    ("grads_shape", lambda: _update_with(optim.sgd(), optim.sgd().init(PARAMS),
                                         grads={"w": jnp.ones((3, 2)), "b": jnp.zeros(3)})(),
     "grads", "jnet.optim.sgd(...).update"),
]


def test_enough_distinct_cases():
    assert len({name for name, *_ in CASES}) == len(CASES) >= 25


@pytest.mark.parametrize(("thunk", "argument", "where"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_raises_optimizer_error(thunk, argument, where):
    with pytest.raises(optim.OptimizerError) as info:
        thunk()
    err = info.value
    assert type(err) is optim.OptimizerError
    assert isinstance(err, jnet.errors.Error) and isinstance(err, ValueError)
    assert err.where == where
    assert str(err).startswith(f"{where}: ")
    assert argument in err.message, err.message


def test_message_format_is_stable():
    with pytest.raises(optim.OptimizerError) as info:
        optim.adamw(b1=2)
    assert str(info.value).startswith("jnet.optim.adamw: b1 must lie in [0, 1), got 2. ")


def test_get_lists_the_rules_and_suggests_a_close_name():
    with pytest.raises(optim.OptimizerError) as info:
        optim.get("Adam")
    message = str(info.value)
    assert "Did you mean 'adam'?" in message
    assert all(repr(name) in message for name in optim.RULES)


# ---- what is deliberately NOT refused -------------------------------------------------------

def test_tracer_learning_rates_pass_unchecked_under_vmap():
    # A population of rates: inside vmap the rate is a tracer and cannot be checked, so a
    # negative member is not refused (documented in check_hyperparameter).
    def first_step(lr):
        opt = optim.sgd(lr)
        x = jnp.ones(2)
        return opt.update(jnp.ones(2), opt.init(x), x)[0]

    got = jax.vmap(first_step)(jnp.array([0.1, -0.1]))
    np.testing.assert_allclose(got, [[0.9, 0.9], [1.1, 1.1]], rtol=1e-6)


def test_schedule_over_a_tracer_or_not_concrete_is_left_unchecked():
    def make(lr):
        return optim.adam(lambda step: lr * 0.5 ** step).init(jnp.ones(2)).learning_rate

    np.testing.assert_allclose(jax.vmap(make)(jnp.array([0.1, 0.2])), [0.1, 0.2], rtol=1e-6)

    def only_in_a_trace(step):
        if not isinstance(step, jax.core.Tracer):
            raise RuntimeError("this schedule runs under jit only")
        return 0.1

    opt = optim.sgd(only_in_a_trace)  # unchecked at construction, fine under jit
    x = jnp.ones(2)
    new, _ = jax.jit(opt.update)(jnp.ones(2), jax.jit(opt.init)(x), x)
    np.testing.assert_allclose(new, [0.9, 0.9], rtol=1e-6)


def test_zero_learning_rate_and_zero_decay_are_valid():
    opt = optim.chain(optim.add_decayed_weights(0.0), optim.adam(0.0))
    new, _ = opt.update(PARAMS, opt.init(PARAMS), PARAMS)
    np.testing.assert_array_equal(new["w"], PARAMS["w"])
