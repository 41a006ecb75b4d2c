"""Where a CNN step's convolution time goes: the forward conv, the input gradient and the
weight gradient of the bench CNNs' convolutions (batch x 28 x 28 x 1 -> 32 and 14 x 14 x 32 ->
64, 3x3 SAME; the strided CNN's 14 x 14 x 32 -> 64, 4x4 stride 2), timed separately for jnet's
Conv2D, the floor (`lax.conv_general_dilated` and its autodiff) and torch, interleaved in one
process (the ratios survive machine load better than the times). Pinned to one CPU
(`taskset -c 1`) the times are process CPU time, otherwise wall time (`breakdown.median_ms`).
The "cores" columns are process CPU time / wall time over the calls: how many cores the op
kept busy (1.00: one thread did it all). With XLA:CPU's defaults every convolution here runs
on one thread; `XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`
(XLA's Eigen convolutions instead of YNNPACK's) shows the threaded alternative.

    .venv/bin/python scripts/bench/conv_ops.py [--batch 128] [--repeats 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(os.path.dirname(_HERE)), os.path.dirname(_HERE)]

from bench.breakdown import median_ms  # noqa: E402

# name: (per-example input shape, filters, kernel, stride); torch pads (k - s) // 2 per side,
# which is jnet's SAME for all three
CONVS = {"28x28x1->32 3x3": ((28, 28, 1), 32, 3, 1),
         "14x14x32->64 3x3": ((14, 14, 32), 64, 3, 1),
         "14x14x32->64 4x4 s2": ((14, 14, 32), 64, 4, 2)}


def jax_ops(conv, x, w) -> dict:
    """forward / d input / d weight of `conv(x, w)`, each jitted alone."""
    fwd = jax.jit(conv)
    g = jnp.ones_like(fwd(x, w))
    dx = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
    dw = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
    return {"forward": lambda: fwd(x, w).block_until_ready(),
            "d_input": lambda: dx(x, w, g).block_until_ready(),
            "d_weight": lambda: dw(x, w, g).block_until_ready()}


def torch_ops(x, w, stride: int) -> dict:
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    pad = (w.shape[0] - stride) // 2
    xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2).copy())
    wt = torch.tensor(np.asarray(w).transpose(3, 2, 0, 1).copy())
    g = torch.ones(torch.nn.functional.conv2d(xt, wt, stride=stride, padding=pad).shape)
    grad = torch.ops.aten.convolution_backward
    args = (g, xt, wt, None, [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], 1)
    return {"forward": lambda: torch.nn.functional.conv2d(xt, wt, stride=stride, padding=pad),
            "d_input": lambda: grad(*args, [True, False, False]),
            "d_weight": lambda: grad(*args, [False, True, False])}


def cores_busy(fn, repeats: int) -> float:
    """Process CPU time / wall time over `repeats` calls of `fn` (after a warm-up call)."""
    fn()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


def conv_impls(in_shape, filters: int, k: int, s: int, batch: int) -> dict:
    from jnet import layers as L

    layer = L.Conv2D(filters, k, strides=s, padding="SAME")
    _, params, state = layer.init(jax.random.key(0), in_shape)
    x = jax.random.normal(jax.random.key(1), (batch, *in_shape))

    def jnet_conv(x, w):
        return layer.apply(params | {"w": w}, state, x)[0]

    def floor_conv(x, w):
        return lax.conv_general_dilated(x, w, (s, s), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + params["b"]

    impls = {"jnet": jax_ops(jnet_conv, x, params["w"]),
             "floor": jax_ops(floor_conv, x, params["w"])}
    if importlib.util.find_spec("torch") is not None:
        impls["torch"] = torch_ops(x, params["w"], s)
    return impls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"batch {args.batch}, {len(os.sched_getaffinity(0))} CPUs, XLA_FLAGS="
          f"{os.environ.get('XLA_FLAGS', '')!r}; median ms over rounds")
    print("| conv | op | jnet | floor | torch | jnet / floor | jnet / torch | cores jnet / torch |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (in_shape, filters, k, s) in CONVS.items():
        impls = conv_impls(in_shape, filters, k, s, args.batch)
        times: dict = {(i, op): [] for i in impls for op in impls[i]}
        for r in range(args.rounds):  # interleaved rounds, order flipped
            for i in list(impls)[:: 1 if r % 2 == 0 else -1]:
                for op, fn in impls[i].items():
                    times[i, op].append(median_ms(fn, args.repeats))
        for op in ("forward", "d_input", "d_weight"):
            ms = {i: statistics.median(times[i, op]) for i in impls}
            t = ms.get("torch", float("nan"))
            cores = "/".join(f"{cores_busy(impls[i][op], args.repeats):.2f}"
                             for i in ("jnet", "torch") if i in impls)
            print(f"| {name} | {op} | {ms['jnet']:.2f} | {ms['floor']:.2f} | {t:.2f} | "
                  f"{ms['jnet'] / ms['floor']:.2f} | {ms['jnet'] / t:.2f} | {cores} |")


if __name__ == "__main__":
    main()
