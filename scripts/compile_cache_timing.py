#!/usr/bin/env python
"""Compile time of a fresh process with and without `Options(compilation_cache=DIR)`.

    .venv/bin/python scripts/compile_cache_timing.py                 # 3 repetitions
    .venv/bin/python scripts/compile_cache_timing.py --repeats 5

Each measurement is a new Python process that trains the bench's Transformer encoder
(`scripts/bench/workloads.py`, 256 random token sequences of 64 steps, batch 32) for one epoch
with `jnet.fit`, and reports fit's wall time and the seconds JAX spent tracing, lowering and
compiling (its monitoring events). Per repetition, in this order: no cache; a new empty cache
directory (the first run fills it); the same directory again (the second process: what a
rerun of a script costs with the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
          "/jax/core/compile/jaxpr_to_mlir_module_duration",
          "/jax/core/compile/backend_compile_duration")


def child(cache: str | None) -> dict:
    """One fit in this process: wall seconds and JAX's compile phases."""
    import jax
    import numpy as np

    sys.path[:0] = [ROOT, SCRIPTS]
    from bench.workloads import _encoder

    import jnet

    phases: dict[str, float] = {}

    def listen(event, duration, **kwargs):
        if event in EVENTS:
            name = event.rsplit("/", 1)[1].removesuffix("_duration")
            phases[name] = phases.get(name, 0.0) + duration

    jax.monitoring.register_event_duration_secs_listener(listen)
    model = _encoder(jnet.layers, 64, 1000, 128, 4)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 1000, (256, 64)).astype(np.int32)
    y = rng.integers(0, 10, 256).astype(np.int32)
    t0 = time.perf_counter()
    jnet.fit(model, "adam", x, y, epochs=1, batch_size=32, key=0, verbose=0,
             options=jnet.training.Options(compilation_cache=cache))
    return {"fit_s": time.perf_counter() - t0, **phases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # DIR or "none"
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(None if args.child == "none" else args.child)))
        return 0
    runs: dict[str, list[dict]] = {"no cache": [], "cache, first process": [],
                                   "cache, second process": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            for label, target in zip(runs, ("none", cache, cache), strict=True):
                proc = subprocess.run([sys.executable, __file__, "--child", target],
                                      capture_output=True, text=True, check=True)
                runs[label].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print("| process | fit s (1 epoch) | trace s | lower s | XLA compile s |")
    print("|---|---|---|---|---|")
    for label, rs in runs.items():
        cells = [statistics.median(r.get(key, 0.0) for r in rs) for key in (
            "fit_s", "jaxpr_trace", "jaxpr_to_mlir_module", "backend_compile")]
        print(f"| {label} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    print(f"(medians of {args.repeats} repetitions; load average {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
