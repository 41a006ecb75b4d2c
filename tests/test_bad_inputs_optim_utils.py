"""Wrong inputs to the array- and pytree-taking helpers of `jnet.optim` and `jnet.training`
(`global_norm`, `newton_schulz`, `eval_params`, `weights_only`, `evaluate`, the train step,
`accuracy`, ...) that used to leak a raw TypeError / AttributeError / ValueError or return a
silently wrong result: each is now a `jnet.Error` naming what was expected, what was given
and the fix. The checks read types, shapes and dtypes only, so under `jax.jit` they run at
trace time and never again; the good values next to them keep working."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
from jnet import layers as L
from jnet import optim
from jnet.errors import ArgumentTypeError, DataError
from jnet.training import accuracy

OptimizerError = optim.OptimizerError
P = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
M = jnp.arange(6.0).reshape(2, 3)
MODEL = L.Dense(2)
_, MP, MS = MODEL.init(jax.random.key(0), (3,))
X, Y = np.ones((4, 3), np.float32), np.ones((4, 2), np.float32)


def _mse(outputs, targets):
    return jnp.mean((outputs - targets) ** 2, axis=-1)


def _state(opt):
    return opt.init(P)


def _step(params):
    return jnet.make_train_step(MODEL, optim.sgd(0.1), _mse)(
        params, MS, optim.sgd(0.1).init(MP), (X, Y), jax.random.key(0))


# (id, call, error class, where, expected, given, fix): `expected`, `given` and `fix` are
# regular expressions the message must contain.
CASES = [
    ("global_norm_str", lambda: optim.global_norm("x"), OptimizerError,
     "jnet.optim.global_norm", "tree must be a pytree of arrays", "tree is str 'x'",
     "Pass a pytree of arrays"),
    ("global_norm_dict_of_str", lambda: optim.global_norm({"w": "a"}), OptimizerError,
     "jnet.optim.global_norm", "pytree of arrays", r"tree\['w'\] is str 'a'",
     "such as the gradients"),
    ("newton_schulz_str", lambda: optim.newton_schulz("x"), OptimizerError,
     "jnet.optim.newton_schulz", "g must be a floating-point array of rank 2", "got str 'x'",
     "jnet.optim.muon"),
    ("newton_schulz_none", lambda: optim.newton_schulz(None), OptimizerError,
     "jnet.optim.newton_schulz", "rank 2", "got NoneType None", "2-D float matrix"),
    ("newton_schulz_vector", lambda: optim.newton_schulz(jnp.ones(3)), OptimizerError,
     "jnet.optim.newton_schulz", "rank 2", r"shape \(3,\) and dtype float32",
     "2-D float matrix"),
    ("newton_schulz_int_matrix", lambda: optim.newton_schulz(jnp.ones((2, 2), jnp.int32)),
     OptimizerError, "jnet.optim.newton_schulz", "floating-point", "dtype int32",
     "2-D float matrix"),
    ("newton_schulz_steps", lambda: optim.newton_schulz(M, steps=0), OptimizerError,
     "jnet.optim.newton_schulz", r"steps must be an int in \[1, 100\)", "got 0",
     "5 is usual"),
    ("newton_schulz_coefficients", lambda: optim.newton_schulz(M, coefficients=(1.0, 2.0)),
     OptimizerError, "jnet.optim.newton_schulz", "three numbers", r"\(1.0, 2.0\)",
     "The default is"),
    ("eval_params_str", lambda: optim.eval_params("x", {}), OptimizerError,
     "jnet.optim.eval_params", "params must be a pytree of arrays", "params is str 'x'",
     "Pass the params the optimizer holds"),
    ("eval_params_dict_of_str", lambda: optim.eval_params({"w": "a"}, _state(optim.adam())),
     OptimizerError, "jnet.optim.eval_params", "pytree of arrays", r"params\['w'\] is str",
     "result.params"),
    ("eval_params_other_structure", lambda: optim.eval_params(
        {"w": jnp.ones((2, 3))}, _state(optim.ema(optim.sgd(0.1)))), OptimizerError,
     "jnet.optim.eval_params", "params must have the structure of `the ema average`",
     r"params:  PyTreeDef\(\{'w'", "opt_state of the same run"),
    ("eval_params_other_shape", lambda: optim.eval_params(
        {"w": jnp.ones((3, 2)), "b": jnp.zeros(3)}, _state(optim.schedule_free_sgd())),
     OptimizerError, "jnet.optim.eval_params", r"z\['w'\] has shape \(2, 3\)",
     r"params\['w'\] has shape \(3, 2\)", "opt_state of the same run"),
    ("schedule_free_eval_params_str", lambda: optim.schedule_free_eval_params(
        "x", _state(optim.schedule_free_adamw())), OptimizerError,
     "jnet.optim.schedule_free_eval_params", "pytree of arrays", "params is str 'x'",
     "result.params"),
    ("weights_only_dict_of_str", lambda: optim.weights_only({"w": "a"}), OptimizerError,
     "jnet.optim.weights_only", "pytree of arrays", r"params\['w'\] is str 'a'",
     "mask=jnet.optim.weights_only"),
    ("muon_arrays_str", lambda: optim.muon_arrays(("w",), "x"), OptimizerError,
     "jnet.optim.muon_arrays", "pytree of arrays", "param is str 'x'", "muon_mask="),
    ("init_dict_of_str", lambda: optim.adam().init({"w": "a"}), OptimizerError,
     "jnet.optim.adam(...).init", "pytree of floating-point arrays",
     r"params\['w'\] is str 'a'", "model's init"),
    ("update_grads_of_str", lambda: optim.adam().update(
        {"w": "a", "b": "c"}, _state(optim.adam()), P), OptimizerError,
     "jnet.optim.adam(...).update", "grads must be a pytree of floating-point arrays",
     r"grads\['b'\] is str 'c'", r"jax.grad\(loss\)"),
    ("update_params_of_str", lambda: optim.sgd().update(P, _state(optim.sgd()), "x"),
     OptimizerError, "jnet.optim.sgd(...).update", "params must be a pytree",
     "params is str 'x'", "model's init"),
    ("partition_label_function_returns_none", lambda: optim.partition(
        {"a": optim.sgd(0.1)}, lambda path, p: None).init(P), OptimizerError,
     "jnet.optim.partition(...).init", "labels must have the structure of the params",
     r"labels: PyTreeDef\(\{'b': None", "one label string per array"),
    ("mask_function_returns_dict", lambda: optim.masked(
        optim.sgd(0.1), lambda path, p: {"on": True}).init(P), OptimizerError,
     "jnet.optim.masked(...).init", "mask must have the structure of the params",
     r"mask: PyTreeDef\(\{'b': \{'on'", "one bool per array"),
    ("evaluate_params_str", lambda: jnet.evaluate(MODEL, "x", MS, X, Y, loss=_mse),
     ArgumentTypeError, "jnet.evaluate", "params must be a pytree of arrays",
     "params is str 'x'", r"model.init\(key, in_shape\)"),
    ("predict_state_dict_of_str", lambda: jnet.predict(MODEL, MP, {"w": "a"}, X),
     ArgumentTypeError, "jnet.predict", "state must be a pytree of arrays",
     r"state\['w'\] is str 'a'", "result.state of jnet.fit"),
    ("train_step_params_dict_of_str", lambda: _step({"w": "a", "b": "c"}),
     ArgumentTypeError, "jnet.make_train_step", "params must be a pytree of floating-point",
     r"params\['b'\] is str 'c'", "the model's init returned"),
    ("train_step_int_params", lambda: _step(jax.tree.map(lambda p: p.astype(jnp.int32), MP)),
     ArgumentTypeError, "jnet.make_train_step", "floating-point arrays",
     r"params\['b'\] is an array of dtype int32", "the model's init returned"),
    ("accuracy_str", lambda: accuracy("x", jnp.zeros(4, jnp.int32)), ArgumentTypeError,
     "jnet.training.accuracy", "outputs must be an array of rank >= 2", "got str 'x'",
     r"raw outputs \(batch, classes\)"),
    ("accuracy_no_batch_axis", lambda: accuracy(jnp.ones(3), jnp.zeros(4, jnp.int32)),
     ArgumentTypeError, "jnet.training.accuracy", "rank >= 2", r"shape \(3,\)",
     r"integer labels \(batch,\)"),
    ("accuracy_targets_list", lambda: accuracy(jnp.ones((4, 2)), [0, 1]), ArgumentTypeError,
     "jnet.training.accuracy", "targets must be an array", r"got list \[0, 1\]",
     r"one-hot targets \(batch, classes\)"),
    ("accuracy_targets_of_other_batch", lambda: accuracy(jnp.ones((4, 2)), jnp.zeros(3)),
     DataError, "jnet.training.accuracy", r"labels \(4,\)", r"targets of shape \(3,\)",
     "of one batch"),
]


@pytest.mark.parametrize(("call", "cls", "where", "expected", "given", "fix"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_wrong_input_names_expected_given_and_fix(call, cls, where, expected, given, fix):
    with pytest.raises(cls) as info:
        call()
    err = info.value
    assert isinstance(err, jnet.Error)
    assert err.where == where and str(err).startswith(f"{where}: ")
    for part in (expected, given, fix):
        assert re.search(part, err.message), (part, err.message)


def test_an_opt_state_loaded_without_like_is_refused_not_ignored(tmp_path):
    # Without like= an OptState comes back as a dict: eval_params used to return the raw
    # params for it, silently dropping the ema average the run should be evaluated with.
    opt = optim.ema(optim.sgd(0.5), decay=0.5)
    state = opt.init(P)
    params, state = opt.update(jax.tree.map(jnp.ones_like, P), state, P)
    path = tmp_path / "run.safetensors"
    jnet.checkpoint.save(path, {"params": params, "opt_state": state})
    loaded = jnet.checkpoint.load(path)
    with pytest.raises(OptimizerError, match=r"dict of the fields of an OptState.*like=") as info:
        optim.eval_params(loaded["params"], loaded["opt_state"])
    assert info.value.where == "jnet.optim.eval_params"
    again = jnet.checkpoint.load(path, like={"params": P, "opt_state": opt.init(P)})
    # θ̄_1 = δ θ_0 + (1-δ) θ_1 with θ_1 = θ_0 - 0.5·1
    average = {k: 0.5 * np.asarray(v) + 0.5 * (np.asarray(v) - 0.5) for k, v in P.items()}
    got = optim.eval_params(again["params"], again["opt_state"])
    for k in P:
        np.testing.assert_allclose(got[k], average[k], rtol=1e-6)


def test_the_state_of_an_optimizer_of_ones_own_is_evaluated_as_is():
    custom = {"velocity": jax.tree.map(jnp.zeros_like, P)}
    assert optim.eval_params(P, custom) is P
    assert optim.eval_params(P, None) is P


def test_global_norm_of_good_trees_matches_numpy():
    tree = {"a": np.arange(6.0).reshape(2, 3), "b": [np.float32(2.0), np.array([1, 2], np.int32)]}
    want = np.sqrt(np.sum(np.arange(6.0) ** 2) + 4.0 + 5.0)
    np.testing.assert_allclose(optim.global_norm(tree), want, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(optim.global_norm)(tree), want, rtol=1e-6)
    assert float(optim.global_norm({})) == 0.0  # an empty tree (a group with no arrays)


def test_newton_schulz_takes_coefficients_as_any_sequence_of_three():
    g = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)), jnp.float32)
    want = optim.newton_schulz(g, (3.4445, -4.7750, 2.0315))
    for coefficients in ([3.4445, -4.7750, 2.0315], np.array([3.4445, -4.7750, 2.0315])):
        np.testing.assert_array_equal(optim.newton_schulz(g, coefficients), want)
    # orthogonalized: the singular values end near 1 (the quintic's [0.7, 1.2] band)
    singular = np.linalg.svd(np.asarray(want), compute_uv=False)
    assert np.all((singular > 0.6) & (singular < 1.3)), singular


def test_accuracy_of_good_batches_matches_numpy():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]], np.float32)
    labels = np.array([0, 0, 0])
    want = (logits.argmax(-1) == labels).astype(np.float32)
    np.testing.assert_array_equal(accuracy(jnp.asarray(logits), jnp.asarray(labels)), want)
    np.testing.assert_array_equal(accuracy(jnp.asarray(logits), jnp.eye(2)[labels]), want)
    binary = jnp.asarray([[0.5], [-1.0]])
    np.testing.assert_array_equal(accuracy(binary, jnp.asarray([1, 1])), [1.0, 0.0])


def test_the_checks_run_at_trace_time_only(monkeypatch):
    # Every leaf check goes through jnet.errors._given: count its calls around a jitted update.
    calls = []
    given = jnet.errors._given
    monkeypatch.setattr(jnet.errors, "_given", lambda *a: calls.append(1) or given(*a))
    opt = optim.chain(optim.clip_by_global_norm(1.0), optim.ema(optim.adam(1e-2)))
    update = jax.jit(opt.update)
    state = opt.init(P)
    grads = jax.tree.map(jnp.ones_like, P)
    params, state = update(grads, state, P)
    traced = len(calls)
    assert traced > 0  # the checks ran on the tracers...
    for _ in range(3):
        params, state = update(grads, state, params)
    assert len(calls) == traced  # ...and never again: no cost per step
    jax.jit(optim.eval_params)(params, state)  # the checks also pass on tracers
