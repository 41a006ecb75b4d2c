"""Parameter groups and freezing: `partition`, `masked`, `freeze`. A frozen array is
bit-identical after any run with every rule in RULES (decoupled weight decay included), the
trained arrays follow their rule exactly as if it ran on them alone, groups report their own
learning rates, and masks / labels may be given by key path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
from jnet import layers as L
from jnet import optim


def make_params():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 4)).astype(np.float32)
    return {"encoder": {"w": jnp.asarray(w),
                        # -0.0 and a denormal: a +0.0 update would change their bits
                        "b": jnp.asarray([-0.0, 1e-40, 2.0, -3.0], jnp.float32)},
            "head": {"w": jnp.asarray(rng.normal(size=(4, 2)), jnp.float32),
                     "b": jnp.asarray(rng.normal(size=(2,)), jnp.float32)}}


def grads_at(params, t):
    return jax.tree.map(lambda p: jnp.sin(p * (t + 1)) + 0.1 * (t % 3), params)


def run(opt, params, steps=20):
    state = opt.init(params)
    update = jax.jit(opt.update)
    for t in range(steps):
        params, state = update(grads_at(params, t), state, params)
    return params, state


def is_encoder(path, p):
    return path[0] == "encoder"


def rule(name):
    # Lion's default λ is 0; decay it so the test covers decoupled decay on a frozen array.
    return optim.lion(weight_decay=0.1) if name == "lion" else optim.RULES[name]()


def bits(x):
    return np.asarray(x).view(np.uint32)


FORMS = {
    "freeze_first": lambda r: optim.chain(optim.freeze(is_encoder), r),
    "freeze_last": lambda r: optim.chain(r, optim.freeze(is_encoder)),
    "partition": lambda r: optim.partition(
        {"train": r, "frozen": optim.freeze()},
        lambda path, p: "frozen" if path[0] == "encoder" else "train"),
    "masked": lambda r: optim.masked(r, lambda path, p: path[0] != "encoder"),
}


# Every rule in the two forms that stress freezing most (freeze before the rule's decay, and
# a frozen group); the other forms with the two rules whose decay moves zero-gradient arrays.
COMBINATIONS = (
    [(name, form) for name in optim.RULES for form in ("freeze_first", "partition")]
    + [(name, form) for name in ("adamw", "lion") for form in ("freeze_last", "masked")])


@pytest.mark.parametrize("name, form", COMBINATIONS)
def test_frozen_arrays_are_bit_identical_and_the_rest_follow_the_rule(name, form):
    params = make_params()
    got, _ = run(FORMS[form](rule(name)), params)
    for key in ("w", "b"):
        np.testing.assert_array_equal(bits(got["encoder"][key]), bits(params["encoder"][key]))
    # The head trains exactly as the rule alone on the head (the reference never sees the
    # encoder: its gradients depend only on the head's own params).
    alone, _ = run(rule(name), params["head"])
    moved = not np.allclose(np.asarray(alone["w"]), np.asarray(params["head"]["w"]))
    assert moved
    for key in ("w", "b"):
        np.testing.assert_allclose(np.asarray(got["head"][key]), np.asarray(alone[key]),
                                   rtol=1e-6, atol=1e-7)


def test_without_freeze_zeroing_the_gradient_still_moves_decayed_weights():
    # What `freeze` is for: adamw and lion decay θ even where the gradient is zero.
    params = make_params()
    for opt in (optim.adamw(), optim.lion(weight_decay=0.1)):
        state = opt.init(params)
        zero = jax.tree.map(jnp.zeros_like, params)
        new, _ = opt.update(zero, state, params)
        assert not np.array_equal(np.asarray(new["encoder"]["w"]),
                                  np.asarray(params["encoder"]["w"]))


def test_partition_groups_match_their_optimizers_alone_and_log_their_rates():
    params = make_params()
    schedule = optim.step_decay_schedule(0.1, 5, 0.5)
    opt = optim.partition({"enc": optim.adam(0.01), "head": optim.momentum(schedule, 0.8)},
                          {"encoder": {"w": "enc", "b": "enc"},
                           "head": {"w": "head", "b": "head"}})
    got, state = run(opt, params, steps=12)
    for group, opt_alone in (("encoder", optim.adam(0.01)),
                             ("head", optim.momentum(schedule, 0.8))):
        alone, _ = run(opt_alone, params[group], steps=12)
        for key in ("w", "b"):
            np.testing.assert_allclose(np.asarray(got[group][key]), np.asarray(alone[key]),
                                       rtol=1e-6, atol=1e-7)
    lr = optim.current_learning_rate(state)
    assert set(lr) == {"enc", "head"}
    np.testing.assert_allclose(float(lr["enc"]), 0.01, rtol=1e-7)
    np.testing.assert_allclose(float(lr["head"]), 0.1 * 0.5 ** (11 // 5), rtol=1e-7)
    assert lr["head"].dtype == jnp.float32
    # Each group's state holds its own arrays only.
    moments = state.inner[0]["enc"][0].mu
    assert moments["head"] == {"w": None, "b": None}


def test_frozen_group_logs_zero_and_chain_keeps_the_dict():
    params = make_params()
    opt = optim.chain(optim.clip_by_global_norm(1.0),
                      optim.partition({"train": optim.sgd(0.1), "frozen": optim.freeze()},
                                      lambda path, p: "frozen" if path[-1] == "b" else "train"))
    new, state = opt.update(grads_at(params, 0), opt.init(params), params)
    assert {k: float(v) for k, v in optim.current_learning_rate(state).items()} == {
        "train": pytest.approx(0.1), "frozen": 0.0}
    np.testing.assert_array_equal(bits(new["head"]["b"]), bits(params["head"]["b"]))


def test_weight_decay_mask_by_key_path():
    # Decay every array but the biases, chosen by the last key of the path: equal to the
    # NumPy first AdamW step, θ - α (g/(|g| + ε) + λ θ·[not a bias]).
    params = make_params()
    opt = optim.adamw(0.01, weight_decay=0.5, mask=lambda path, p: path[-1] != "b")
    g = grads_at(params, 0)
    new, _ = opt.update(g, opt.init(params), params)
    for group in params:
        for key in ("w", "b"):
            p, gg = np.asarray(params[group][key], np.float64), np.asarray(g[group][key])
            want = p - 0.01 * (gg / (np.abs(gg) + 1e-8) + (0.5 * p if key == "w" else 0.0))
            np.testing.assert_allclose(np.asarray(new[group][key]), want, rtol=1e-5, atol=1e-7)


def test_vmap_over_a_group_learning_rate():
    params = make_params()

    def final(lr):
        opt = optim.partition({"a": optim.sgd(lr), "b": optim.adam(1e-3)},
                              lambda path, p: "a" if path[0] == "head" else "b")
        return run(opt, params, steps=3)[0]["head"]["w"]

    lrs = jnp.array([0.01, 0.1])
    batched = jax.vmap(final)(lrs)
    for i in range(2):
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(final(float(lrs[i]))),
                                   rtol=1e-6)


def test_fit_and_train_step_take_groups_unchanged():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = L.serial(L.Input((4,)), L.Dense(8), L.Tanh(), L.Dense(2), L.ClassificationOutput())
    _, params, state = model.init(jax.random.key(0), (4,))
    first = jax.tree.leaves(params)[0]  # one Dense layer's kernel or bias: frozen below

    def frozen(path, p):
        return p.shape == first.shape

    opt = optim.masked(optim.adamw(1e-2), lambda path, p: not frozen(path, p))
    result = jnet.fit(model, opt, x, y, epochs=2, batch_size=10, key=0, verbose=0,
                      params=params, state=state)
    after = [a for a in jax.tree.leaves(result.params) if a.shape == first.shape]
    before = [a for a in jax.tree.leaves(params) if a.shape == first.shape]
    for a, b in zip(after, before, strict=True):
        np.testing.assert_array_equal(bits(a), bits(b))
    step = jax.jit(jnet.make_train_step(model, optim.partition(
        {"fast": optim.sgd(0.1), "slow": optim.sgd(0.01)},
        lambda path, p: "fast" if p.ndim == 2 else "slow")))
    opt_state = optim.partition({"fast": optim.sgd(0.1), "slow": optim.sgd(0.01)},
                                lambda path, p: "fast" if p.ndim == 2 else "slow").init(params)
    out = step(params, state, opt_state, (x[:10], y[:10]), jax.random.key(1))
    assert int(out[2].step) == 1


@pytest.mark.parametrize("make, match", [
    (lambda: optim.partition({}, {}), "non-empty dict"),
    (lambda: optim.partition({"a": optim.adam}, {}), "Optimizer"),
    (lambda: optim.partition({"a": optim.adam()}, lambda path, p: "b").init(make_params()),
     "'b', which has no optimizer"),
    (lambda: optim.partition({"a": optim.adam()}, {"encoder": "a"}).init(make_params()),
     "structure of the params"),
    (lambda: optim.masked(optim.adam(), lambda path, p: "yes").init(make_params()),
     "must be a bool"),
    (lambda: optim.freeze({"w": True}).init(make_params()), "structure"),
    (lambda: optim.masked("adam", None), "Optimizer"),
])
def test_bad_groups_raise_optimizer_errors(make, match):
    with pytest.raises(optim.OptimizerError, match=match):
        make()


def test_schedule_without_a_step_argument_is_refused_at_construction():
    with pytest.raises(jnet.Error, match=r"learning_rate.*does not take the step"):
        optim.adam(learning_rate=lambda: 0.1)
