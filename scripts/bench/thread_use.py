"""How many cores a matrix product inside a loop uses: XLA:CPU against PyTorch, by size.

A recurrent layer's step is one small matrix product that depends on the step before it, so a
library can use more cores only by splitting that one product. This script times T chained
products ``h <- tanh(sum of the G column blocks of h @ W)`` (the shape of an LSTM / GRU step:
h (M, K), W (K, N)) inside one `lax.scan`, and the same chain as a Python loop of `torch.mm`, at
the process's default thread counts, and reports for each GFLOP/s and **CPU time / wall time**:
1.0 means one core did all the work, 2.0 means two cores were busy throughout.

    python scripts/bench/thread_use.py [--rounds 3]

The first rows are the bench LSTM's per-step products (batch 64, hidden 128: forward h W_hh
is 64 x 128 x 512, backward dz W_hhᵀ 64 x 512 x 128). Run it on a quiet machine: another
job on the cores lowers both columns.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

SIZES = [(64, 128, 512), (64, 512, 128), (128, 128, 512), (256, 128, 512), (512, 128, 512),
         (1024, 1024, 1024)]


def _chain_steps(m: int, k: int, n: int) -> int:
    """Enough steps for ~1 GFLOP per call."""
    return max(2, int(1e9 / (2 * m * k * n)))


def _measure(run, flops: float, rounds: int) -> tuple[float, float]:
    """(GFLOP/s, CPU / wall) of `run()`, medians over `rounds` after a warm-up call."""
    run()
    speed, share = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        speed.append(flops / wall / 1e9)
        share.append(cpu / wall)
    return statistics.median(speed), statistics.median(share)


def jax_chain(m: int, k: int, n: int, rounds: int) -> tuple[float, float]:
    steps, rng = _chain_steps(m, k, n), np.random.default_rng(0)
    w = jnp.asarray(rng.normal(size=(k, n)) / np.sqrt(k), jnp.float32)

    @jax.jit
    def chain(h):
        def body(h, _):
            z = h @ w
            return jnp.tanh(z.reshape(m, -1, k).sum(1) if n >= k else jnp.tile(z, k // n)), None
        return lax.scan(body, h, None, length=steps)[0]

    h = jnp.ones((m, k), jnp.float32)
    return _measure(lambda: jax.block_until_ready(chain(h)), 2.0 * m * k * n * steps, rounds)


def torch_chain(m: int, k: int, n: int, rounds: int) -> tuple[float, float] | None:
    try:
        import torch
    except ImportError:
        return None
    steps = _chain_steps(m, k, n)
    w = torch.randn(k, n) / k ** 0.5

    def chain():
        h = torch.ones(m, k)
        with torch.no_grad():
            for _ in range(steps):
                z = h @ w
                h = torch.tanh(z.reshape(m, -1, k).sum(1) if n >= k else z.repeat(1, k // n))
        return h

    return _measure(chain, 2.0 * m * k * n * steps, rounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch_threads = "-"
    try:
        import torch
        torch_threads = str(torch.get_num_threads())
    except ImportError:
        pass
    print(f"jax {jax.__version__}, torch threads {torch_threads}\n")
    print("| M x K x N | XLA GFLOP/s | XLA CPU / wall | torch GFLOP/s | torch CPU / wall |")
    print("|---|---|---|---|---|")
    for m, k, n in SIZES:
        xla = jax_chain(m, k, n, args.rounds)
        tch = torch_chain(m, k, n, args.rounds)
        torch_cols = f"{tch[0]:.0f} | {tch[1]:.2f}" if tch else "- | -"
        print(f"| {m} x {k} x {n} | {xla[0]:.0f} | {xla[1]:.2f} | {torch_cols} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
