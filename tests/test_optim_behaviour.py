"""What the optimizers promise beyond their equations: momentum placements, Nesterov's
look-ahead, jit / vmap, the state (step, learning rate, save/load), dtypes, chaining, errors."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _optim_refs import REFERENCES
from safetensors.numpy import load_file, save_file

from jnet import optim

# A convex quadratic J(x) = ½ xᵀAx - bᵀx, with its gradient in NumPy for the references.
A = np.array([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 2.0]])
B = np.array([1.0, -2.0, 0.5])
X0 = np.array([2.0, 1.0, -1.0])


def grad_np(x):
    return A @ x - B


def grad_jnp(x):
    return jnp.asarray(A, jnp.float32) @ x - jnp.asarray(B, jnp.float32)


def trajectory(opt, steps=30, x0=X0):
    x = jnp.asarray(x0, jnp.float32)
    state = opt.init(x)

    def body(carry, _):
        x, state = carry
        x, state = opt.update(grad_jnp(x), state, x)
        return (x, state), x

    _, xs = jax.lax.scan(body, (x, state), None, length=steps)
    return np.asarray(xs)


# ---- momentum placements -----------------------------------------------------------------

def test_momentum_placements_equal_under_constant_learning_rate():
    textbook = trajectory(optim.momentum(0.1, 0.9))
    pytorch = trajectory(optim.momentum(0.1, 0.9, pytorch_placement=True))
    np.testing.assert_allclose(textbook, pytorch, rtol=1e-5, atol=1e-6)


def test_momentum_placements_differ_under_step_schedule():
    schedule = optim.step_decay_schedule(0.1, 5, 0.1)
    textbook = trajectory(optim.momentum(schedule, 0.9))
    pytorch = trajectory(optim.momentum(schedule, 0.9, pytorch_placement=True))
    np.testing.assert_allclose(textbook[:5], pytorch[:5], rtol=1e-5, atol=1e-6)
    # After the drop PyTorch's buffer is rescaled at once (α_t b_t), the textbook velocity
    # keeps the old rates of past gradients: the sixth iterate already differs.
    assert np.max(np.abs(textbook[5] - pytorch[5])) > 1e-2
    # Independent check of the documented difference at step 6 (both from the same V_5):
    x, v_text, b = X0.copy(), np.zeros(3), np.zeros(3)
    for t in range(1, 7):
        lr = 0.1 * 0.1 ** ((t - 1) // 5)
        g = grad_np(x)
        v_text, b = 0.9 * v_text + lr * g, 0.9 * b + g
        x_text, x_torch = x - v_text, x - lr * b
        if t < 6:
            x = x_text
    np.testing.assert_allclose(textbook[5], x_text, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pytorch[5], x_torch, rtol=1e-5, atol=1e-6)


# ---- Nesterov: the stored parameters are the textbook look-ahead point ---------------------

@pytest.mark.parametrize("scheduled", [False, True])
def test_nesterov_stores_textbook_look_ahead_point(scheduled):
    gamma = 0.9
    lr_of_t = (lambda t: 0.1 * 0.5 ** ((t - 1) // 10)) if scheduled else (lambda t: 0.1)
    lr = optim.step_decay_schedule(0.1, 10, 0.5) if scheduled else 0.1
    got = trajectory(optim.nesterov(lr, gamma))
    # Textbook form: gradient at θ - γV, iterate θ; the optimizer should hold φ = θ - γV.
    theta, v = X0.copy(), np.zeros(3)
    for t in range(1, 31):
        v = gamma * v + lr_of_t(t) * grad_np(theta - gamma * v)
        theta = theta - v
        np.testing.assert_allclose(got[t - 1], theta - gamma * v, rtol=1e-5, atol=1e-5)
    # ... and the look-ahead point is not the textbook iterate itself.
    assert np.max(np.abs(got[0] - (X0 - lr_of_t(1) * grad_np(X0)))) > 1e-3


# ---- jit / vmap ---------------------------------------------------------------------------

def _three_steps(opt, update):
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": (jnp.ones(3), None)}
    state = opt.init(params)
    for i in range(3):
        grads = jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1)), params)
        params, state = update(grads, state, params)
    return params, state


def _three_steps_numpy(rule):
    """`_three_steps` in float64 NumPy: the rule's reference, lr = 0.05·½(1 + cos(π s / 10))
    for the update after s others; the `None` leaf stays None."""
    leaves = [np.linspace(-1.0, 1.0, 6).reshape(2, 3), np.ones(3)]  # "w", then "b"[0]
    states = [{}, {}]
    for t in (1, 2, 3):
        lr = 0.05 * 0.5 * (1 + np.cos(np.pi * (t - 1) / 10))
        leaves = [REFERENCES[rule](p, np.sin(p * t), s, t, lr)
                  for p, s in zip(leaves, states, strict=True)]
    return {"w": leaves[0], "b": (leaves[1], None)}


class TestJit(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_jit_and_eager_match_numpy(self):
        # Each variant against the rule's NumPy reference (tests/_optim_refs.py), not against
        # the other variant: both could be wrong in the same way.
        for rule in optim.RULES:
            # Rprop's learning_rate is its initial step size Δ_0, a number (no schedule); its
            # reference starts from the default Δ_0 = 0.01.
            lr = 0.01 if rule == "rprop" else optim.cosine_decay_schedule(0.05, 10)
            opt = getattr(optim, rule)(learning_rate=lr)
            params, state = _three_steps(opt, self.variant(opt.update))
            chex.assert_trees_all_close(params, _three_steps_numpy(rule), rtol=1e-5, atol=1e-6)
            assert int(state.step) == 3


def test_no_recompile_after_first_step():
    opt = optim.adamw(optim.warmup_cosine_decay_schedule(0.0, 0.1, 3, 10), mask=optim.weights_only)
    update = jax.jit(opt.update)
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    state = opt.init(params)
    for _ in range(5):
        params, state = update(params, state, params)
    assert update._cache_size() == 1


@pytest.mark.parametrize("rule", ["sgd", "momentum", "adadelta", "rmsprop", "adam", "nadam",
                                  "lion"])
def test_vmap_over_learning_rates_equals_separate_runs(rule):
    lrs = jnp.array([0.01, 0.03, 0.1])

    # lr is a traced array inside vmap: the constructors must accept it.
    batched = jax.vmap(lambda lr: _run(rule, lr))(lrs)
    for i, lr in enumerate([0.01, 0.03, 0.1]):
        np.testing.assert_allclose(batched[i], _run(rule, lr), rtol=1e-6, atol=1e-7)
    assert not np.allclose(batched[0], batched[2])


def _run(rule, lr):
    opt = getattr(optim, rule)(lr)
    x = jnp.asarray(X0, jnp.float32)

    def body(carry, _):
        x, state = carry
        return opt.update(grad_jnp(x), state, x), None

    (x, _), _ = jax.lax.scan(body, (x, opt.init(x)), None, length=20)
    return x


# ---- the state: step, learning rate, save / load -------------------------------------------

def test_state_records_step_and_last_learning_rate():
    schedule = optim.piecewise_constant_schedule(0.1, {2: 0.5, 4: 0.1})
    opt = optim.adam(schedule)
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    assert int(state.step) == 0 and float(state.learning_rate) == pytest.approx(0.1)
    logged = []
    for _ in range(5):
        params, state = opt.update({"w": jnp.ones(3)}, state, params)
        logged.append(float(optim.current_learning_rate(state)))
    assert int(state.step) == 5 and state.step.dtype == jnp.int32
    np.testing.assert_allclose(logged, [0.1, 0.1, 0.05, 0.05, 0.005], rtol=1e-6)


def _sample_state(opt):
    params = {"dense": {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}, "head": (jnp.ones(2), None)}
    state = opt.init(params)
    for _ in range(3):
        params, state = opt.update(jax.tree.map(jnp.cos, params), state, params)
    return params, state


@pytest.mark.parametrize("rule", optim.RULES)
def test_state_survives_safetensors_round_trip(rule, tmp_path):
    opt = getattr(optim, rule)()
    params, state = _sample_state(opt)
    # Only arrays inside: flatten to named arrays, save with plain safetensors, rebuild.
    leaves, treedef = jax.tree.flatten(state)
    save_file({str(i): np.asarray(x) for i, x in enumerate(leaves)}, tmp_path / "s.safetensors")
    loaded = load_file(tmp_path / "s.safetensors")
    restored = jax.tree.unflatten(treedef, [loaded[str(i)] for i in range(len(leaves))])
    chex.assert_trees_all_equal(restored, state, strict=False)
    # ... and resuming from the restored state continues exactly as the original would.
    grads = jax.tree.map(jnp.sin, params)
    chex.assert_trees_all_equal(opt.update(grads, restored, params),
                                opt.update(grads, state, params), strict=False)


def test_state_round_trips_through_jnet_checkpoint(tmp_path):
    import jnet.checkpoint

    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.nadam())
    _, state = _sample_state(opt)
    jnet.checkpoint.save(tmp_path / "opt.safetensors", state)
    restored = jnet.checkpoint.load(tmp_path / "opt.safetensors", like=opt.init(
        {"dense": {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}, "head": (jnp.ones(2), None)}))
    assert isinstance(restored, optim.OptState)
    chex.assert_trees_all_equal(restored, state)


# ---- dtypes and odd pytrees ----------------------------------------------------------------

def test_low_precision_leaves_get_float32_state_and_keep_their_dtype():
    params = {"w": jnp.ones((2, 2), jnp.bfloat16), "b": jnp.ones(2, jnp.float32),
              "h": jnp.ones(2, jnp.float16)}
    opt = optim.adam(1e-2)
    state = opt.init(params)
    mu = state.inner[0].mu
    assert mu["w"].dtype == jnp.float32 and mu["h"].dtype == jnp.float32
    assert mu["b"].dtype == jnp.float32
    grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
    new, state = jax.jit(opt.update)(grads, state, params)
    assert {k: v.dtype for k, v in new.items()} == {k: v.dtype for k, v in params.items()}
    # First Adam step moves every coordinate by lr·sign(g) (up to ε), in each dtype.
    for k in params:
        np.testing.assert_allclose(np.asarray(new[k], np.float32), 1 - 1e-2, rtol=1e-2)
    assert state.inner[0].mu["w"].dtype == jnp.float32


def test_float64_leaves_keep_float64_state():
    with jax.enable_x64(True):
        params = {"w": jnp.ones(3, jnp.float64)}
        opt = optim.momentum(0.1)
        state = opt.init(params)
        assert state.inner[0].velocity["w"].dtype == jnp.float64
        new, _ = opt.update({"w": jnp.full(3, 1 / 3, jnp.float64)}, state, params)
        assert new["w"].dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(new["w"]), 1 - 0.1 / 3, rtol=1e-15)


def test_float32_params_keep_float32_state_under_x64_schedules():
    # Under x64 the schedule is float64; the velocity must stay float32 (a scan carry would
    # otherwise change type) and the step equal x - lr·g rounded to float32.
    with jax.enable_x64(True):
        opt = optim.momentum(optim.step_decay_schedule(0.1, 2, 0.5), 0.9)
        x = jnp.ones(3, jnp.float32)

        def body(carry, _):
            x, state = carry
            return opt.update(jnp.full(3, 0.5, jnp.float32), state, x), None

        (x, state), _ = jax.lax.scan(body, (x, opt.init(x)), None, length=1)
        assert x.dtype == jnp.float32 and state.inner[0].velocity.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(x), np.float32(1 - 0.1 * 0.5), rtol=0)


def test_none_leaves_and_python_floats_are_fine():
    params = {"a": 1.0, "b": (None, jnp.ones(2)), "c": None}
    opt = optim.sgd(0.5)
    new, _ = opt.update({"a": 2.0, "b": (None, jnp.ones(2)), "c": None}, opt.init(params),
                            params)
    assert new["c"] is None and new["b"][0] is None
    np.testing.assert_allclose(new["a"], 0.0)
    np.testing.assert_allclose(new["b"][1], 0.5)


# ---- composition ---------------------------------------------------------------------------

def test_chain_clip_then_rule_equals_rule_on_clipped_gradients():
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([0.5])}
    grads = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([12.0])}  # global norm 13
    opt = optim.chain(optim.clip_by_global_norm(1.3), optim.adagrad(0.1))
    new, _ = opt.update(grads, opt.init(params), params)
    clipped = {k: np.asarray(v) / 10.0 for k, v in grads.items()}
    for k in params:  # first AdaGrad step: θ - α g/(|g| + ε)
        expected = np.asarray(params[k]) - 0.1 * clipped[k] / (np.abs(clipped[k]) + 1e-10)
        np.testing.assert_allclose(new[k], expected, rtol=1e-6)
    value = optim.chain(optim.clip_by_value(2.0), optim.sgd(1.0))
    new, _ = value.update(grads, value.init(params), params)
    np.testing.assert_allclose(new["w"], [-1.0, -4.0])
    np.testing.assert_allclose(new["b"], [-1.5])


def test_clip_by_global_norm_leaves_small_gradients_alone():
    clip = optim.clip_by_global_norm(100.0)
    g = {"w": jnp.array([3.0, 4.0])}
    out, _ = clip.update(g, clip.init(g), g, jnp.ones((), jnp.int32))
    np.testing.assert_array_equal(out["w"], g["w"])
    assert float(optim.global_norm({"a": jnp.array([3.0]), "b": (jnp.array([4.0]),)})) == 5.0


def test_coupled_weight_decay_before_rule_is_l2():
    # PyTorch Adam(weight_decay=λ) adds λθ to the gradient before the moments.
    params = {"w": jnp.array([[1.0, -2.0]]), "b": jnp.array([3.0])}
    grads = {"w": jnp.array([[0.1, 0.2]]), "b": jnp.array([-0.5])}
    coupled = optim.chain(optim.add_decayed_weights(0.1, mask=optim.weights_only), optim.adam(1.0))
    plain = optim.adam(1.0)
    l2_grads = {"w": grads["w"] + 0.1 * params["w"], "b": grads["b"]}
    chex.assert_trees_all_close(coupled.update(grads, coupled.init(params), params)[0],
                                plain.update(l2_grads, plain.init(params), params)[0])


# ---- rules by name ---------------------------------------------------------------------------

def test_rules_map_names_to_constructors_in_order():
    assert list(optim.RULES) == ["sgd", "momentum", "nesterov", "adagrad", "adadelta",
                                 "rmsprop", "adam", "adamw", "nadam", "adamax", "lion", "radam",
                                 "adafactor", "lamb", "lars", "rprop", "muon",
                                 "schedule_free_adamw", "schedule_free_sgd"]
    assert all(optim.RULES[name] is getattr(optim, name) for name in optim.RULES)
    with pytest.raises(TypeError):
        optim.RULES["sgd"] = optim.adam  # read-only


@pytest.mark.parametrize("rule", list(optim.RULES))
def test_get_by_name_builds_the_rule_with_its_defaults(rule):
    opt = optim.get(rule)
    assert isinstance(opt, optim.Optimizer)
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}
    grads = {"w": jnp.cos(params["w"])}
    direct = optim.RULES[rule]()
    chex.assert_trees_all_equal(opt.update(grads, opt.init(params), params),
                                direct.update(grads, direct.init(params), params))


def test_get_passes_keywords_and_optimizers_through():
    x, g = np.array([1.0, -2.0]), np.array([0.5, 4.0])
    opt = optim.get("sgd", learning_rate=0.25)
    new, state = opt.update(jnp.asarray(g, jnp.float32), opt.init(jnp.asarray(x, jnp.float32)),
                            jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(new, x - 0.25 * g, rtol=1e-7)
    assert float(optim.current_learning_rate(state)) == 0.25
    built = optim.adam(1e-2)
    assert optim.get(built) is built
