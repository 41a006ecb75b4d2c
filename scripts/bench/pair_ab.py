"""Interleaved A/B timing of one training workload of `scripts/bench.py`: jnet against its floor,
and the floor against a second compile of itself (A/A: what the same program measures as noise).

    PYTHONPATH=$PWD python scripts/bench/pair_ab.py gpt --pairs 40 --scan-pairs 12 --hlo

`bench.py`'s jnet / floor column is a ratio of medians over 3 rounds of 5 steps, each round a
second or so of one implementation; on a shared machine a burst of load lands on one side and
moves that ratio by 10-20% (a round's ratio of the gpt went 1.17, 1.13, 0.85 in one quiet run).
Here each pair is one synced step of each side, back to back, in ABBA order (a scan of
``--scan-steps`` steps each for the scan), so both sides of a pair see the same load. Prints,
per comparison, the medians and minima in ms and the per-pair ratios' median and quartiles;
a jnet / floor ratio is a real difference only where it stands clear of the A/A line.

``--hlo`` also prints what XLA compiled for each side's step: `cost_analysis()` bytes accessed
and flops, and the instruction counts that differ when the programs do (fusions, copies,
transposes, dots, YNNPACK fusions, selects).
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
from jax import lax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import workloads

OPS = ("fusion", "copy", "transpose", "dot", "select", "gather", "scatter")


def scan_of(step: Callable) -> Callable:
    """The jitted `lax.scan` of `step` over stacked batches and keys (carry donated)."""
    def multi(carry, batches, keys):
        return lax.scan(lambda c, bk: step(c, bk[0], bk[1]), carry, (batches, keys))
    return jax.jit(multi, donate_argnums=0)


class Side:
    """One compiled implementation: its step (carry kept between calls) and, with
    ``scan_steps`` > 0, its scan."""

    def __init__(self, w: workloads.Workload, impl: workloads.Impl, scan_steps: int):
        self.w, self.impl = w, impl
        self.step = jax.jit(impl.make_step(), donate_argnums=0)
        self.carry = impl.init_carry()
        for i in range(2):  # compile, then one step more: the timed calls find warm buffers
            self.carry, _ = self.step(self.carry, w.batches[i], w.keys[i])
        if scan_steps < 1:
            return
        nb = len(w.batches)
        self.stacked = jax.tree.map(lambda *a: jnp.stack(a),
                                    *[w.batches[i % nb] for i in range(scan_steps)])
        self.keys = jnp.stack([w.keys[i % nb] for i in range(scan_steps)])
        self.scan_steps = scan_steps
        self.scan = scan_of(impl.make_step())
        jax.block_until_ready(self.scan(impl.init_carry(), self.stacked, self.keys))

    def time_step(self, i: int) -> float:
        nb = len(self.w.batches)
        t0 = time.perf_counter()
        self.carry, _ = self.step(self.carry, self.w.batches[i % nb], self.w.keys[i % nb])
        jax.block_until_ready(self.carry)
        return time.perf_counter() - t0

    def time_scan(self, i: int) -> float:
        carry = self.impl.init_carry()
        jax.block_until_ready(carry)
        t0 = time.perf_counter()
        jax.block_until_ready(self.scan(carry, self.stacked, self.keys))
        return (time.perf_counter() - t0) / self.scan_steps


def interleave(a: Callable[[int], float], b: Callable[[int], float], pairs: int
               ) -> tuple[list[float], list[float]]:
    """`pairs` timings of each, in ABBA order (the order flips every pair)."""
    ta, tb = [], []
    for r in range(pairs):
        if r % 2 == 0:
            ta.append(a(r))
            tb.append(b(r))
        else:
            tb.append(b(r))
            ta.append(a(r))
    return ta, tb


def summary(label: str, ta: list[float], tb: list[float]) -> str:
    ratios = [x / y for x, y in zip(ta, tb, strict=True)]
    q1, median, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return (f"{label}: median {statistics.median(ta) * 1e3:.2f} / "
            f"{statistics.median(tb) * 1e3:.2f} ms, min {min(ta) * 1e3:.2f} / "
            f"{min(tb) * 1e3:.2f}; per-pair ratio median {median:.3f} "
            f"(quartiles {q1:.3f}-{q3:.3f}, min {min(ratios):.3f}), ratio of minima "
            f"{min(ta) / min(tb):.3f}")


def hlo_summary(side: Side) -> str:
    """Bytes, flops and instruction counts of the compiled step."""
    w = side.w
    compiled = side.step.lower(side.impl.init_carry(), w.batches[0], w.keys[0]).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    text = compiled.as_text()
    ops = collections.Counter(re.findall(r"= \S+ ([\w-]+)\(", text))
    counts = ", ".join(f"{op} {ops[op]}" for op in OPS)
    return (f"bytes accessed {cost.get('bytes accessed', 0) / 1e6:.3f} MB, flops "
            f"{cost.get('flops', 0) / 1e9:.4f} G; {counts}, ynn fusions "
            f"{text.count('__ynn_fusion')}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workload", help="a training workload of scripts/bench.py (gpt, mlp_bf16, ...)")
    p.add_argument("--pairs", type=int, default=40, help="step pairs per comparison")
    p.add_argument("--scan-pairs", type=int, default=12, help="scan pairs (0: no scans)")
    p.add_argument("--scan-steps", type=int, default=4, help="steps per timed scan")
    p.add_argument("--hlo", action="store_true", help="also summarise the compiled steps")
    p.add_argument("--quick", action="store_true", help="bench.py's --quick sizes (a smoke test)")
    args = p.parse_args(argv)
    w = workloads.workload_builders({args.workload}, args.quick)[0]()
    if w.kind != "train":
        raise SystemExit(f"pair_ab.py times training workloads; {args.workload} is {w.kind} "
                         "(use scripts/bench/optim_ab.py for the update rules)")
    scan_steps = args.scan_steps if args.scan_pairs > 0 else 0
    sides = {name: Side(w, w.impls[impl], scan_steps)
             for name, impl in (("jnet", "jnet"), ("floor", "floor"), ("floor again", "floor"))}
    if args.hlo:
        for name in ("jnet", "floor"):
            print(f"{w.name} {name} step: {hlo_summary(sides[name])}", flush=True)
    jnet, floor, again = sides["jnet"], sides["floor"], sides["floor again"]
    comparisons = [("step", "time_step", args.pairs), ("scan", "time_scan", args.scan_pairs)]
    for what, method, pairs in comparisons:
        if pairs < 1:
            continue
        for label, a in (("jnet / floor", jnet), ("floor again / floor (A/A)", again)):
            ta, tb = interleave(getattr(a, method), getattr(floor, method), pairs)
            print(f"{w.name} {what} {summary(label, ta, tb)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
