"""Data-parallel throughput: training examples/s against the number of devices.

    python scripts/bench_scale.py                      # CPU: 1, 2, 4, 8 forced host devices
    python scripts/bench_scale.py --devices 1 2 4 8 --batch 1024 --steps 30
    python scripts/bench_scale.py --platform gpu       # the first 1, 2, 4, ... real GPUs

Standalone (scripts/bench.py belongs to the single-device benchmarks). Each device count runs
in a fresh process, because the number of CPU devices is fixed when jax starts
(``jax_num_cpu_devices``, the same as ``XLA_FLAGS=--xla_force_host_platform_device_count``).
The global batch is fixed (strong scaling): n devices each get batch / n examples of the same
jit-compiled `jnet.distributed.shard_train_step` (an MLP with BatchNorm, Adam). Timing
excludes compilation: a warm-up step, then `--steps` steps, median of `--repeats`.

Caveat: forced host devices are threads of ONE CPU: they share its cores, caches and memory
bandwidth, so the CPU curve shows the partitioning overhead and how much of the machine one
XLA:CPU device leaves unused, not what n real accelerators would give.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(devices: int, platform: str, batch: int, steps: int, repeats: int,
            width: int) -> dict:
    import jax

    if platform == "cpu":
        jax.config.update("jax_num_cpu_devices", devices)
    import numpy as np

    import jnet
    from jnet import distributed as dist
    from jnet import layers as L

    available = jax.devices(platform)
    if len(available) < devices:
        return {"devices": devices, "error": f"only {len(available)} {platform} devices"}
    plan = dist.data_parallel(available[:devices])
    model = L.serial(L.Input((784,)), L.Dense(width), L.ReLU(), L.BatchNorm(), L.Dense(width),
                     L.ReLU(), L.Dense(10), L.ClassificationOutput())
    opt = jnet.optim.adam(1e-3)
    _, params, state = model.init(jax.random.key(0))
    step = dist.shard_train_step(jnet.make_train_step(model, opt), plan)
    carry = dist.place((params, state, opt.init(params)), plan)
    rng = np.random.default_rng(0)
    batch_data = dist.shard_batch((rng.normal(size=(batch, 784)).astype(np.float32),
                                   rng.integers(0, 10, batch).astype(np.int32)), plan)
    key = jax.random.key(1)
    *carry, logs = step(*carry, batch_data, key)  # compile
    jax.block_until_ready(logs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            *carry, logs = step(*carry, batch_data, key)
        jax.block_until_ready((carry, logs))
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    return {"devices": devices, "platform": platform, "batch": batch,
            "per_device": batch // devices, "examples_per_s": batch * steps / seconds,
            "ms_per_step": 1000 * seconds / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--platform", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--batch", type=int, default=1024, help="global batch (all devices)")
    parser.add_argument("--width", type=int, default=512, help="hidden units of the MLP")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(measure(args.worker, args.platform, args.batch, args.steps,
                                 args.repeats, args.width)))
        return
    rows = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get(
        "PYTHONPATH")])))
    for n in args.devices:
        if args.batch % n:
            raise SystemExit(f"bench_scale.py: --batch {args.batch} is not a multiple of {n} "
                             "devices; pick a batch every device count divides.")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(n), "--platform",
               args.platform, "--batch", str(args.batch), "--width", str(args.width),
               "--steps", str(args.steps), "--repeats", str(args.repeats)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = next((r["examples_per_s"] for r in rows if "examples_per_s" in r), None)
    print(f"| devices ({args.platform}) | per-device batch | ms/step | examples/s | vs first |")
    print("|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['devices']} | - | - | {r['error']} | - |")
            continue
        print(f"| {r['devices']} | {r['per_device']} | {r['ms_per_step']:.1f} | "
              f"{r['examples_per_s']:,.0f} | {r['examples_per_s'] / base:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
