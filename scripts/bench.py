#!/usr/bin/env python
"""Does jnet cost anything? jnet's training steps against hand-written JAX floors and PyTorch.

    .venv/bin/python scripts/bench.py                 # full run, table + JSON
    .venv/bin/python scripts/bench.py --quick         # a few steps per workload (CI smoke test)
    .venv/bin/python scripts/bench.py --only cnn,lstm --rounds 5 --json out.json
    taskset -c 1 .venv/bin/python scripts/bench.py    # single-threaded jnet, floor and torch

Every workload has implementations fed the same initial weights (made by jnet, converted to
the floor's plain lists and to torch modules) and the same batches and keys:

- ``jnet``: the public API (`jnet.layers`, `jnet.optim`, `jnet.make_train_step`), jitted as
  `jnet.fit` does, with params, state and optimizer state donated;
- ``floor``: the same model written directly with `jax.numpy` / `lax` (`bench/floors.py`, no
  jnet import), as a JAX expert would: `lax.reduce_window` max-pool, hand-written rules;
- ``torch`` / ``torch.compile`` (when `import torch` works; `bench/torch_side.py`): PyTorch
  eager, and with the model under `torch.compile` (optimizer step eager), as many intra-op
  threads as this process may use CPUs (what XLA:CPU's pool uses).

Per implementation and round: compile time of the first step (trace + lower + XLA compile, from
JAX's monitoring events; torch.compile: its first call minus one step), step time with a sync
after each step (median and minimum), steps/s of a back-to-back loop, ms/step inside one
compiled `lax.scan` over many steps (how `jnet.fit` runs an epoch), the number of compilations
of the step function after all steps (1 = no recompiles) and the losses of the first steps,
which must agree between implementations (so the same work is timed; torch: the first loss).
Implementations alternate in rounds (order flipped each round) so machine noise hits all; the
table shows medians over rounds and the ratios jnet / floor and jnet / torch. Peak memory
(``--memory``, default in full runs): each implementation of each workload compiles and runs
its steps in a fresh process. The strided CNN also times `jnet.fit` itself, with its default
(scan) and ``scan=False``.

The optimizer workloads time `update` alone over 10 arrays of 1M float32 parameters and report
the achieved memory bandwidth (bytes read + written per step / time) against the bandwidth of
an in-place elementwise pass (read 1 array, write 1) over the same arrays: the physical limit.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
for _path in (ROOT, SCRIPTS):  # run from anywhere: the checkout's jnet and the bench package
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench import torch_side  # noqa: E402
from bench.floors import (  # noqa: E402
    OPTIMIZERS,
    Step,
    cnn_bn_dropout,
    floor_cnn,
    floor_cnn1d,
    floor_mlp,
    floor_strided_cnn,
    floor_train_step,
    recurrent,
    transformer,
)

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
# Workloads: each builds both implementations from one jnet init.


class MissingLayer(Exception):
    """A workload whose jnet layer is not on this branch yet: reported, not run."""


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
    torch: Callable[[bool], torch_side.Runner] | None = None  # compiled? -> a torch runner
    fit: Callable[[Config], dict] | None = None  # times `jnet.fit` itself (scan and not)


def _fresh(tree):
    return lambda: jax.tree.map(jnp.copy, tree)


def _keys(n: int) -> list[jax.Array]:
    return [jax.random.fold_in(jax.random.key(42), i) for i in range(n)]


def _leaf_params(model, tree) -> list:
    """The non-empty params / state of the model's leaf layers (depth first), in order: the
    floors' lists."""
    if not model.children:
        return [tree] if tree else []
    return [leaf for name, child in model.children for leaf in _leaf_params(child, tree[name])]


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
                   rtol: float = 2e-4, mixed: bool = False,
                   torch_spec: torch_side.TorchSpec | None = None, time_fit: bool = False
                   ) -> Workload:
    import jnet

    jnet_opt, floor_rule, _ = OPTIMIZERS[optimizer_name]
    optimizer = jnet_opt(jnet.optim)
    if mixed:
        model = jnet.precision.mixed(model)
    _, params, state = jax.jit(model.init)(jax.random.key(0))
    batches = [jax.device_put(b) for b in batches]
    rule = floor_rule()
    floor_params = _leaf_params(model, params)
    floor_state = _leaf_params(model, state)
    impls = {
        "jnet": Impl(_jnet_step(model, optimizer),
                     _fresh((params, state, optimizer.init(params)))),
        "floor": Impl(lambda: floor_train_step(forward, rule),
                      _fresh((floor_params, floor_state, rule[0](floor_params)))),
    }
    torch_runner = None
    if torch_spec is not None and torch_side.available():
        host = jax.tree.map(np.asarray, (floor_params, floor_state, batches))
        torch_runner = lambda compiled: torch_side.Runner(torch_spec, *host, compiled)  # noqa: E731
    return Workload(name, "train", impls, batches, _keys(len(batches)), rtol,
                    {"optimizer": optimizer_name,
                     "params": sum(a.size for a in jax.tree.leaves(params)),
                     "batch": tuple(batches[0][0].shape),
                     "compute_dtype": "bfloat16" if mixed else "float32"}, torch_runner,
                    (lambda cfg: fit_timing(model, optimizer, batches, cfg)) if time_fit else None)


def fit_timing(model, optimizer, batches: list, cfg: Config) -> dict:
    """ms per step of `jnet.fit` itself over the workload's batches as one data set (epochs of
    len(batches) steps), with its default ``scan`` (each epoch one `lax.scan`) and with
    ``scan=False`` (one jitted step per batch): the median over the epochs after the first
    (which compiles), from epoch-end callbacks. Shuffles, gathers and metrics included."""
    import jnet

    x = np.concatenate([np.asarray(b[0]) for b in batches])
    y = np.concatenate([np.asarray(b[1]) for b in batches])
    out = {}
    for label, scan in (("fit_scan", None), ("fit_no_scan", False)):
        ends = [time.perf_counter()]
        jnet.fit(model, optimizer, x, y, epochs=1 + max(2, cfg.rounds), key=jax.random.key(0),
                 batch_size=len(batches[0][0]), scan=scan, verbose=0, check_finite=False,
                 callbacks=[lambda epoch, logs, history, ends=ends: ends.append(
                     time.perf_counter())])
        epochs = np.diff(ends)
        out[f"{label}_first_epoch_s"] = float(epochs[0])
        out[f"{label}_step_s"] = float(np.median(epochs[1:])) / len(batches)
    return out


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


def _cnn(L, bn: bool):  # L: jnet.layers, imported when the workloads are built
    norm = [L.BatchNorm()] if bn else []
    return L.serial(
        L.Input((28, 28, 1)),
        L.Conv2D(32, (3, 3), padding="SAME"), *norm, L.ReLU(), L.MaxPool2D((2, 2)),
        L.Conv2D(64, (3, 3), padding="SAME"), *norm, L.ReLU(), L.MaxPool2D((2, 2)),
        L.Flatten(), L.Dense(128), L.ReLU(), *([L.Dropout(0.5)] if bn else []),
        L.Dense(10), L.ClassificationOutput())


def _strided_cnn(L):  # 28 -> 14 -> 7: SAME with a 4x4 kernel and stride 2 pads (1, 1)
    return L.serial(
        L.Input((28, 28, 1)), L.Conv2D(32, (4, 4), strides=2, padding="SAME"), L.ReLU(),
        L.Conv2D(64, (4, 4), strides=2, padding="SAME"), L.ReLU(), L.Flatten(),
        L.Dense(128), L.ReLU(), L.Dense(10), L.ClassificationOutput())


def _cnn1d(L, shape: tuple[int, int, int]):
    if not hasattr(L, "Conv1D"):
        raise MissingLayer("cnn1d needs jnet.layers.Conv1D (from the conv branch); "
                           "`git merge main` once it has landed")
    return L.serial(L.Input(shape[1:]), L.Conv1D(32, 5, padding="SAME"), L.ReLU(),
                    L.Conv1D(64, 5, padding="SAME"), L.ReLU(), L.Flatten(), L.Dense(10),
                    L.ClassificationOutput())


def _encoder(L, steps: int, vocab: int, width: int, heads: int):
    """A pre-LayerNorm Transformer encoder block on token ids, Flatten, Dense."""
    return L.serial(
        L.Input((steps,)), L.Embedding(vocab, width),
        L.residual(L.serial(L.LayerNorm(), L.MultiHeadAttention(heads))),
        L.residual(L.serial(L.LayerNorm(), L.Dense(4 * width), L.ReLU(), L.Dense(width))),
        L.Flatten(), L.Dense(10), L.ClassificationOutput())


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

    seq1d_shape = (8, 32, 16) if quick else (64, 128, 16)
    (n_tok, t_tok), vocab, width, heads = (8, 16) if quick else (32, 64), 1000, 128, 4
    encoder = _encoder(L, t_tok, vocab, width, heads)
    cnn = functools.partial(_cnn, L)

    def token_batches():
        rng = np.random.default_rng(2)
        return [(rng.integers(0, vocab, (n_tok, t_tok)).astype(np.int32),
                 rng.integers(0, 10, n_tok).astype(np.int32)) for _ in range(n)]

    cnn_bn = cnn(True)
    dropout_index = [layer.kind for _, layer in cnn_bn.children].index("Dropout")
    T = torch_side

    def dropout_masks(i: int):  # the mask the JAX implementations draw at step i, scaled
        key = jax.random.split(_keys(n)[i], len(cnn_bn.children))[dropout_index]
        keep = np.asarray(jax.random.bernoulli(key, 0.5, (img_shape[0], 128)), np.float32)
        return T._t(keep / 0.5)

    def rnn_model(layer):
        return L.serial(L.Input((steps, 32)), layer, L.Dense(10), L.ClassificationOutput())

    builders = {
        "mlp": lambda: train_workload("mlp", mlp, "adam", floor_mlp, digits_batches(n, 128),
                                      torch_spec=T.TorchSpec(T.mlp(), "adam")),
        "cnn": lambda: train_workload(
            "cnn", cnn(False), "momentum", floor_cnn, img(),
            torch_spec=T.TorchSpec(T.cnn(False, (7, 7, 64)), "momentum", image=True)),
        "cnn_bn_dropout": lambda: train_workload(
            "cnn_bn_dropout", cnn_bn, "adam",
            cnn_bn_dropout(dropout_index, len(cnn_bn.children)), img(),
            torch_spec=T.TorchSpec(T.cnn(True, (7, 7, 64)), "adam", image=True,
                                   extra=dropout_masks)),
        "lstm": lambda: train_workload(
            "lstm", rnn_model(L.LSTM(128)), "rmsprop", recurrent("lstm"), seq(),
            torch_spec=T.TorchSpec(T.rnn("lstm"), "rmsprop")),
        "gru": lambda: train_workload(
            "gru", rnn_model(L.GRU(128)), "rmsprop", recurrent("gru"), seq(),
            torch_spec=T.TorchSpec(T.rnn("gru"), "rmsprop")),
        "cnn_strided": lambda: train_workload(
            "cnn_strided", _strided_cnn(L), "momentum", floor_strided_cnn, img(), time_fit=True,
            torch_spec=T.TorchSpec(T.cnn(False, (7, 7, 64), stride=2), "momentum", image=True)),
        "transformer": lambda: train_workload(
            "transformer", encoder, "adam", transformer(heads), token_batches(),
            torch_spec=T.TorchSpec(T.transformer(heads), "adam", integer_inputs=True)),
        "cnn1d": lambda: train_workload(
            "cnn1d", _cnn1d(L, seq1d_shape), "adam", floor_cnn1d, random_batches(n, seq1d_shape),
            torch_spec=T.TorchSpec(T.cnn1d(2, (seq1d_shape[1], 64)), "adam", image=True)),
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
    torch_compile: bool = True  # also time torch.compile (when torch is importable)
    memory: bool = True  # peak memory per workload and implementation (subprocesses)


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


def _compile_scans(w: Workload, cfg: Config, meter: CompileMeter) -> dict:
    """Each JAX implementation's step inside one `lax.scan` of `cfg.scan_steps` steps, compiled
    once outside the rounds: name -> (scan_fn, stacked batches, keys, compile seconds)."""
    scans = {}
    for name, impl in w.impls.items():
        shared = w.kind == "optim"
        stacked = w.batches[0] if shared else jax.tree.map(
            lambda *xs: jnp.stack(xs),
            *[w.batches[i % len(w.batches)] for i in range(cfg.scan_steps)])
        keys = jnp.stack([w.keys[i % len(w.keys)] for i in range(cfg.scan_steps)])
        scan_fn = _scan_fn(impl.make_step(), shared)
        with meter:
            jax.block_until_ready(scan_fn(impl.init_carry(), stacked, keys))
        scans[name] = (scan_fn, stacked, keys, meter.total)
    return scans


def _agreement(a: list, b: list, rtol: float, checked: int | None = None) -> dict:
    """Relative differences of the losses of the first steps; `ok` when the first `checked`
    (default: all) are within `rtol`."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-6)
    return {"max_rel_diff": float(np.max(rel[:checked])), "rel_diffs": rel.tolist(),
            "rtol": rtol, "ok": bool(np.max(rel[:checked]) <= rtol)}


def _aggregate(rs: list[dict]) -> dict:
    """Medians over rounds (minimum of the step minima; the first round's loss checks)."""
    agg = {key: statistics.median(x[key] for x in rs if key in x)
           for key in ("compile_s", "first_call_s", "step_median_s", "loop_steps_per_s",
                       "scan_step_s") if any(key in x for x in rs)}
    agg["step_min_s"] = min(x["step_min_s"] for x in rs)
    if "compiles" in rs[0]:
        agg["compiles"] = max(x["compiles"] for x in rs)
    agg["checks"], agg["rounds"] = rs[0]["checks"], rs
    return agg


def run_workload(w: Workload, cfg: Config, meter: CompileMeter, log) -> dict:
    """Every implementation of `w` in alternating rounds; medians, ratios and agreement."""
    scans = _compile_scans(w, cfg, meter)
    measures = {name: (lambda impl=impl, name=name: measure_round(
        w, impl, cfg, meter, scans[name][:3] if r < cfg.scan_rounds else None))
        for name, impl in w.impls.items()}
    if w.torch is not None:
        for name, compiled in (("torch", False), ("torch.compile", True))[:1 + cfg.torch_compile]:
            runner = w.torch(compiled)
            measures[name] = lambda runner=runner: runner.measure(cfg.steps, cfg.check_steps)
    names = list(measures)
    rounds: dict[str, list[dict]] = {name: [] for name in names}
    copy_bw = []
    for r in range(cfg.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            rounds[name].append(measures[name]())
        if w.kind == "optim":
            copy_bw.append(copy_bandwidth(w, cfg))
        log(f"  {w.name}: round {r + 1}/{cfg.rounds} done")
    result = {"name": w.name, "kind": w.kind, "info": w.info, "impls": {}}
    for name in names:
        result["impls"][name] = _aggregate(rounds[name])
        if name in scans:
            result["impls"][name]["scan_compile_s"] = scans[name][3]
    j, f = result["impls"]["jnet"], result["impls"]["floor"]
    result["ratio"] = {
        "compile": j["compile_s"] / f["compile_s"],
        "step": j["step_median_s"] / f["step_median_s"],
        "step_min": j["step_min_s"] / f["step_min_s"],
        "loop": f["loop_steps_per_s"] / j["loop_steps_per_s"],
        "scan": j["scan_step_s"] / f["scan_step_s"],
    }
    result["agreement"] = _agreement(j["checks"], f["checks"], w.rtol)
    for name in names[2:]:  # torch: its step time, and jnet's default path against it
        t = result["impls"][name]
        result["ratio"][f"step_vs_{name}"] = j["step_median_s"] / t["step_median_s"]
        result["ratio"][f"scan_vs_{name}"] = j["scan_step_s"] / t["step_median_s"]
        # Only the first loss: the same maths, but PyTorch's different rounding is amplified
        # by sign-like first updates (Adam, RMSprop) where a gradient element is near 0.
        result[f"agreement_{name}"] = _agreement(t["checks"], j["checks"], w.rtol, 1)
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

    out = {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "devices": [str(d) for d in jax.devices()], "backend": jax.default_backend(),
            "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "numpy": np.__version__}
    if torch_side.available():
        import torch

        out |= {"torch": torch.__version__, "torch_threads": torch_side.threads()}
    return out


def _ms(s: float) -> str:
    return f"{s * 1e3:.2f}"


def _slash(values, fmt) -> str:
    return " / ".join("–" if v is None else fmt(v) for v in values)


def _train_row(r: dict) -> str:
    m, q = r["impls"], r["ratio"]
    impls = ("jnet", "floor", "torch", "torch.compile")

    def get(name, key):
        return m.get(name, {}).get(key)

    def ratio(key):
        return "–" if key not in q else f"**{q[key]:.2f}**"

    agree = [("yes" if a["ok"] else "NO") + f" ({a['max_rel_diff']:.0e})"
             for a in (r["agreement"], r.get("agreement_torch")) if a]
    compiles = [get(i, "compile_s") for i in ("jnet", "floor", "torch.compile")]
    return (f"| {r['name']} | {_slash([get(i, 'step_median_s') for i in impls], _ms)}"
            f" | {ratio('step')} | {ratio('step_vs_torch')} | {ratio('step_vs_torch.compile')}"
            f" | {_slash([get(i, 'scan_step_s') for i in impls[:2]], _ms)}"
            f" | {ratio('scan_vs_torch')} | {_slash(compiles, lambda v: f'{v:.2f}')}"
            f" | {_slash([get(i, 'peak_rss_MiB') for i in impls[:3]], lambda v: f'{v:.0f}')}"
            f" | {get('jnet', 'compiles')} / {get('floor', 'compiles')} | {', '.join(agree)} |")


def table(results: list[dict]) -> str:
    """Markdown: the training workloads (step times and ratios, compile times, peak memory,
    agreement), then the optimizer updates."""
    rows = ["| workload | step ms (median) jnet / floor / torch / torch.compile | jnet / floor "
            "| jnet / torch | jnet / torch.compile | scan ms/step jnet / floor | jnet scan / "
            "torch | compile s jnet / floor / torch.compile | peak MiB jnet / floor / torch "
            "| compiles | first losses agree (floor, torch) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    rows += [_train_row(r) if r["kind"] == "train" else f"| {r['name']} | {r['reason']} |"
             for r in results if r["kind"] in ("train", "missing")]
    fits = [r for r in results if "fit" in r]
    if fits:
        rows += ["", "| workload | `jnet.fit` ms/step: default (scan) / scan=False | floor "
                 "step ms | torch step ms | default / floor | default / scan=False | "
                 "default / torch |", "|---|---|---|---|---|---|---|"]
    for r in fits:
        fit, floor = r["fit"], r["impls"]["floor"]["step_median_s"]
        torch_s = r["impls"].get("torch", {}).get("step_median_s")
        rows.append(
            f"| {r['name']} | {_ms(fit['fit_scan_step_s'])} / {_ms(fit['fit_no_scan_step_s'])} | "
            f"{_ms(floor)} | {_slash([torch_s], _ms)} | **{fit['fit_scan_step_s'] / floor:.2f}**"
            f" | {fit['fit_scan_step_s'] / fit['fit_no_scan_step_s']:.2f} | "
            + ("–" if torch_s is None else f"**{fit['fit_scan_step_s'] / torch_s:.2f}**") + " |")
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


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def probe_memory(name: str, impl: str, cfg: Config, quick: bool) -> dict:
    """Peak memory of one implementation's compile + `cfg.steps` steps, run in a fresh process
    (`--probe`) once the workload is built: on CPU the peak resident set (VmHWM, reset first
    through /proc/self/clear_refs) minus the resident set before; on GPU / TPU the device's
    peak bytes in use."""
    (build,) = workload_builders({name}, quick)
    w = build()
    runner = w.torch(False) if impl == "torch" else None
    with open("/proc/self/clear_refs", "w") as f:  # peak RSS := current RSS (Linux >= 4.0)
        f.write("5")
    before = _rss_kib("VmRSS")
    if runner is not None:
        runner.measure(cfg.steps, cfg.check_steps)
    else:
        measure_round(w, w.impls[impl], cfg, CompileMeter(), None)
    out = {"peak_rss_MiB": (_rss_kib("VmHWM") - before) / 1024}
    stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    if stats and impl != "torch":
        out["peak_device_MiB"] = stats.get("peak_bytes_in_use", 0) / 2**20
    return out


def add_memory(results: list[dict], cfg: Config, quick: bool, log) -> None:
    """Run `probe_memory` in a subprocess per training workload and implementation."""
    for r in results:
        if r["kind"] != "train":
            continue
        for impl in [i for i in ("jnet", "floor", "torch") if i in r["impls"]]:
            cmd = [sys.executable, os.path.abspath(__file__), "--probe", f"{r['name']}:{impl}",
                   "--steps", str(cfg.steps), *(["--quick"] if quick else [])]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            if proc.returncode:
                log(f"  memory probe {r['name']}:{impl} failed: {proc.stderr[-500:]}")
                continue
            r["impls"][impl].update(json.loads(proc.stdout.strip().splitlines()[-1]))
        log(f"  {r['name']}: memory measured")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one round of a few steps per workload, small update arrays")
    parser.add_argument("--only", default=None,
                        help="comma-separated workloads, e.g. mlp,cnn,update (default: all)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--json", default="bench_results.json", help="output file")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                        help="peak memory per workload, a subprocess each (default: not --quick)")
    parser.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time torch.compile (default: not --quick)")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)  # WORKLOAD:IMPL
    args = parser.parse_args(argv)
    cfg = Config(rounds=1, steps=2, scan_steps=2) if args.quick else Config(3, 10, 4, 3)
    cfg.rounds = args.rounds or cfg.rounds
    cfg.steps = args.steps or cfg.steps
    cfg.torch_compile = not args.quick if args.torch_compile is None else args.torch_compile
    cfg.memory = not args.quick if args.memory is None else args.memory
    return args, cfg


def main(argv: list[str] | None = None) -> int:
    args, cfg = parse_args(argv)
    if args.probe:
        print(json.dumps(probe_memory(*args.probe.split(":"), cfg, args.quick)))
        return 0

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    started = time.time()
    load_before = os.getloadavg()
    only = set(args.only.split(",")) if args.only else None
    meter = CompileMeter()
    results = []
    for build in workload_builders(only, args.quick):
        try:
            w = build()
        except MissingLayer as e:
            log(f"skipped: {e}")
            results.append({"name": str(e).split()[0], "kind": "missing", "reason": str(e)})
            continue
        log(f"{w.name} ...")
        results.append(run_workload(w, cfg, meter, log))
        if w.fit is not None:
            results[-1]["fit"] = w.fit(cfg)
        del w
    if cfg.memory:
        add_memory(results, cfg, args.quick, log)
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
          f"jax {jax.__version__}, torch threads {report['machine'].get('torch_threads', '–')}, "
          f"{report['wall_s']:.0f} s; JSON: {args.json}")
    bad = [name for r in results for key, name in (("agreement", r["name"]),
                                                    ("agreement_torch", r["name"] + " (torch)"))
           if not r.get(key, {}).get("ok", True)]
    if bad:
        print(f"DISAGREEMENT between jnet and another implementation on: {', '.join(bad)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
