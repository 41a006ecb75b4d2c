"""Where a CNN step's time goes: the forward conv, the input-gradient and the weight-gradient
of the bench CNN's second conv (batch x 14 x 14 x 32 -> 64, 3x3 SAME), timed separately for
jnet's Conv2D, the floor (`lax.conv_general_dilated` and its autodiff) and torch, interleaved
in one process (the ratios survive machine load better than the times).

    .venv/bin/python scripts/bench/conv_ops.py [--batch 128] [--repeats 20]
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def jax_ops(conv, x, w) -> dict:
    """forward / d input / d weight of `conv(x, w)`, each jitted alone."""
    fwd = jax.jit(conv)
    g = jnp.ones_like(fwd(x, w))
    dx = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
    dw = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
    return {"forward": lambda: fwd(x, w).block_until_ready(),
            "d_input": lambda: dx(x, w, g).block_until_ready(),
            "d_weight": lambda: dw(x, w, g).block_until_ready()}


def torch_ops(x, w) -> dict:
    import torch

    xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2).copy())
    wt = torch.tensor(np.asarray(w).transpose(3, 2, 0, 1).copy())
    g = torch.ones(torch.nn.functional.conv2d(xt, wt, padding=1).shape)
    grad = torch.ops.aten.convolution_backward
    args = (g, xt, wt, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    return {"forward": lambda: torch.nn.functional.conv2d(xt, wt, padding=1),
            "d_input": lambda: grad(*args, [True, False, False]),
            "d_weight": lambda: grad(*args, [False, True, False])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    from jnet import layers as L

    layer = L.Conv2D(64, (3, 3), padding="SAME")
    _, params, state = layer.init(jax.random.key(0), (14, 14, 32))
    x = jax.random.normal(jax.random.key(1), (args.batch, 14, 14, 32))
    w = params["w"]

    def jnet_conv(x, w):
        return layer.apply(params | {"w": w}, state, x)[0]

    def floor_conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + params["b"]

    impls = {"jnet": jax_ops(jnet_conv, x, w), "floor": jax_ops(floor_conv, x, w)}
    if importlib.util.find_spec("torch") is not None:
        impls["torch"] = torch_ops(x, w)
    times: dict = {(i, op): [] for i in impls for op in impls[i]}
    for r in range(3):  # interleaved rounds, order flipped
        for i in list(impls)[:: 1 if r % 2 == 0 else -1]:
            for op, fn in impls[i].items():
                times[i, op].append(_time(fn, args.repeats))
    flops = 2 * args.batch * 14 * 14 * 9 * 32 * 64
    print(f"batch {args.batch}, {len(os.sched_getaffinity(0))} CPUs, {flops / 1e9:.2f} GFLOP/op")
    print("| op | " + " | ".join(f"{i} ms" for i in impls) + " | jnet / floor | jnet / torch |")
    print("|---|" + "---|" * (len(impls) + 2))
    for op in ("forward", "d_input", "d_weight"):
        ms = {i: 1e3 * statistics.median(times[i, op]) for i in impls}
        torch_ratio = f"{ms['jnet'] / ms['torch']:.2f}" if "torch" in ms else "–"
        print(f"| {op} | " + " | ".join(f"{v:.2f}" for v in ms.values())
              + f" | {ms['jnet'] / ms['floor']:.2f} | {torch_ratio} |")


if __name__ == "__main__":
    main()
