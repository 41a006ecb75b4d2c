"""Where the BN-CNN training step's time goes: forward + backward of each layer alone, jnet
(jitted `jax.vjp`, cotangent of ones) against PyTorch eager (forward, `backward` of the sum), at
the shapes of `scripts/bench.py`'s cnn_bn_dropout workload (batch 128, 28x28x1 images).

    python scripts/bench/breakdown.py [--repeats 20] [--batch 128]

Prints the median ms per layer and the sum (process CPU time when pinned to one CPU, e.g. with
`taskset -c 1`, wall time otherwise); each layer sees the activations the previous one
produced, and torch runs in NCHW (its native layout) with the same number of threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from jnet import layers as L


def default_clock():
    """Process CPU time when pinned to one CPU (robust to other jobs taking the core: time
    spent descheduled does not count), else wall time (threads waiting on each other count)."""
    return time.process_time if len(os.sched_getaffinity(0)) == 1 else time.perf_counter


def median_ms(fn, repeats: int, clock=None) -> float:
    """The median ms of `fn()` over `repeats` calls after one warm-up call, by `clock`
    (`default_clock()` when None)."""
    clock = clock or default_clock()
    fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return 1e3 * statistics.median(times)


def jnet_layer_ms(layer, x, repeats: int) -> tuple[float, jax.Array]:
    """Forward + backward of `layer` in training mode on `x` (jitted); returns (ms, output)."""
    _, params, state = layer.init(jax.random.key(0), x.shape[1:])

    @jax.jit
    def step(params, x):
        (y, _), vjp = jax.vjp(lambda p, x: layer.apply(p, state, x, train=True,
                                                        key=jax.random.key(1)), params, x)
        return vjp((jnp.ones_like(y), jax.tree.map(jnp.zeros_like, state)))

    return median_ms(lambda: jax.block_until_ready(step(params, x)), repeats), layer.apply(
        params, state, x, train=True, key=jax.random.key(1))[0]


def torch_layer_ms(module, x, repeats: int) -> float:
    import torch

    x = torch.from_numpy(np.array(np.moveaxis(np.asarray(x), -1, 1), order="C"))
    x.requires_grad_(True)

    def run():
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()

    module.train()
    torch.manual_seed(0)
    return median_ms(run, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    try:
        import torch
        from torch import nn

        torch.set_num_threads(len(os.sched_getaffinity(0)))
    except ImportError:
        torch = None
    x = jnp.asarray(np.random.default_rng(0).normal(size=(args.batch, 28, 28, 1)), jnp.float32)
    stack = [("Conv2D 1->32 3x3", L.Conv2D(32, (3, 3), padding="SAME"),
              lambda: nn.Conv2d(1, 32, 3, padding=1)),
             ("BatchNorm 32", L.BatchNorm(), lambda: nn.BatchNorm2d(32)),
             ("ReLU", L.ReLU(), lambda: nn.ReLU()),
             ("MaxPool2D 2x2", L.MaxPool2D((2, 2)), lambda: nn.MaxPool2d(2)),
             ("Conv2D 32->64 3x3", L.Conv2D(64, (3, 3), padding="SAME"),
              lambda: nn.Conv2d(32, 64, 3, padding=1)),
             ("BatchNorm 64", L.BatchNorm(), lambda: nn.BatchNorm2d(64)),
             ("ReLU", L.ReLU(), lambda: nn.ReLU()),
             ("MaxPool2D 2x2", L.MaxPool2D((2, 2)), lambda: nn.MaxPool2d(2))]
    print(f"backend {jax.default_backend()}, batch {args.batch}; forward + backward, median ms")
    print(f"{'layer':20} {'input':18} {'jnet':>8} {'torch':>8}")
    totals = [0.0, 0.0]
    for label, layer, make_torch in stack:
        ms, y = jnet_layer_ms(layer, x, args.repeats)
        t_ms = torch_layer_ms(make_torch(), x, args.repeats) if torch else float("nan")
        totals = [totals[0] + ms, totals[1] + t_ms]
        print(f"{label:20} {tuple(x.shape)!s:18} {ms:8.2f} {t_ms:8.2f}")
        x = y
    print(f"{'sum':20} {'':18} {totals[0]:8.2f} {totals[1]:8.2f}")


if __name__ == "__main__":
    main()
