"""Interleaved A/B timing of one optimizer's update, jnet vs its floor (floors.OPTIMIZERS).

    PYTHONPATH=$PWD python scripts/bench/optim_ab.py NAME:N_ARRAYS:SIDE:ROUNDS:STEPS ...

Each round runs STEPS updates of jnet then of the floor (the floor first with FLOOR_FIRST=1) in
one process, both jitted with state and params donated, and prints the medians in ms per update.
"""

import os
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
    order = ["floor", "jnet"] if os.environ.get("FLOOR_FIRST") else ["jnet", "floor"]
    fns = {k: jax.jit(impls[k][0], donate_argnums=(1, 2)) for k in order}
    carry = {k: (impls[k][1]([x.copy() for x in params]), [x.copy() for x in params])
             for k in order}
    times: dict[str, list[float]] = {k: [] for k in order}
    for r in range(rounds + 1):  # round 0 compiles and warms up
        for k in order:
            s, p = carry[k]
            start = time.perf_counter()
            for _ in range(steps):
                s, p = fns[k](grads, s, p)
            jax.block_until_ready(p)
            if r:
                times[k].append((time.perf_counter() - start) / steps * 1e3)
            carry[k] = (s, p)
    mj, mf = statistics.median(times["jnet"]), statistics.median(times["floor"])
    rounds_ms = {k: [round(t, 1) for t in v] for k, v in times.items()}
    print(f"{name} {n}x{side}x{side}: jnet {mj:.2f} ms, floor {mf:.2f} ms, ratio {mj / mf:.3f}"
          f" {rounds_ms}", flush=True)


if __name__ == "__main__":
    for spec in sys.argv[1:]:
        name, n, side, rounds, steps = spec.split(":")
        run(name, int(n), int(side), int(rounds), int(steps))
