#!/usr/bin/env python
"""Does jnet cost anything? jnet's training steps against hand-written JAX floors.

    .venv/bin/python scripts/bench.py                 # full run (a few minutes), table + JSON
    .venv/bin/python scripts/bench.py --quick         # a few steps per workload (CI smoke test)
    .venv/bin/python scripts/bench.py --only cnn,lstm --rounds 5 --json out.json

Every workload has two implementations fed the same initial weights (made by jnet, converted to
the floor's plain lists) and the same batches and keys:

- ``jnet``: the public API (`jnet.layers`, `jnet.optim`, `jnet.make_train_step`), jitted as
  `jnet.fit` does, with params, state and optimizer state donated;
- ``floor``: the same model written directly with `jax.numpy` / `lax` in this file, as a JAX
  expert would (no jnet import): `lax.reduce_window` max-pool, hand-written optimizer rules.

Per implementation and round: compile time of the first step (trace + lower + XLA compile, from
JAX's monitoring events), step time with a sync after each step (median and minimum), steps/s
of a back-to-back loop, ms/step inside one compiled `lax.scan` over many steps, the number of
compilations of the step function after all steps (1 = no recompiles) and the losses of the
first steps, which must agree between implementations (so the same work is timed).
Implementations alternate in rounds (order flipped each round) so machine noise hits both;
the table shows medians over rounds and the ratio jnet / floor.

The optimizer workloads time `update` alone over 10 arrays of 1M float32 parameters and report
the achieved memory bandwidth (bytes read + written per step / time) against the bandwidth of
an in-place elementwise pass (read 1 array, write 1) over the same arrays: the physical limit.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from anywhere: import the checkout's jnet
    sys.path.insert(0, ROOT)

Step = Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]]

# ----------------------------------------------------------------------------------------
# Data: fixed batches, identical for every implementation.


def digits_batches(n_batches: int, batch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = (x[order] / 16.0).astype(np.float32), y[order].astype(np.int32)
    return [(x[i * batch:(i + 1) * batch], y[i * batch:(i + 1) * batch])
            for i in range(n_batches)]


def random_batches(n_batches: int, shape: tuple[int, ...], classes: int = 10
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [(rng.standard_normal(shape).astype(np.float32),
             rng.integers(0, classes, shape[0]).astype(np.int32)) for _ in range(n_batches)]


# ----------------------------------------------------------------------------------------
# Floors: the same models and rules in plain JAX. Params are lists of dicts of arrays.


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def dense(p, x):
    return x @ p["w"] + p["b"]


def conv(p, x):
    y = lax.conv_general_dilated(x, p["w"], (1, 1), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["b"]


def max_pool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def batch_norm(p, s, x, momentum=0.9, eps=1e-5):
    """Training-mode batch norm; running var stores the unbiased variance (as jnet, PyTorch)."""
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
    n = x.size // x.shape[-1]
    s = lax.stop_gradient({"mean": momentum * s["mean"] + (1 - momentum) * mean,
                           "var": momentum * s["var"] + (1 - momentum) * var * n / (n - 1)})
    return (x - mean) * lax.rsqrt(var + eps) * p["scale"] + p["bias"], s


def floor_mlp(params, state, x, key, dtype=jnp.float32):
    h = x.astype(dtype)
    for p in params[:-1]:
        h = jax.nn.relu(dense(_cast(p, dtype), h))
    return dense(_cast(params[-1], dtype), h).astype(jnp.float32), state


def floor_cnn(params, state, x, key, dtype=jnp.float32):
    c1, c2, d1, d2 = (_cast(p, dtype) for p in params)
    h = max_pool(jax.nn.relu(conv(c1, x.astype(dtype))))
    h = max_pool(jax.nn.relu(conv(c2, h)))
    h = jax.nn.relu(dense(d1, h.reshape(h.shape[0], -1)))
    return dense(d2, h).astype(jnp.float32), state


def cnn_bn_dropout(dropout_key_index: int, n_keys: int):
    """CNN + BatchNorm + Dropout(0.5). The dropout key is the one jnet's `serial` hands its
    Dropout child (split of the step key, by position), so both draw the same mask."""

    def floor(params, state, x, key):
        c1, b1, c2, b2, d1, d2 = params
        h, s1 = batch_norm(b1, state[0], conv(c1, x))
        h = max_pool(jax.nn.relu(h))
        h, s2 = batch_norm(b2, state[1], conv(c2, h))
        h = max_pool(jax.nn.relu(h))
        h = jax.nn.relu(dense(d1, h.reshape(h.shape[0], -1)))
        keep = jax.random.bernoulli(jax.random.split(key, n_keys)[dropout_key_index], 0.5,
                                    h.shape)
        h = jnp.where(keep, h / 0.5, 0.0)
        return dense(d2, h), [s1, s2]

    return floor


def lstm_cell(p, carry, xp):
    h, c = carry
    i, f, g, o = jnp.split(xp + h @ p["w_hh"], 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def gru_cell(p, h, xp):
    r_x, z_x, n_x = jnp.split(xp, 3, axis=-1)
    r_h, z_h, n_h = jnp.split(h @ p["w_hh"] + p["b_hh"], 3, axis=-1)
    r, z = jax.nn.sigmoid(r_x + r_h), jax.nn.sigmoid(z_x + z_h)
    n = jnp.tanh(n_x + r * n_h)
    return (1.0 - z) * n + z * h


def recurrent(cell: str):
    """Recurrent layer + Dense head; the input projection of all steps is one matmul."""

    def floor(params, state, x, key):
        rnn, head = params
        bias = rnn["b"] if cell == "lstm" else rnn["b_ih"]
        xp = jnp.swapaxes(x, 0, 1) @ rnn["w_ih"] + bias  # (T, N, gates*H)
        h0 = jnp.zeros((x.shape[0], rnn["w_hh"].shape[0]), x.dtype)
        if cell == "lstm":
            (h, _), _ = lax.scan(lambda c, xt: (lstm_cell(rnn, c, xt), None), (h0, h0), xp)
        else:
            h, _ = lax.scan(lambda c, xt: (gru_cell(rnn, c, xt), None), h0, xp)
        return dense(head, h), state

    return floor


def _cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype), tree)


# Optimizer rules, written from their equations with jnet's hyperparameters (see OPTIMIZERS).
# Each is (init(params) -> state, update(grads, state, params) -> (params, state)).


def _tmap(f, *trees):
    return jax.tree.map(f, *trees)


def floor_sgd(lr):
    return (lambda params: None,
            lambda g, s, p: (_tmap(lambda p, g: p - lr * g, p, g), None))


def floor_momentum(lr, gamma, nesterov=False):
    def update(g, v, p):
        v = _tmap(lambda v, g: gamma * v + lr * g, v, g)
        if nesterov:  # look-ahead form: φ_t = φ_{t-1} - α g_t - γ V_t
            return _tmap(lambda p, g, v: p - lr * g - gamma * v, p, g, v), v
        return _tmap(lambda p, v: p - v, p, v), v

    return (lambda params: _tmap(jnp.zeros_like, params), update)


def floor_adagrad(lr, eps, initial):
    def update(g, s, p):
        s = _tmap(lambda s, g: s + g * g, s, g)
        return _tmap(lambda p, g, s: p - lr * g / (jnp.sqrt(s) + eps), p, g, s), s

    return (lambda params: _tmap(lambda a: jnp.full_like(a, initial), params), update)


def floor_adadelta(rho, eps):
    def update(g, s, p):
        eg, ed = s
        eg = _tmap(lambda e, g: rho * e + (1 - rho) * g * g, eg, g)
        d = _tmap(lambda e2, e1, g: -jnp.sqrt(e2 + eps) / jnp.sqrt(e1 + eps) * g, ed, eg, g)
        ed = _tmap(lambda e, d: rho * e + (1 - rho) * d * d, ed, d)
        return _tmap(jnp.add, p, d), (eg, ed)

    return (lambda params: (_tmap(jnp.zeros_like, params), _tmap(jnp.zeros_like, params)),
            update)


def floor_rmsprop(lr, rho, eps):
    def update(g, v, p):
        v = _tmap(lambda v, g: rho * v + (1 - rho) * g * g, v, g)
        return _tmap(lambda p, g, v: p - lr * g / (jnp.sqrt(v) + eps), p, g, v), v

    return (lambda params: _tmap(jnp.zeros_like, params), update)


def floor_adam(lr, b1=0.9, b2=0.999, eps=1e-8):
    def update(g, s, p):
        m, v, t = s
        t = t + 1
        m = _tmap(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = _tmap(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        p = _tmap(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), p, m, v)
        return p, (m, v, t)

    return (lambda params: (_tmap(jnp.zeros_like, params), _tmap(jnp.zeros_like, params),
                            jnp.zeros((), jnp.int32)), update)


def floor_adamw(lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    init, adam_update = floor_adam(lr, b1, b2, eps)

    def update(g, s, p):  # decoupled decay: the Adam step plus lr * wd * p_{t-1}
        new_p, s = adam_update(g, s, p)
        return _tmap(lambda q, p: q - lr * wd * p, new_p, p), s

    return init, update


def floor_nadam(lr, b1=0.9, b2=0.999, eps=1e-8, psi=4e-3):
    def update(g, s, p):
        m, v, prod, t = s
        t = t + 1
        mu_t = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod = prod * mu_t
        m = _tmap(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = _tmap(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        c2 = 1 - b2 ** t
        p = _tmap(lambda p, g, m, v: p - lr * ((1 - mu_t) / (1 - prod) * g
                                               + mu_next / (1 - prod * mu_next) * m)
                  / (jnp.sqrt(v / c2) + eps), p, g, m, v)
        return p, (m, v, prod, t)

    return (lambda params: (_tmap(jnp.zeros_like, params), _tmap(jnp.zeros_like, params),
                            jnp.ones(()), jnp.zeros(())), update)


def floor_adamax(lr, b1=0.9, b2=0.999, eps=1e-8):
    def update(g, s, p):
        m, u, t = s
        t = t + 1
        m = _tmap(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        u = _tmap(lambda u, g: jnp.maximum(b2 * u, jnp.abs(g)), u, g)
        return _tmap(lambda p, m, u: p - lr * m / ((1 - b1 ** t) * (u + eps)), p, m, u), (m, u, t)

    return (lambda params: (_tmap(jnp.zeros_like, params), _tmap(jnp.zeros_like, params),
                            jnp.zeros((), jnp.int32)), update)


def floor_lion(lr, b1=0.9, b2=0.99):
    def update(g, m, p):
        p = _tmap(lambda p, m, g: p - lr * jnp.sign(b1 * m + (1 - b1) * g), p, m, g)
        return p, _tmap(lambda m, g: b2 * m + (1 - b2) * g, m, g)

    return (lambda params: _tmap(jnp.zeros_like, params), update)


# name -> (jnet constructor call, floor rule, optimizer state arrays per parameter array)
OPTIMIZERS: dict[str, tuple[Callable, Callable, int]] = {
    "sgd": (lambda o: o.sgd(1e-2), lambda: floor_sgd(1e-2), 0),
    "momentum": (lambda o: o.momentum(1e-2, 0.9), lambda: floor_momentum(1e-2, 0.9), 1),
    "nesterov": (lambda o: o.nesterov(1e-2, 0.9), lambda: floor_momentum(1e-2, 0.9, True), 1),
    "adagrad": (lambda o: o.adagrad(1e-2), lambda: floor_adagrad(1e-2, 1e-10, 0.0), 1),
    "adadelta": (lambda o: o.adadelta(), lambda: floor_adadelta(0.95, 1e-6), 2),
    "rmsprop": (lambda o: o.rmsprop(1e-3, 0.9), lambda: floor_rmsprop(1e-3, 0.9, 1e-8), 1),
    "adam": (lambda o: o.adam(1e-3), lambda: floor_adam(1e-3), 2),
    "adamw": (lambda o: o.adamw(1e-3, weight_decay=1e-2), lambda: floor_adamw(1e-3, 1e-2), 2),
    "nadam": (lambda o: o.nadam(2e-3), lambda: floor_nadam(2e-3), 2),
    "adamax": (lambda o: o.adamax(2e-3), lambda: floor_adamax(2e-3), 2),
    "lion": (lambda o: o.lion(1e-4), lambda: floor_lion(1e-4), 1),
}


def floor_train_step(forward: Callable, rule: tuple[Callable, Callable]) -> Step:
    """value_and_grad of the mean cross-entropy, then the optimizer rule."""
    _, update = rule

    def loss_fn(params, state, batch, key):
        logits, state = forward(params, state, batch[0], key)
        return cross_entropy(logits, batch[1]), state

    def step(carry, batch, key):
        params, state, opt_state = carry
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, batch,
                                                                        key)
        params, opt_state = update(grads, opt_state, params)
        return (params, state, opt_state), loss

    return step


# ----------------------------------------------------------------------------------------
# Workloads: each builds both implementations from one jnet init.


@dataclass
class Impl:
    make_step: Callable[[], Step]  # a fresh Python function each call: forces a fresh trace
    init_carry: Callable[[], Any]  # fresh device copies (the step donates its carry)


@dataclass
class Workload:
    name: str
    kind: str  # "train" or "optim"
    impls: dict[str, Impl]
    batches: list  # device batches, used in turn
    keys: list
    rtol: float  # agreement of the first losses / parameters
    info: dict = field(default_factory=dict)


def _fresh(tree):
    return lambda: jax.tree.map(jnp.copy, tree)


def _keys(n: int) -> list[jax.Array]:
    return [jax.random.fold_in(jax.random.key(42), i) for i in range(n)]


def _children_params(model, tree) -> list:
    """The non-empty params / state of a serial model's children, in order."""
    return [tree[name] for name, _ in model.children if tree[name]]


def _jnet_step(model, optimizer) -> Callable[[], Step]:
    import jnet

    def make():
        train_step = jnet.make_train_step(model, optimizer)

        def step(carry, batch, key):
            params, state, opt_state, metrics = train_step(*carry, batch, key)
            return (params, state, opt_state), metrics["loss"]

        return step

    return make


def train_workload(name: str, model, optimizer_name: str, forward: Callable, batches: list,
                   rtol: float = 2e-4, floor_state=None, mixed: bool = False) -> Workload:
    import jnet

    jnet_opt, floor_rule, _ = OPTIMIZERS[optimizer_name]
    optimizer = jnet_opt(jnet.optim)
    if mixed:
        model = jnet.precision.mixed(model)
    _, params, state = jax.jit(model.init)(jax.random.key(0))
    batches = [jax.device_put(b) for b in batches]
    rule = floor_rule()
    floor_params = _children_params(model, params)
    floor_state = _children_params(model, state)
    impls = {
        "jnet": Impl(_jnet_step(model, optimizer),
                     _fresh((params, state, optimizer.init(params)))),
        "floor": Impl(lambda: floor_train_step(forward, rule),
                      _fresh((floor_params, floor_state, rule[0](floor_params)))),
    }
    return Workload(name, "train", impls, batches, _keys(len(batches)), rtol,
                    {"optimizer": optimizer_name,
                     "params": sum(a.size for a in jax.tree.leaves(params)),
                     "batch": tuple(batches[0][0].shape),
                     "compute_dtype": "bfloat16" if mixed else "float32"})


def optim_workload(rule_name: str, n_arrays: int, size: int) -> Workload:
    import jnet

    jnet_opt, floor_rule, n_state = OPTIMIZERS[rule_name]
    optimizer, rule = jnet_opt(jnet.optim), floor_rule()
    side = math.isqrt(size)
    keys = jax.random.split(jax.random.key(3), 2 * n_arrays)
    params = [jax.random.normal(k, (side, side)) for k in keys[:n_arrays]]
    grads = [0.01 * jax.random.normal(k, (side, side)) for k in keys[n_arrays:]]

    def jnet_make():
        def step(carry, g, key):
            p, s = optimizer.update(g, carry[1], carry[0])
            return (p, s), p[0][0, :4]

        return step

    def floor_make():
        def step(carry, g, key):
            p, s = rule[1](g, carry[1], carry[0])
            return (p, s), p[0][0, :4]

        return step

    impls = {"jnet": Impl(jnet_make, _fresh((params, optimizer.init(params)))),
             "floor": Impl(floor_make, _fresh((params, rule[0](params))))}
    bytes_per_step = 4 * n_arrays * side * side * (3 + 2 * n_state)  # read p, g, s; write p, s
    return Workload(f"update {rule_name}", "optim", impls, [grads], _keys(1), 1e-5,
                    {"arrays": n_arrays, "array_shape": (side, side),
                     "bytes_per_step": bytes_per_step, "state_arrays": n_state})


def workload_builders(only: set[str] | None, quick: bool) -> list[Callable[[], Workload]]:
    """The selected workloads, each built when called (one in memory at a time).

    `quick` shrinks batches (CNN 16, sequences 8 x 16 steps) and the update arrays (10 x 10k)
    so a smoke test compiles and runs everything in little time; timings then mean nothing.
    """
    from jnet import layers as L

    n = 4 if quick else 8
    img_shape, seq_shape = ((16, 28, 28, 1), (8, 16, 32)) if quick else (
        (128, 28, 28, 1), (64, 64, 32))
    img = lambda: random_batches(n, img_shape)  # noqa: E731
    seq = lambda: random_batches(n, seq_shape)  # noqa: E731
    steps = seq_shape[1]
    mlp = L.serial(L.Input((64,)), L.Dense(256), L.ReLU(), L.Dense(256), L.ReLU(), L.Dense(10),
                   L.ClassificationOutput())

    def cnn(bn: bool):
        norm = [L.BatchNorm()] if bn else []
        return L.serial(
            L.Input((28, 28, 1)),
            L.Conv2D(32, (3, 3), padding="SAME"), *norm, L.ReLU(), L.MaxPool2D((2, 2)),
            L.Conv2D(64, (3, 3), padding="SAME"), *norm, L.ReLU(), L.MaxPool2D((2, 2)),
            L.Flatten(), L.Dense(128), L.ReLU(), *([L.Dropout(0.5)] if bn else []),
            L.Dense(10), L.ClassificationOutput())

    cnn_bn = cnn(True)
    dropout_index = [layer.kind for _, layer in cnn_bn.children].index("Dropout")
    builders = {
        "mlp": lambda: train_workload("mlp", mlp, "adam", floor_mlp, digits_batches(n, 128)),
        "cnn": lambda: train_workload("cnn", cnn(False), "momentum", floor_cnn, img()),
        "cnn_bn_dropout": lambda: train_workload(
            "cnn_bn_dropout", cnn_bn, "adam",
            cnn_bn_dropout(dropout_index, len(cnn_bn.children)), img()),
        "lstm": lambda: train_workload(
            "lstm", L.serial(L.Input((steps, 32)), L.LSTM(128), L.Dense(10),
                             L.ClassificationOutput()), "rmsprop", recurrent("lstm"), seq()),
        "gru": lambda: train_workload(
            "gru", L.serial(L.Input((steps, 32)), L.GRU(128), L.Dense(10),
                            L.ClassificationOutput()), "rmsprop", recurrent("gru"), seq()),
        "mlp_bf16": lambda: train_workload(
            "mlp_bf16", mlp, "adam", lambda p, s, x, k: floor_mlp(p, s, x, k, jnp.bfloat16),
            digits_batches(n, 128), rtol=2e-2, mixed=True),
        "cnn_bf16": lambda: train_workload(
            "cnn_bf16", cnn(False), "momentum",
            lambda p, s, x, k: floor_cnn(p, s, x, k, jnp.bfloat16), img(), rtol=2e-2,
            mixed=True),
    }
    size = 10_000 if quick else 1_000_000
    for rule in OPTIMIZERS:
        builders[f"update_{rule}"] = lambda rule=rule: optim_workload(rule, 10, size)
    unknown = (only or set()) - set(builders) - {"update"}
    if unknown:
        raise SystemExit(f"bench.py: unknown workloads {sorted(unknown)}; "
                         f"choose from {sorted(builders)} or 'update' (every rule).")
    return [build for name, build in builders.items()
            if only is None or name in only or ("update" in only and name.startswith("update_"))]


# ----------------------------------------------------------------------------------------
# Measurement.

COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


class CompileMeter:
    """Sums JAX's trace / lower / XLA-compile durations while active (`parts`: each phase)."""

    def __init__(self):
        self.parts, self.active = {}, False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        if self.active and event in COMPILE_EVENTS:
            phase = event.rsplit("/", 1)[1].removesuffix("_duration")
            self.parts[phase] = self.parts.get(phase, 0.0) + duration

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def __enter__(self):
        self.parts, self.active = {}, True
        return self

    def __exit__(self, *exc):
        self.active = False


@dataclass
class Config:
    rounds: int
    steps: int  # timed steps per round (synced loop and back-to-back loop each)
    scan_steps: int
    scan_rounds: int = 1  # rounds that also time the scan (CPU convs are slow inside loops)
    check_steps: int = 3


def _scan_fn(step: Step, shared_batch: bool):
    def multi(carry, batches, keys):
        def body(c, inputs):
            b, k = inputs
            return step(c, batches if shared_batch else b, k)

        return lax.scan(body, carry, (None if shared_batch else batches, keys))

    return jax.jit(multi, donate_argnums=0)


def measure_round(w: Workload, impl: Impl, cfg: Config, meter: CompileMeter,
                  scan: tuple | None) -> dict:
    """One round of one implementation: compile, synced steps, back-to-back loop, and the
    compiled scan when `scan` is given."""
    nb = len(w.batches)
    fn = jax.jit(impl.make_step(), donate_argnums=0)
    carry = impl.init_carry()
    jax.block_until_ready(carry)
    with meter:
        t0 = time.perf_counter()
        carry, aux = fn(carry, w.batches[0], w.keys[0])
        jax.block_until_ready((carry, aux))
        first_call = time.perf_counter() - t0
    compile_s, compile_parts = meter.total, dict(meter.parts)
    checks, times = [np.asarray(aux).tolist()], []
    for i in range(1, cfg.steps + 1):
        t0 = time.perf_counter()
        carry, aux = fn(carry, w.batches[i % nb], w.keys[i % nb])
        jax.block_until_ready((carry, aux))
        times.append(time.perf_counter() - t0)
        if i < cfg.check_steps:
            checks.append(np.asarray(aux).tolist())
    t0 = time.perf_counter()
    for i in range(cfg.steps):
        carry, aux = fn(carry, w.batches[i % nb], w.keys[i % nb])
    jax.block_until_ready((carry, aux))
    loop = (time.perf_counter() - t0) / cfg.steps
    compiles = fn._cache_size()
    del carry
    result = {"compile_s": compile_s, "compile_parts_s": compile_parts, "first_call_s": first_call,
            "step_median_s": statistics.median(times), "step_min_s": min(times),
            "loop_steps_per_s": 1.0 / loop, "compiles": compiles,
            "checks": checks}
    if scan is not None:
        scan_fn, scan_batches, scan_keys = scan
        carry = impl.init_carry()
        jax.block_until_ready(carry)
        t0 = time.perf_counter()
        jax.block_until_ready(scan_fn(carry, scan_batches, scan_keys))
        result["scan_step_s"] = (time.perf_counter() - t0) / cfg.scan_steps
    return result


def copy_bandwidth(w: Workload, cfg: Config) -> float:
    """Bytes/s of `x + 1` in place over the workload's parameter arrays (read 1, write 1)."""
    arrays = [jnp.copy(a) for a in w.batches[0]]
    fn = jax.jit(lambda xs: [x + 1.0 for x in xs], donate_argnums=0)
    arrays = fn(arrays)
    jax.block_until_ready(arrays)
    times = []
    for _ in range(max(cfg.steps, 3)):
        t0 = time.perf_counter()
        arrays = jax.block_until_ready(fn(arrays))
        times.append(time.perf_counter() - t0)
    return 2 * sum(a.nbytes for a in arrays) / statistics.median(times)


def run_workload(w: Workload, cfg: Config, meter: CompileMeter, log) -> dict:
    names = list(w.impls)
    scans = {}
    for name, impl in w.impls.items():
        shared = w.kind == "optim"
        stacked = w.batches[0] if shared else jax.tree.map(
            lambda *xs: jnp.stack(xs),
            *[w.batches[i % len(w.batches)] for i in range(cfg.scan_steps)])
        keys = jnp.stack([w.keys[i % len(w.keys)] for i in range(cfg.scan_steps)])
        scan_fn = _scan_fn(impl.make_step(), shared)
        with meter:  # compile the scan once, outside the rounds
            jax.block_until_ready(scan_fn(impl.init_carry(), stacked, keys))
        scans[name] = (scan_fn, stacked, keys, meter.total)
    rounds: dict[str, list[dict]] = {name: [] for name in names}
    copy_bw = []
    for r in range(cfg.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            scan = scans[name][:3] if r < cfg.scan_rounds else None
            rounds[name].append(measure_round(w, w.impls[name], cfg, meter, scan))
        if w.kind == "optim":
            copy_bw.append(copy_bandwidth(w, cfg))
        log(f"  {w.name}: round {r + 1}/{cfg.rounds} done")
    result = {"name": w.name, "kind": w.kind, "info": w.info, "impls": {}}
    for name in names:
        rs = rounds[name]
        agg = {key: statistics.median(x[key] for x in rs if key in x)
               for key in ("compile_s", "first_call_s", "step_median_s", "loop_steps_per_s",
                           "scan_step_s")}
        agg["step_min_s"] = min(x["step_min_s"] for x in rs)
        agg["compiles"] = max(x["compiles"] for x in rs)
        agg["scan_compile_s"] = scans[name][3]
        agg["checks"] = rs[0]["checks"]
        agg["rounds"] = rs
        result["impls"][name] = agg
    if "jnet" in result["impls"] and "floor" in result["impls"]:
        j, f = result["impls"]["jnet"], result["impls"]["floor"]
        result["ratio"] = {
            "compile": j["compile_s"] / f["compile_s"],
            "step": j["step_median_s"] / f["step_median_s"],
            "step_min": j["step_min_s"] / f["step_min_s"],
            "loop": f["loop_steps_per_s"] / j["loop_steps_per_s"],
            "scan": j["scan_step_s"] / f["scan_step_s"],
        }
        a, b = np.asarray(j["checks"], np.float64), np.asarray(f["checks"], np.float64)
        rel = float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-6)))
        result["agreement"] = {"max_rel_diff": rel, "rtol": w.rtol, "ok": rel <= w.rtol}
    if copy_bw:
        bw = statistics.median(copy_bw)
        result["copy_bandwidth_Bps"] = bw
        for agg in result["impls"].values():
            agg["bandwidth_Bps"] = w.info["bytes_per_step"] / agg["step_median_s"]
            agg["time_vs_copy_limit"] = bw / agg["bandwidth_Bps"]
    return result


# ----------------------------------------------------------------------------------------
# Report.


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    import jaxlib

    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "devices": [str(d) for d in jax.devices()], "backend": jax.default_backend(),
            "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "numpy": np.__version__}


def _ms(s: float) -> str:
    return f"{s * 1e3:.2f}"


def table(results: list[dict]) -> str:
    rows = ["| workload | compile s jnet / floor | step ms (median) jnet / floor | step ms (min) "
            "jnet / floor | loop steps/s jnet / floor | scan ms/step jnet / floor | compiles "
            "jnet / floor | first losses agree |",
            "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r["kind"] != "train" or "ratio" not in r:
            continue
        j, f, q = r["impls"]["jnet"], r["impls"]["floor"], r["ratio"]
        rows.append(
            f"| {r['name']} | {j['compile_s']:.2f} / {f['compile_s']:.2f} (**{q['compile']:.2f}**)"
            f" | {_ms(j['step_median_s'])} / {_ms(f['step_median_s'])} (**{q['step']:.2f}**)"
            f" | {_ms(j['step_min_s'])} / {_ms(f['step_min_s'])} ({q['step_min']:.2f})"
            f" | {j['loop_steps_per_s']:.1f} / {f['loop_steps_per_s']:.1f} ({q['loop']:.2f})"
            f" | {_ms(j['scan_step_s'])} / {_ms(f['scan_step_s'])} ({q['scan']:.2f})"
            f" | {j['compiles']} / {f['compiles']}"
            f" | {'yes' if r['agreement']['ok'] else 'NO'} "
            f"({r['agreement']['max_rel_diff']:.1e}) |")
    opt = [r for r in results if r["kind"] == "optim" and "ratio" in r]
    if opt:
        shape = "x".join(map(str, opt[0]["info"]["array_shape"]))
        rows += ["", f"| update ({opt[0]['info']['arrays']} x {shape} f32) | step ms jnet / floor "
                 "| compile s jnet / floor | GB/s jnet / floor / copy "
                 "| time / copy limit jnet / floor | compiles | agree |",
                 "|---|---|---|---|---|---|---|"]
        for r in opt:
            j, f, q = r["impls"]["jnet"], r["impls"]["floor"], r["ratio"]
            rows.append(
                f"| {r['name'].removeprefix('update ')} | {_ms(j['step_median_s'])} / "
                f"{_ms(f['step_median_s'])} (**{q['step']:.2f}**) | {j['compile_s']:.2f} / "
                f"{f['compile_s']:.2f} (**{q['compile']:.2f}**) | {j['bandwidth_Bps'] / 1e9:.1f}"
                f" / {f['bandwidth_Bps'] / 1e9:.1f} / {r['copy_bandwidth_Bps'] / 1e9:.1f} | "
                f"**{j['time_vs_copy_limit']:.2f}** / {f['time_vs_copy_limit']:.2f} | "
                f"{j['compiles']} / {f['compiles']} | "
                f"{'yes' if r['agreement']['ok'] else 'NO'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one round of a few steps per workload, small update arrays")
    parser.add_argument("--only", default=None,
                        help="comma-separated workloads, e.g. mlp,cnn,update (default: all)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--json", default="bench_results.json", help="output file")
    args = parser.parse_args(argv)
    cfg = Config(rounds=1, steps=2, scan_steps=2) if args.quick else Config(3, 10, 3)
    cfg.rounds = args.rounds or cfg.rounds
    cfg.steps = args.steps or cfg.steps

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    started = time.time()
    load_before = os.getloadavg()
    only = set(args.only.split(",")) if args.only else None
    meter = CompileMeter()
    results = []
    for build in workload_builders(only, args.quick):
        w = build()
        log(f"{w.name} ...")
        results.append(run_workload(w, cfg, meter, log))
        del w
    report = {
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT) if argv is None else
                             "scripts/bench.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": vars(cfg) | {"quick": args.quick},
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "wall_s": time.time() - started,
        "results": results,
    }
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    print(table(results))
    print(f"\n{report['date']}, {report['machine']['cpu']}, {report['machine']['cores']} cores, "
          f"jax {jax.__version__}, {report['wall_s']:.0f} s; JSON: {args.json}")
    bad = [r["name"] for r in results if not r.get("agreement", {}).get("ok", True)]
    if bad:
        print(f"DISAGREEMENT between jnet and floor on: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
