"""Time jnet's LSTM / GRU against a straightforward hand-written `lax.scan`.

The hand-written baseline is what a JAX user writes first: every step computes
``x_t @ W_ih + h @ W_hh + b`` inside the loop (gates fused, nothing hoisted), differentiated by
JAX. jnet's variants: its default, hoisting the input projection out of the loop or not,
unrolling, and "autodiff" (``fast_grad=False``: jnet's own scan differentiated by JAX instead of
its hand-written backward pass). Prints the forward+backward step time
(best of `--repeats`, after warm-up) and the jit compile time for each workload.

    python scripts/rnn_timing.py                 # default workloads
    python scripts/rnn_timing.py --quick         # smaller, for a smoke run
    python scripts/rnn_timing.py --shapes 1      # only the shape of scripts/bench.py's lstm / gru
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from jnet.layers import GRU, LSTM


def naive_lstm(params, x):
    """The baseline: no hoisting, one fused matmul for x and one for h each step."""
    n, hidden = x.shape[0], params["w_hh"].shape[0]

    def step(carry, x_t):
        h, c = carry
        z = x_t @ params["w_ih"] + h @ params["w_hh"] + params["b"]
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = jnp.zeros((n, hidden), x.dtype)
    (h, _), _ = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(x, 0, 1))
    return h


def naive_gru(params, x):
    n, hidden = x.shape[0], params["w_hh"].shape[0]

    def step(h, x_t):
        r_x, z_x, n_x = jnp.split(x_t @ params["w_ih"] + params["b_ih"], 3, axis=-1)
        r_h, z_h, n_h = jnp.split(h @ params["w_hh"] + params["b_hh"], 3, axis=-1)
        r, z = jax.nn.sigmoid(r_x + r_h), jax.nn.sigmoid(z_x + z_h)
        h = (1 - z) * jnp.tanh(n_x + r * n_h) + z * h
        return h, h

    h, _ = jax.lax.scan(step, jnp.zeros((n, hidden), x.dtype), jnp.swapaxes(x, 0, 1))
    return h


def _grad_step(forward):
    """A training-like step: loss = mean(h_T²), gradient w.r.t. params."""
    return jax.jit(jax.grad(lambda p, x: jnp.mean(forward(p, x) ** 2)))


def time_fn(fn, params, x, repeats):
    """(best step time, compile time): the minimum is the robust statistic on a shared machine."""
    t0 = time.perf_counter()
    compiled = fn.lower(params, x).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(params, x))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, x))
        times.append(time.perf_counter() - t0)
    return min(times), compile_s


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--shapes", type=int, default=None, help="time only the first k shapes")
    args = ap.parse_args()
    # (N, T, F, H); the first is scripts/bench.py's lstm / gru workload
    workloads = [(64, 64, 32, 128), (32, 128, 32, 128), (8, 256, 8, 32), (16, 512, 16, 64)]
    if args.quick:
        workloads = [(8, 64, 8, 32)]
    workloads = workloads[:args.shapes]
    print(f"backend: {jax.default_backend()}  (N, T, F, H); fwd+bwd ms (best); compile s")
    for n, t, f, hidden in workloads:
        x = jax.random.normal(jax.random.key(0), (n, t, f))
        for kind, layer_fn, naive in (("LSTM", LSTM, naive_lstm), ("GRU", GRU, naive_gru)):
            rows = []
            variants = (("jnet (default)", {}), ("jnet hoist=True", {"hoist": True}),
                        ("jnet hoist=False", {"hoist": False}), ("jnet unroll=4", {"unroll": 4}),
                        ("jnet autodiff", {"fast_grad": False}))
            for label, options in variants:
                layer = layer_fn(hidden, **options)
                _, params, _ = layer.init(jax.random.key(1), (t, f))
                fwd = lambda p, x, layer=layer: layer.apply(p, {}, x)[0]  # noqa: E731
                rows.append((label, *time_fn(_grad_step(fwd), params, x, args.repeats)))
            rows.append(("hand-written scan", *time_fn(_grad_step(naive), params, x, args.repeats)))
            for label, step_s, compile_s in rows:
                print(f"{kind} {(n, t, f, hidden)!s:22} {label:18} {1e3 * step_s:8.2f} ms"
                      f"   compile {compile_s:5.2f} s")


if __name__ == "__main__":
    main()
