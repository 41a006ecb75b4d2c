"""The benchmark's workloads: each builds its implementations (jnet, the hand-written floor of
`floors.py`, torch of `torch_side.py`) from one jnet init, with the same batches and keys.

`workload_builders` lists them; `scripts/bench.py` measures them and prints the table.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bench import lm, torch_side
from bench.floors import (
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
    fit: Callable[[Any], dict] | None = None  # times `jnet.fit` itself (scan and not)
    # times decoding after the training rows: (config, compile meter, log) -> result
    decode: Callable[[Any, Any, Callable], dict] | None = None


def _fresh(tree):
    return lambda: jax.tree.map(jnp.copy, tree)


def _keys(n: int) -> list[jax.Array]:
    return [jax.random.fold_in(jax.random.key(42), i) for i in range(n)]


def _leaf_params(model, tree) -> list:
    """The non-empty params / state of the model's leaf layers (depth first), in order: the
    floors' lists."""
    if not model.children:
        return [tree] if tree else []
    # a wrapper that keeps its child's params unnested (precision.mixed) passes the tree on
    return [leaf for name, child in model.children
            for leaf in _leaf_params(child, tree.get(name, tree))]


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


def fit_timing(model, optimizer, batches: list, cfg: Any) -> dict:
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
                 batch_size=len(batches[0][0]), verbose=0,
                 options=jnet.training.Options(scan=scan, check_finite=False),
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


def workload_builders(only: set[str] | None, quick: bool, large: bool = False
                      ) -> list[Callable[[], Workload]]:
    """The selected workloads, each built when called (one in memory at a time).

    `quick` shrinks batches (CNN 16, sequences 8 x 16 steps) and the update arrays (10 x 10k)
    so a smoke test compiles and runs everything in little time; timings then mean nothing.
    `large` (the GPU preset, `scripts/bench_gpu.sh`) grows them 8x (CNN batch 1024, sequences
    512 x 64 steps, tokens 256 x 64, update arrays 10 x 16M); with `quick` too, it stays quick.
    """
    from jnet import layers as L

    n = 4 if quick else 8
    img_shape, seq_shape = ((16, 28, 28, 1), (8, 16, 32)) if quick else (
        ((1024, 28, 28, 1), (512, 64, 32)) if large else ((128, 28, 28, 1), (64, 64, 32)))
    img = lambda: random_batches(n, img_shape)  # noqa: E731
    seq = lambda: random_batches(n, seq_shape)  # noqa: E731
    steps = seq_shape[1]
    mlp = L.serial(L.Input((64,)), L.Dense(256), L.ReLU(), L.Dense(256), L.ReLU(), L.Dense(10),
                   L.ClassificationOutput())

    seq1d_shape = (8, 32, 16) if quick else ((512, 128, 16) if large else (64, 128, 16))
    (n_tok, t_tok), vocab, width, heads = (8, 16) if quick else (
        (256, 64) if large else (32, 64)), 1000, 128, 4
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
    builders["gpt"] = lambda: lm.gpt_workload(n, quick)
    size = 10_000 if quick else (16_000_000 if large else 1_000_000)
    for rule in OPTIMIZERS:
        builders[f"update_{rule}"] = lambda rule=rule: optim_workload(rule, 10, size)
    unknown = (only or set()) - set(builders) - {"update"}
    if unknown:
        raise SystemExit(f"bench.py: unknown workloads {sorted(unknown)}; "
                         f"choose from {sorted(builders)} or 'update' (every rule).")
    return [build for name, build in builders.items()
            if only is None or name in only or ("update" in only and name.startswith("update_"))]
