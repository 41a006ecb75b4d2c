"""The 2026 rules in float64: 200 updates on the parity problem agree to 1e-10 with the NumPy
references written from their papers (tests/test_optim_rules.py), schedule-free evaluation
weights included; their hyperparameters can be vmapped; Muon routes arrays as documented;
SAM follows Foret et al.'s update through the two-call protocol and runs in `jnet.fit`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_optim_rules as R

import jnet
from jnet import layers as L
from jnet import optim

_spec = importlib.util.spec_from_file_location(
    "make_optim_fixtures", Path(__file__).resolve().parent.parent / "scripts"
    / "make_optim_fixtures.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

LR = 0.01
CASES = {
    "radam": (lambda: optim.radam(LR), R.ref_radam()),
    "adafactor": (lambda: optim.adafactor(LR, eps1=1e-30, weight_decay=0.05),
                  R.ref_adafactor(wd=0.05)),
    "lamb": (lambda: optim.lamb(LR, weight_decay=0.05), R.ref_lamb(wd=0.05)),
    "lars": (lambda: optim.lars(LR * 50, weight_decay=1e-3), R.ref_lars(1e-3)),
    "rprop": (lambda: optim.rprop(LR), R.ref_rprop(LR)),
    "muon": (lambda: optim.muon(LR), R.ref_muon()),
    "schedule_free_adamw": (lambda: optim.schedule_free_adamw(LR, weight_decay=0.05,
                                                              warmup_steps=20),
                            R.ref_schedule_free(b2=0.999, wd=0.05, warmup=20)),
    "schedule_free_sgd": (lambda: optim.schedule_free_sgd(LR * 5, 0.8, 0.05, r=0.5),
                          R.ref_schedule_free(0.8, wd=0.05, r=0.5)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_float64_trajectory_matches_the_paper(case):
    make, ref = CASES[case]
    prob = fixtures.problem()
    lr = LR * 50 if case == "lars" else LR * 5 if case == "schedule_free_sgd" else LR
    numpy_params = {k: v.copy() for k, v in prob["init"].items()}
    states: dict[str, dict] = {k: {} for k in numpy_params}
    opt = make()
    with jax.enable_x64(True):
        params = {k: jnp.asarray(v) for k, v in prob["init"].items()}
        state = opt.init(params)
        update = jax.jit(opt.update)
        for t in range(1, fixtures.STEPS + 1):
            grads = fixtures.gradient(prob, numpy_params, t)
            numpy_params = {k: ref(numpy_params[k], grads[k], states[k], t, lr)
                            for k in fixtures.KEYS}
            grads = fixtures.gradient(prob, {k: np.asarray(v) for k, v in params.items()}, t)
            params, state = update(grads, state, params)
            for k in fixtures.KEYS:
                np.testing.assert_allclose(np.asarray(params[k]), numpy_params[k], rtol=0,
                                           atol=1e-10, err_msg=f"{case} {k} step {t}")
        if case.startswith("schedule_free"):
            x = optim.schedule_free_eval_params(params, state)
            for k in fixtures.KEYS:
                s = states[k]
                want = s["y"] + (1 - 1 / (0.9 if case.endswith("adamw") else 0.8)) * (
                    s["z"] - s["y"])
                np.testing.assert_allclose(np.asarray(x[k]), want, rtol=0, atol=1e-10)
                assert np.max(np.abs(want - s["y"])) > 1e-4  # x and y differ: a real check
    assert np.max(np.abs(numpy_params["w1"] - prob["init"]["w1"])) > 1e-2


# ---- vmappable hyperparameters -------------------------------------------------------------

VMAPPED = {
    "radam": lambda h: optim.radam(h), "adafactor": lambda h: optim.adafactor(h),
    "lamb": lambda h: optim.lamb(h, weight_decay=h), "lars": lambda h: optim.lars(h * 10),
    "rprop": lambda h: optim.rprop(h), "muon": lambda h: optim.muon(h, weight_decay=h * 10),
    "schedule_free_adamw": lambda h: optim.schedule_free_adamw(h),
    "schedule_free_sgd": lambda h: optim.schedule_free_sgd(h, momentum=h * 9),
    "sam": lambda h: optim.sam(optim.sgd(0.05), rho=h),
}


def _final(make, h):
    opt = make(h)
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(3, 2), "b": jnp.array([0.3, -0.2])}

    def body(carry, _):
        params, state = carry
        grads = jax.tree.map(lambda p: 2.0 * p + jnp.sin(3.0 * p), params)
        return opt.update(grads, state, params), None

    (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=12)
    return params


@pytest.mark.parametrize("rule", list(VMAPPED))
def test_hyperparameters_vmap(rule):
    hs = jnp.array([0.01, 0.05, 0.1])
    batched = jax.vmap(lambda h: _final(VMAPPED[rule], h))(hs)
    for i, h in enumerate([0.01, 0.05, 0.1]):
        one = _final(VMAPPED[rule], h)
        for k in one:
            np.testing.assert_allclose(batched[k][i], one[k], rtol=2e-5, atol=1e-6)
    assert not np.allclose(batched["w"][0], batched["w"][2])


# ---- Muon ---------------------------------------------------------------------------------

def test_newton_schulz_orthogonalizes():
    g = np.random.default_rng(0).normal(size=(6, 4))
    with jax.enable_x64(True):
        o = np.asarray(optim.newton_schulz(jnp.asarray(g)))
    np.testing.assert_allclose(o, R.newton_schulz_np(g), rtol=0, atol=1e-12)
    u, _, vt = np.linalg.svd(g, full_matrices=False)
    singular = np.linalg.svd(o, compute_uv=False)
    assert np.all((singular > 0.6) & (singular < 1.25))  # the quintic's band around 1
    # ... and its singular vectors are G's: O ≈ U S' Vᵀ.
    np.testing.assert_allclose(u.T @ o @ vt.T, np.diag(np.diag(u.T @ o @ vt.T)), atol=1e-10)


def test_muon_routes_embeddings_norms_biases_and_conv_kernels_to_adamw():
    rng = np.random.default_rng(1)
    shapes = {"conv": {"w": (3, 3, 2, 4)}, "dense": {"w": (4, 3), "b": (3,)},
              "embed": {"embedding": (10, 4)}, "norm": {"scale": (3,)}}
    params = jax.tree.map(lambda s: rng.normal(size=s), shapes,
                          is_leaf=lambda s: isinstance(s, tuple))
    opt = optim.muon(0.02)
    adamw = R.ref_adam(wd=0.1)  # weights_only decay: kernels and the table, not b / scale
    with jax.enable_x64(True):
        p = jax.tree.map(jnp.asarray, params)
        state = opt.init(p)
        for t in range(1, 4):
            grads = jax.tree.map(lambda x, t=t: np.sin(np.asarray(x) * t), p)
            p, state = opt.update(jax.tree.map(jnp.asarray, grads), state, p)
    muon_state: dict = {}
    np_params = jax.tree.map(np.asarray, params)
    states = jax.tree.map(lambda _: {}, np_params)
    for t in range(1, 4):
        for path in (("conv", "w"), ("dense", "b"), ("embed", "embedding"), ("norm", "scale"),
                     ("dense", "w")):
            x = np_params[path[0]][path[1]]
            g = np.sin(x * t)
            step = R.ref_muon() if path == ("dense", "w") else adamw
            s = muon_state if path == ("dense", "w") else states[path[0]][path[1]]
            np_params[path[0]][path[1]] = step(x, g, s, t, 0.02)
    for group in np_params:
        for key in np_params[group]:
            np.testing.assert_allclose(np.asarray(p[group][key]), np_params[group][key],
                                       rtol=0, atol=1e-10, err_msg=f"{group}/{key}")


# ---- SAM ----------------------------------------------------------------------------------

A = np.array([[3.0, 0.5], [0.5, 1.0]])


def loss_np_grad(x):
    return A @ x + np.cos(x)  # ∇(½xᵀAx + Σ sin x)


def loss_jnp(x):
    return 0.5 * x @ jnp.asarray(A) @ x + jnp.sum(jnp.sin(x))


@pytest.mark.parametrize("base, ref, lr", [
    (optim.sgd, lambda: R.ref_sgd, 0.05),
    (lambda lr: optim.momentum(lr, 0.8), lambda: R.ref_momentum(0.8, False, False), 0.05),
    (optim.adam, lambda: R.ref_adam(), 0.01),
], ids=["sgd", "momentum", "adam"])
def test_sam_two_calls_give_the_papers_update(base, ref, lr):
    rho, x0 = 0.1, np.array([1.5, -2.0])
    step, state = ref(), {}
    x = x0.copy()
    with jax.enable_x64(True):
        opt = optim.sam(base(lr), rho)
        p = jnp.asarray(x0)
        s = opt.init(p)
        for t in range(1, 201):
            g = loss_np_grad(x)  # Foret et al. 2021, Algorithm 1
            e = rho * g / np.linalg.norm(g)
            x = step(x, loss_np_grad(x + e), state, t, lr)
            for _ in range(2):  # ascent, then descent, on the same "batch"
                p, s = opt.update(jax.grad(loss_jnp)(p), s, p)
            # 1e-9: the descent returns to θ through (θ + ε̂) - ε̂, an ulp per update.
            np.testing.assert_allclose(np.asarray(p), x, rtol=0, atol=1e-9, err_msg=str(t))
        assert int(s.step) == 400 and int(s.inner[0].updates) == 200


def test_sam_in_fit_updates_once_per_batch_and_logs_the_base_rate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    model = L.serial(L.Input((4,)), L.Dense(8), L.Tanh(), L.Dense(2), L.ClassificationOutput())
    schedule = optim.step_decay_schedule(0.1, 2, 0.5)
    result = jnet.fit(model, optim.sam(optim.sgd(schedule), 0.05), x, y, epochs=2,
                      batch_size=10, key=0, verbose=0)
    state = result.opt_state
    # 8 batches: 8 updates, each an ascent and a descent call on its batch
    assert result.step == 8 and int(state.step) == 16 and int(state.inner[0].updates) == 8
    # After an even number of calls the params are θ (no perturbation pending) ...
    assert all(float(jnp.max(jnp.abs(e))) == 0.0
               for e in jax.tree.leaves(state.inner[0].perturbation))
    # ... and the rate logged is that of base update 8: 0.1 · 0.5^⌊7/2⌋.
    assert float(optim.current_learning_rate(state)) == pytest.approx(0.0125)


# ---- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("make, match", [
    (lambda: optim.rprop(optim.constant_schedule(0.1)), "initial step size"),
    (lambda: optim.sam("sgd"), "base must be an Optimizer"),
    (lambda: optim.sam(optim.sgd(), rho=-1.0), "rho"),
    (lambda: optim.muon(ns_steps=0), "ns_steps"),
    (lambda: optim.muon(lr_scale="rms"), "lr_scale"),
    (lambda: optim.muon(muon_mask=lambda path, p: True).init({"b": jnp.ones(3)}),
     "2-D matrices"),
    (lambda: optim.lars(trust_coefficient=0.0), "trust_coefficient"),
    (lambda: optim.adafactor(beta2_decay=0.5), "beta2_decay"),
    (lambda: optim.schedule_free_sgd(momentum=0.0), "momentum"),
    (lambda: optim.schedule_free_adamw(warmup_steps=-1), "warmup_steps"),
    (lambda: optim.schedule_free_eval_params({"w": jnp.ones(2)},
                                             optim.adam().init({"w": jnp.ones(2)})),
     "schedule-free"),
    (lambda: optim.radam(threshold=3.0), "threshold"),
])
def test_bad_arguments_raise_optimizer_errors(make, match):
    with pytest.raises(optim.OptimizerError, match=match):
        make()
