"""Interleaved A/B timing of one optimizer's update, jnet vs its floor (floors.OPTIMIZERS).

    PYTHONPATH=$PWD python scripts/bench/optim_ab.py NAME:N_ARRAYS:SIDE:ROUNDS:STEPS ...

Each round runs STEPS updates of jnet and of the floor in one process, both jitted with state
and params donated; the order flips every round so a burst of machine load hits both alike.
Prints the medians in ms per update, their ratio, and the median and minimum of the per-round
ratios (the minimum: the rounds least disturbed by other processes).
"""

import statistics
import sys
import time

import jax
from floors import OPTIMIZERS

import jnet


def run(name: str, n: int, side: int, rounds: int, steps: int) -> None:
    make, floor_rule, _ = OPTIMIZERS[name]
    opt, rule = make(jnet.optim), floor_rule()
    keys = jax.random.split(jax.random.key(0), 2 * n)
    params = [jax.random.normal(k, (side, side)) for k in keys[:n]]
    grads = [0.01 * jax.random.normal(k, (side, side)) for k in keys[n:]]
    impls = {"jnet": (lambda g, s, p: opt.update(g, s, p)[::-1], opt.init),
             "floor": (lambda g, s, p: rule[1](g, s, p)[::-1], rule[0])}
    fns = {k: jax.jit(f, donate_argnums=(1, 2)) for k, (f, _) in impls.items()}
    carry = {k: (init([x.copy() for x in params]), [x.copy() for x in params])
             for k, (_, init) in impls.items()}
    times: dict[str, list[float]] = {k: [] for k in impls}
    for r in range(rounds + 1):  # round 0 compiles and warms up
        for k in (["jnet", "floor"] if r % 2 else ["floor", "jnet"]):
            s, p = carry[k]
            start = time.perf_counter()
            for _ in range(steps):
                s, p = fns[k](grads, s, p)
            jax.block_until_ready(p)
            if r:
                times[k].append((time.perf_counter() - start) / steps * 1e3)
            carry[k] = (s, p)
    mj, mf = statistics.median(times["jnet"]), statistics.median(times["floor"])
    per_round = [j / f for j, f in zip(times["jnet"], times["floor"], strict=True)]
    print(f"{name} {n}x{side}x{side}: jnet {mj:.2f} ms (min {min(times['jnet']):.2f}), floor "
          f"{mf:.2f} ms (min {min(times['floor']):.2f}), ratio of medians {mj / mf:.3f}, "
          f"of mins {min(times['jnet']) / min(times['floor']):.3f}, per-round ratio median "
          f"{statistics.median(per_round):.3f} min {min(per_round):.3f}", flush=True)


if __name__ == "__main__":
    for spec in sys.argv[1:]:
        name, n, side, rounds, steps = spec.split(":")
        run(name, int(n), int(side), int(rounds), int(steps))
