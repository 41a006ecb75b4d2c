#!/usr/bin/env python
"""Does jnet cost anything? jnet's training steps against hand-written JAX floors and PyTorch.

    .venv/bin/python scripts/bench.py                 # full run, table + JSON
    .venv/bin/python scripts/bench.py --quick         # a few steps per workload (CI smoke test)
    .venv/bin/python scripts/bench.py --only cnn,lstm --rounds 5 --json out.json
    .venv/bin/python scripts/bench.py --single-core   # jnet, floor and torch pinned to 1 CPU
    .venv/bin/python scripts/bench.py --both          # default threads and 1 core, side by side

By default every library runs at its default thread count on every CPU this process may use
(as users run it); ``--single-core`` pins the process to one CPU before jax and torch start.
The workloads live in `bench/workloads.py`, the hand-written floors in `bench/floors.py`.

Every workload has implementations fed the same initial weights (made by jnet, converted to
the floor's plain lists and to torch modules) and the same batches and keys:

- ``jnet``: the public API (`jnet.layers`, `jnet.optim`, `jnet.make_train_step`), jitted as
  `jnet.fit` does, with params, state and optimizer state donated;
- ``floor``: the same model written directly with `jax.numpy` / `lax` (`bench/floors.py`, no
  jnet import), as a JAX expert would: `lax.reduce_window` max-pool, hand-written rules;
- ``torch`` / ``torch.compile`` (when `import torch` works; `bench/torch_side.py`): PyTorch
  eager, and with the model under `torch.compile` (optimizer step eager), as many intra-op
  threads as this process may use CPUs (what XLA:CPU's pool uses).

Per implementation and round: compile time of the first step (trace + lower + XLA compile, from
JAX's monitoring events; torch.compile: its first call minus one step), step time with a sync
after each step (median and minimum), steps/s of a back-to-back loop, ms/step inside one
compiled `lax.scan` over many steps (how `jnet.fit` runs an epoch), the number of compilations
of the step function after all steps (1 = no recompiles) and the losses of the first steps,
which must agree between implementations (so the same work is timed; torch: the first loss).
Implementations alternate in rounds (order flipped each round) so machine noise hits all; the
table shows medians over rounds, the ratios jnet / floor as medians of the per-round ratios
(jnet and the floor ran back to back), and jnet / torch. A round times the compiled scan
three times (its median). Peak memory
(``--memory``, default in full runs): each implementation of each workload compiles and runs
its steps in a fresh process. The strided CNN also times `jnet.fit` itself, with its default
(scan) and ``scan=False``.

The ``gpt`` workload (`bench/lm.py`) is the character-level GPT of `train_lm.py` trained with
AdamW; its row adds training tokens/s and a decode row: greedy decoding with jnet's key / value
cache against a torch loop with its own cache over the same weights (same tokens asserted).

The optimizer workloads time `update` alone over 10 arrays of 1M float32 parameters and report
the achieved memory bandwidth (bytes read + written per step / time) against the bandwidth of
an in-place elementwise pass (read 1 array, write 1) over the same arrays: the physical limit.
``muon_torch`` (`bench/muon_torch.py`; runs with the updates when torch is importable, not
with ``--large``) times one Muon update and the Newton-Schulz iterations alone on 10 1000x1000
matrices: jnet, the floor, `torch.optim.Muon` as shipped (bfloat16 iteration) and with its
iteration in float32, results compared.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

if "--single-core" in sys.argv[1:]:
    # Before jax (and torch) are imported: XLA:CPU sizes its thread pool from the CPUs this
    # process may run on when its client starts, and torch_side.threads() reads the same set.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(SCRIPTS)
for _path in (ROOT, SCRIPTS):  # run from anywhere: the checkout's jnet and the bench package
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench import muon_torch, torch_side  # noqa: E402
from bench.floors import Step  # noqa: E402
from bench.workloads import (  # noqa: E402
    OPTIMIZERS,  # noqa: F401  (re-exported: the tests check every rule has a floor)
    Impl,
    MissingLayer,
    Workload,
    workload_builders,
)

# ----------------------------------------------------------------------------------------
# Measurement.

COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                  "/jax/core/compile/jaxpr_to_mlir_module_duration",
                  "/jax/core/compile/backend_compile_duration")


class CompileMeter:
    """Sums JAX's trace / lower / XLA-compile durations while active (`parts`: each phase)."""

    def __init__(self):
        self.parts, self.active = {}, False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        if self.active and event in COMPILE_EVENTS:
            phase = event.rsplit("/", 1)[1].removesuffix("_duration")
            self.parts[phase] = self.parts.get(phase, 0.0) + duration

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    def __enter__(self):
        self.parts, self.active = {}, True
        return self

    def __exit__(self, *exc):
        self.active = False


@dataclass
class Config:
    rounds: int
    steps: int  # timed steps per round (synced loop and back-to-back loop each)
    scan_steps: int
    scan_rounds: int = 1  # rounds that also time the scan (CPU convs are slow inside loops)
    scan_repeats: int = 3  # scan calls per round; their median is the round's time
    check_steps: int = 3
    torch_compile: bool = True  # also time torch.compile (when torch is importable)
    memory: bool = True  # peak memory per workload and implementation (subprocesses)


def _scan_fn(step: Step, shared_batch: bool):
    def multi(carry, batches, keys):
        def body(c, inputs):
            b, k = inputs
            return step(c, batches if shared_batch else b, k)

        return lax.scan(body, carry, (None if shared_batch else batches, keys))

    return jax.jit(multi, donate_argnums=0)


def measure_round(w: Workload, impl: Impl, cfg: Config, meter: CompileMeter,
                  scan: tuple | None) -> dict:
    """One round of one implementation: compile, synced steps, back-to-back loop, and the
    compiled scan when `scan` is given."""
    nb = len(w.batches)
    step, traces = impl.make_step(), [0]

    def counted(carry, batch, key):  # a Python side effect runs once per trace
        traces[0] += 1
        return step(carry, batch, key)

    fn = jax.jit(counted, donate_argnums=0)
    carry = impl.init_carry()
    jax.block_until_ready(carry)
    with meter:
        t0 = time.perf_counter()
        carry, aux = fn(carry, w.batches[0], w.keys[0])
        jax.block_until_ready((carry, aux))
        first_call = time.perf_counter() - t0
    compile_s, compile_parts = meter.total, dict(meter.parts)
    checks, times = [np.asarray(aux).tolist()], []
    for i in range(1, cfg.steps + 1):
        t0 = time.perf_counter()
        carry, aux = fn(carry, w.batches[i % nb], w.keys[i % nb])
        jax.block_until_ready((carry, aux))
        times.append(time.perf_counter() - t0)
        if i < cfg.check_steps:
            checks.append(np.asarray(aux).tolist())
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(cfg.steps):
        carry, aux = fn(carry, w.batches[i % nb], w.keys[i % nb])
    jax.block_until_ready((carry, aux))
    loop = (time.perf_counter() - t0) / cfg.steps
    loop_cores = (time.process_time() - cpu0) / (loop * cfg.steps)
    compiles = traces[0]  # every trace of a jitted function is a compilation
    del carry
    result = {"compile_s": compile_s, "compile_parts_s": compile_parts, "first_call_s": first_call,
            "step_median_s": statistics.median(times), "step_min_s": min(times),
            "loop_steps_per_s": 1.0 / loop, "loop_cores": loop_cores, "compiles": compiles,
            "checks": checks}
    if scan is not None:
        scan_fn, scan_batches, scan_keys = scan
        walls, cores = [], []
        for _ in range(cfg.scan_repeats):
            carry = impl.init_carry()  # the scan donates its carry
            jax.block_until_ready(carry)
            t0, cpu0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(scan_fn(carry, scan_batches, scan_keys))
            walls.append(time.perf_counter() - t0)
            cores.append((time.process_time() - cpu0) / walls[-1])
        result["scan_step_s"] = statistics.median(walls) / cfg.scan_steps
        result["scan_cores"] = statistics.median(cores)
    return result


def copy_bandwidth(w: Workload, cfg: Config) -> float:
    """Bytes/s of `x + 1` in place over the workload's parameter arrays (read 1, write 1)."""
    arrays = [jnp.copy(a) for a in w.batches[0]]
    fn = jax.jit(lambda xs: [x + 1.0 for x in xs], donate_argnums=0)
    arrays = fn(arrays)
    jax.block_until_ready(arrays)
    times = []
    for _ in range(max(cfg.steps, 3)):
        t0 = time.perf_counter()
        arrays = jax.block_until_ready(fn(arrays))
        times.append(time.perf_counter() - t0)
    return 2 * sum(a.nbytes for a in arrays) / statistics.median(times)


def _compile_scans(w: Workload, cfg: Config, meter: CompileMeter) -> dict:
    """Each JAX implementation's step inside one `lax.scan` of `cfg.scan_steps` steps, compiled
    once outside the rounds: name -> (scan_fn, stacked batches, keys, compile seconds)."""
    scans = {}
    for name, impl in w.impls.items():
        shared = w.kind == "optim"
        stacked = w.batches[0] if shared else jax.tree.map(
            lambda *xs: jnp.stack(xs),
            *[w.batches[i % len(w.batches)] for i in range(cfg.scan_steps)])
        keys = jnp.stack([w.keys[i % len(w.keys)] for i in range(cfg.scan_steps)])
        scan_fn = _scan_fn(impl.make_step(), shared)
        with meter:
            jax.block_until_ready(scan_fn(impl.init_carry(), stacked, keys))
        scans[name] = (scan_fn, stacked, keys, meter.total)
    return scans


def step_flops(w: Workload) -> float | None:
    """FLOPs of one jnet training step, from XLA's cost analysis of the compiled step (an extra
    compile, outside the timings); torch does the same maths, so the same count is used."""
    impl = w.impls["jnet"]
    compiled = jax.jit(impl.make_step()).lower(impl.init_carry(), w.batches[0], w.keys[0]).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # older jaxlibs: one dict per device
    return float(cost["flops"]) if cost and "flops" in cost else None


def peak_flops() -> dict:
    """The machine's fp32 peak two ways: a formula, CPUs x clock (cpu MHz of /proc/cpuinfo) x
    FLOPs per cycle, with 32 for AVX-512 or AVX2+FMA (two 256-bit FMA pipes x 8 lanes x 2
    FLOPs: Zen 4 and most cores; Intel parts with two 512-bit FMA units reach 64) and 8
    otherwise; and the practical ceiling, a 2048 x 2048 `jnp.dot` timed at this process's
    thread count."""
    cpus, mhz, flags = len(os.sched_getaffinity(0)), 0.0, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz") and not mhz:
                    mhz = float(line.split(":")[1])
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":")[1].split())
    except OSError:
        pass
    per_cycle = 32 if "avx512f" in flags or {"avx2", "fma"} <= flags else 8
    a = jnp.ones((2048, 2048), jnp.float32)
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, a))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(dot(a, a))
        times.append(time.perf_counter() - t0)
    return {"formula_Fps": cpus * mhz * 1e6 * per_cycle, "formula": f"{cpus} CPUs x {mhz:.0f} "
            f"MHz x {per_cycle} FLOPs/cycle", "dot_Fps": 2 * 2048**3 / statistics.median(times)}


def _agreement(a: list, b: list, rtol: float, checked: int | None = None) -> dict:
    """Relative differences of the losses of the first steps; `ok` when the first `checked`
    (default: all) are within `rtol`."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-6)
    return {"max_rel_diff": float(np.max(rel[:checked])), "rel_diffs": rel.tolist(),
            "rtol": rtol, "ok": bool(np.max(rel[:checked]) <= rtol)}


def _aggregate(rs: list[dict]) -> dict:
    """Medians over rounds (minimum of the step minima; the first round's loss checks)."""
    agg = {key: statistics.median(x[key] for x in rs if key in x)
           for key in ("compile_s", "first_call_s", "step_median_s", "loop_steps_per_s",
                       "scan_step_s", "loop_cores", "scan_cores") if any(key in x for x in rs)}
    agg["step_min_s"] = min(x["step_min_s"] for x in rs)
    if "compiles" in rs[0]:
        agg["compiles"] = max(x["compiles"] for x in rs)
    agg["checks"], agg["rounds"] = rs[0]["checks"], rs
    return agg


def _paired(a: list[dict], b: list[dict], key: str) -> float:
    """The median over rounds of a's time / b's time in the same round: the two ran back to
    back, so a slow phase of the machine hits both (steadier than a ratio of medians)."""
    return statistics.median(x[key] / y[key] for x, y in zip(a, b, strict=True)
                             if key in x and key in y)


def run_workload(w: Workload, cfg: Config, meter: CompileMeter, log) -> dict:
    """Every implementation of `w` in alternating rounds; medians, ratios and agreement."""
    scans = _compile_scans(w, cfg, meter)
    measures = {name: (lambda impl=impl, name=name: measure_round(
        w, impl, cfg, meter, scans[name][:3] if r < cfg.scan_rounds else None))
        for name, impl in w.impls.items()}
    if w.torch is not None:
        for name, compiled in (("torch", False), ("torch.compile", True))[:1 + cfg.torch_compile]:
            runner = w.torch(compiled)
            measures[name] = lambda runner=runner: runner.measure(cfg.steps, cfg.check_steps)
    names = list(measures)
    rounds: dict[str, list[dict]] = {name: [] for name in names}
    copy_bw = []
    for r in range(cfg.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            rounds[name].append(measures[name]())
        if w.kind == "optim":
            copy_bw.append(copy_bandwidth(w, cfg))
        log(f"  {w.name}: round {r + 1}/{cfg.rounds} done")
    result = {"name": w.name, "kind": w.kind, "info": w.info, "impls": {}}
    for name in names:
        result["impls"][name] = _aggregate(rounds[name])
        if name in scans:
            result["impls"][name]["scan_compile_s"] = scans[name][3]
    j, f = result["impls"]["jnet"], result["impls"]["floor"]
    result["ratio"] = {
        "compile": j["compile_s"] / f["compile_s"],
        "step": _paired(rounds["jnet"], rounds["floor"], "step_median_s"),
        "step_min": j["step_min_s"] / f["step_min_s"],
        "loop": f["loop_steps_per_s"] / j["loop_steps_per_s"],
        "scan": _paired(rounds["jnet"], rounds["floor"], "scan_step_s"),
    }
    result["agreement"] = _agreement(j["checks"], f["checks"], w.rtol)
    for name in names[2:]:  # torch: its step time, and jnet's default path against it
        t = result["impls"][name]
        result["ratio"][f"step_vs_{name}"] = j["step_median_s"] / t["step_median_s"]
        result["ratio"][f"scan_vs_{name}"] = j["scan_step_s"] / t["step_median_s"]
        # Only the first loss: the same maths, but PyTorch's different rounding is amplified
        # by sign-like first updates (Adam, RMSprop) where a gradient element is near 0.
        result[f"agreement_{name}"] = _agreement(t["checks"], j["checks"], w.rtol, 1)
    if w.kind == "train":
        result["flops_per_step"] = step_flops(w)
    if copy_bw:
        bw = statistics.median(copy_bw)
        result["copy_bandwidth_Bps"] = bw
        for agg in result["impls"].values():
            agg["bandwidth_Bps"] = w.info["bytes_per_step"] / agg["step_median_s"]
            agg["time_vs_copy_limit"] = bw / agg["bandwidth_Bps"]
    return result


# ----------------------------------------------------------------------------------------
# Report.


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    import jaxlib

    out = {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "cpus_allowed": len(os.sched_getaffinity(0)),
            "single_core": len(os.sched_getaffinity(0)) == 1,
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "devices": [str(d) for d in jax.devices()], "backend": jax.default_backend(),
            "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "numpy": np.__version__}
    if torch_side.available():
        import torch

        out |= {"torch": torch.__version__, "torch_threads": torch_side.threads()}
    return out


def _ms(s: float) -> str:
    return f"{s * 1e3:.2f}"


def _slash(values, fmt) -> str:
    return " / ".join("–" if v is None else fmt(v) for v in values)


def _train_row(r: dict) -> str:
    m, q = r["impls"], r["ratio"]
    impls = ("jnet", "floor", "torch", "torch.compile")

    def get(name, key):
        return m.get(name, {}).get(key)

    def ratio(key):
        return "–" if key not in q else f"**{q[key]:.2f}**"

    agree = [("yes" if a["ok"] else "NO") + f" ({a['max_rel_diff']:.0e})"
             for a in (r["agreement"], r.get("agreement_torch")) if a]
    compiles = [get(i, "compile_s") for i in ("jnet", "floor", "torch.compile")]
    return (f"| {r['name']} | {_slash([get(i, 'step_median_s') for i in impls], _ms)}"
            f" | {ratio('step')} | {ratio('step_vs_torch')} | {ratio('step_vs_torch.compile')}"
            f" | {_slash([get(i, 'scan_step_s') for i in impls[:2]], _ms)}"
            f" | {ratio('scan_vs_torch')} | {_slash(compiles, lambda v: f'{v:.2f}')}"
            f" | {_slash([get(i, 'peak_rss_MiB') for i in impls[:3]], lambda v: f'{v:.0f}')}"
            f" | {get('jnet', 'compiles')} / {get('floor', 'compiles')} | {', '.join(agree)} |")


def table(results: list[dict]) -> str:
    """Markdown: the training workloads (step times and ratios, compile times, peak memory,
    agreement), then the optimizer updates."""
    rows = ["| workload | step ms (median) jnet / floor / torch / torch.compile | jnet / floor "
            "| jnet / torch | jnet / torch.compile | scan ms/step jnet / floor | jnet scan / "
            "torch | compile s jnet / floor / torch.compile | peak MiB jnet / floor / torch "
            "| compiles | first losses agree (floor, torch) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    rows += [_train_row(r) if r["kind"] == "train" else f"| {r['name']} | {r['reason']} |"
             for r in results if r["kind"] in ("train", "missing")]
    fits = [r for r in results if "fit" in r]
    if fits:
        rows += ["", "| workload | `jnet.fit` ms/step: default (scan) / scan=False | floor "
                 "step ms | torch step ms | default / floor | default / scan=False | "
                 "default / torch |", "|---|---|---|---|---|---|---|"]
    for r in fits:
        fit, floor = r["fit"], r["impls"]["floor"]["step_median_s"]
        torch_s = r["impls"].get("torch", {}).get("step_median_s")
        rows.append(
            f"| {r['name']} | {_ms(fit['fit_scan_step_s'])} / {_ms(fit['fit_no_scan_step_s'])} | "
            f"{_ms(floor)} | {_slash([torch_s], _ms)} | **{fit['fit_scan_step_s'] / floor:.2f}**"
            f" | {fit['fit_scan_step_s'] / fit['fit_no_scan_step_s']:.2f} | "
            + ("–" if torch_s is None else f"**{fit['fit_scan_step_s'] / torch_s:.2f}**") + " |")
    opt = [r for r in results if r["kind"] == "optim" and "ratio" in r]
    if opt:
        shape = "x".join(map(str, opt[0]["info"]["array_shape"]))
        rows += ["", f"| update ({opt[0]['info']['arrays']} x {shape} f32) | step ms jnet / floor "
                 "| compile s jnet / floor | GB/s jnet / floor / copy "
                 "| time / copy limit jnet / floor | compiles | agree |",
                 "|---|---|---|---|---|---|---|"]
        for r in opt:
            j, f, q = r["impls"]["jnet"], r["impls"]["floor"], r["ratio"]
            rows.append(
                f"| {r['name'].removeprefix('update ')} | {_ms(j['step_median_s'])} / "
                f"{_ms(f['step_median_s'])} (**{q['step']:.2f}**) | {j['compile_s']:.2f} / "
                f"{f['compile_s']:.2f} (**{q['compile']:.2f}**) | {j['bandwidth_Bps'] / 1e9:.1f}"
                f" / {f['bandwidth_Bps'] / 1e9:.1f} / {r['copy_bandwidth_Bps'] / 1e9:.1f} | "
                f"**{j['time_vs_copy_limit']:.2f}** / {f['time_vs_copy_limit']:.2f} | "
                f"{j['compiles']} / {f['compiles']} | "
                f"{'yes' if r['agreement']['ok'] else 'NO'} |")
    rows += ["\n" + muon_torch.table(r) for r in results if r["kind"] == "muon_torch"]
    return "\n".join(rows)


def lm_table(results: list[dict]) -> str:
    """Markdown: training tokens/s of the language-model rows (tokens per step / median step
    time; jnet also inside its compiled scan) and greedy decoding tokens/s with a KV cache."""
    rows = []
    for r in results:
        per_step = r.get("info", {}).get("tokens_per_step")
        if r["kind"] == "train" and per_step:
            m = r["impls"]
            rates = [per_step / m[i]["step_median_s"] if i in m else None
                     for i in ("jnet", "floor", "torch", "torch.compile")]
            rows += ["| training | tokens/s jnet / floor / torch / torch.compile | jnet scan "
                     "tokens/s | jnet / torch eager (tokens/s) |", "|---|---|---|---|"] * (
                         not rows)
            rows.append(f"| {r['name']} {r['info']['batch']} | "
                        f"{_slash(rates, lambda v: f'{v:,.0f}')} | "
                        f"{per_step / m['jnet']['scan_step_s']:,.0f} | "
                        + ("–" if rates[2] is None else f"**{rates[0] / rates[2]:.2f}**") + " |")
    for r in (r["decode"] for r in results if "decode" in r):
        m, agree = r["impls"], r.get("agreement_torch")
        rates = [m.get(i, {}).get("tokens_per_s") for i in ("jnet", "torch")]
        rows += ["", "| decoding (batch 1, greedy, KV cache) | tokens/s jnet / torch | jnet / "
                 "torch | compile s jnet | tokens equal, first logits max diff |",
                 "|---|---|---|---|---|",
                 f"| {r['name']} ({r['info']['tokens']} tokens) | "
                 f"{_slash(rates, lambda v: f'{v:,.0f}')} | "
                 + (f"**{r['ratio']['tokens_per_s_vs_torch']:.2f}**" if "ratio" in r else "–")
                 + f" | {m['jnet']['compile_s']:.2f} | "
                 + ("–" if agree is None else f"{'yes' if agree['tokens_equal'] else 'NO'}, "
                    f"{agree['first_logits_max_abs_diff']:.0e}") + " |"]
    return "\n".join(rows)


def flops_table(results: list[dict], peak: dict) -> str:
    """Markdown: FLOPs per training step and the fraction of the machine's peak (formula and
    measured `jnp.dot`) that jnet's scan and torch eager reach."""
    rows = [f"Peak fp32: formula {peak['formula_Fps'] / 1e9:.0f} GFLOP/s ({peak['formula']}), "
            f"2048x2048 jnp.dot {peak['dot_Fps'] / 1e9:.0f} GFLOP/s", "",
            "| workload | GFLOP / step | jnet scan GFLOP/s | % of peak (formula / dot) "
            "| torch GFLOP/s | % of peak (formula / dot) |", "|---|---|---|---|---|---|"]
    for r in results:
        flops = r.get("flops_per_step")
        if not flops:
            continue
        cells = []
        for impl, key in (("jnet", "scan_step_s"), ("torch", "step_median_s")):
            t = r["impls"].get(impl, {}).get(key)
            rate = None if t is None else flops / t
            cells += [_slash([rate], lambda v: f"{v / 1e9:.1f}"),
                      _slash([rate and rate / peak["formula_Fps"], rate and rate / peak["dot_Fps"]],
                             lambda v: f"{100 * v:.0f}%")]
        rows.append(f"| {r['name']} | {flops / 1e9:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def probe_memory(name: str, impl: str, cfg: Config, quick: bool, large: bool) -> dict:
    """Peak memory of one implementation's compile + `cfg.steps` steps, run in a fresh process
    (`--probe`) once the workload is built: on CPU the peak resident set (VmHWM, reset first
    through /proc/self/clear_refs) minus the resident set before; on GPU / TPU the device's
    peak bytes in use."""
    (build,) = workload_builders({name}, quick, large)
    w = build()
    runner = w.torch(False) if impl == "torch" else None
    with open("/proc/self/clear_refs", "w") as f:  # peak RSS := current RSS (Linux >= 4.0)
        f.write("5")
    before = _rss_kib("VmRSS")
    if runner is not None:
        runner.measure(cfg.steps, cfg.check_steps)
    else:
        measure_round(w, w.impls[impl], cfg, CompileMeter(), None)
    out = {"peak_rss_MiB": (_rss_kib("VmHWM") - before) / 1024}
    stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    if stats and impl != "torch":
        out["peak_device_MiB"] = stats.get("peak_bytes_in_use", 0) / 2**20
    return out


def add_memory(results: list[dict], cfg: Config, quick: bool, large: bool, log) -> None:
    """Run `probe_memory` in a subprocess per training workload and implementation."""
    for r in results:
        if r["kind"] != "train":
            continue
        for impl in [i for i in ("jnet", "floor", "torch") if i in r["impls"]]:
            cmd = [sys.executable, os.path.abspath(__file__), "--probe", f"{r['name']}:{impl}",
                   "--steps", str(cfg.steps), *(["--quick"] if quick else []),
                   *(["--large"] if large else []),
                   *(["--single-core"] if len(os.sched_getaffinity(0)) == 1 else [])]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            if proc.returncode:
                log(f"  memory probe {r['name']}:{impl} failed: {proc.stderr[-500:]}")
                continue
            r["impls"][impl].update(json.loads(proc.stdout.strip().splitlines()[-1]))
        log(f"  {r['name']}: memory measured")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="one round of a few steps per workload, small update arrays")
    parser.add_argument("--only", default=None,
                        help="comma-separated workloads, e.g. mlp,cnn,update,muon_torch "
                        "(default: all)")
    parser.add_argument("--large", action="store_true",
                        help="8x the batches and update arrays: the GPU preset (bench_gpu.sh)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--json", default="bench_results.json", help="output file")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                        help="peak memory per workload, a subprocess each (default: not --quick)")
    parser.add_argument("--torch-compile", action=argparse.BooleanOptionalAction, default=None,
                        help="also time torch.compile (default: not --quick)")
    threads = parser.add_mutually_exclusive_group()
    threads.add_argument("--single-core", action="store_true",
                         help="pin jnet, the floor and torch to one CPU (default: every CPU "
                         "this process may use, at each library's default thread count)")
    threads.add_argument("--both", action="store_true",
                         help="run twice (default threads, then --single-core), each in a "
                         "subprocess, and print the step times side by side")
    parser.add_argument("--probe", default=None, help=argparse.SUPPRESS)  # WORKLOAD:IMPL
    args = parser.parse_args(argv)
    cfg = Config(rounds=1, steps=2, scan_steps=2, scan_repeats=1) if args.quick else Config(
        3, 10, 4, 3)
    cfg.rounds = args.rounds or cfg.rounds
    cfg.steps = args.steps or cfg.steps
    cfg.torch_compile = not args.quick if args.torch_compile is None else args.torch_compile
    cfg.memory = not args.quick if args.memory is None else args.memory
    return args, cfg


def _step_ms(r: dict, impl: str) -> float | None:
    m = r.get("impls", {}).get(impl, {})
    return m.get("scan_step_s", m.get("step_median_s")) if impl != "torch" else m.get(
        "step_median_s")


def both_table(default: dict, single: dict) -> str:
    """Markdown: per workload, jnet's scan and torch eager ms/step at default threads and on
    one core, and jnet / torch in each: a regression in either setting shows."""
    rows = ["| workload | jnet scan ms: default / 1 core | torch ms: default / 1 core "
            "| jnet / torch: default / 1 core | cores busy at default threads: jnet / torch |",
            "|---|---|---|---|---|"]
    singles = {r["name"]: r for r in single["results"]}
    for r in default["results"]:
        o = singles.get(r["name"], {})
        jd, js, td, ts = (_step_ms(r, "jnet"), _step_ms(o, "jnet"), _step_ms(r, "torch"),
                          _step_ms(o, "torch"))
        ratios = [None if j is None or t is None else j / t for j, t in ((jd, td), (js, ts))]
        cores = [r.get("impls", {}).get(i, {}).get(k)
                 for i, k in (("jnet", "scan_cores"), ("torch", "loop_cores"))]
        rows.append(f"| {r['name']} | {_slash([jd, js], _ms)} | {_slash([td, ts], _ms)} | "
                    f"{_slash(ratios, lambda v: f'{v:.2f}')} | "
                    f"{_slash(cores, lambda v: f'{v:.1f}')} |")
    return "\n".join(rows)


def run_both(argv: list[str], json_path: str) -> int:
    """`--both`: this script at default threads, then with --single-core, each in a fresh
    process (the thread pools are fixed once jax / torch start); one JSON with both runs."""
    argv = [a for a in argv if a != "--both"]
    runs = {}
    for label, extra in (("default_threads", []), ("single_core", ["--single-core"])):
        path = f"{json_path}.{label}.json"
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv, *extra,
                               "--json", path], text=True)
        if proc.returncode:
            return proc.returncode
        with open(path) as f:
            runs[label] = json.load(f)
        os.remove(path)
    with open(json_path, "w") as f:
        json.dump(runs, f, indent=1)
    print(both_table(runs["default_threads"], runs["single_core"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    args, cfg = parse_args(argv)
    if args.probe:
        print(json.dumps(probe_memory(*args.probe.split(":"), cfg, args.quick, args.large)))
        return 0
    if args.both:
        rest = list(sys.argv[1:] if argv is None else argv)
        if "--json" in rest:  # the combined file keeps the name; each run gets its own
            del rest[rest.index("--json"):rest.index("--json") + 2]
        return run_both(rest, args.json)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    started = time.time()
    load_before = os.getloadavg()
    only = set(args.only.split(",")) if args.only else None
    meter = CompileMeter()
    results = []
    # muon_torch is no Workload (four implementations, two rows): run after the others, with
    # the update rules; not with --large (torch runs on the CPU, jnet on the accelerator)
    with_muon = torch_side.available() and not args.large and (
        only is None or bool({"muon_torch", "update"} & only))
    if only is not None and "muon_torch" in only:
        only = (only - {"muon_torch"}) or {"(none)"}
    for build in ([] if only == {"(none)"} else workload_builders(only, args.quick, args.large)):
        try:
            w = build()
        except MissingLayer as e:
            log(f"skipped: {e}")
            results.append({"name": str(e).split()[0], "kind": "missing", "reason": str(e)})
            continue
        log(f"{w.name} ...")
        results.append(run_workload(w, cfg, meter, log))
        if w.fit is not None:
            results[-1]["fit"] = w.fit(cfg)
        if w.decode is not None:
            results[-1]["decode"] = w.decode(cfg, meter, log)
        del w
    if with_muon:
        results.append(muon_torch.run(args.quick, cfg.rounds, min(cfg.steps, 2), log))
    if cfg.memory:
        add_memory(results, cfg, args.quick, args.large, log)
    report = {
        "command": " ".join([os.path.relpath(sys.argv[0], ROOT) if argv is None else
                             "scripts/bench.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine() | {"peak": peak_flops()},
        "config": vars(cfg) | {"quick": args.quick, "large": args.large},
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "wall_s": time.time() - started,
        "results": results,
    }
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)
    print(table(results))
    if any("tokens_per_step" in r.get("info", {}) for r in results):
        print("\n" + lm_table(results))
    print("\n" + flops_table(results, report["machine"]["peak"]))
    m = report["machine"]
    print(f"\n{'SINGLE CORE (pinned to 1 CPU)' if m['single_core'] else 'DEFAULT THREADS'}: "
          f"{report['date']}, {m['cpu']}, {m['cores']} cores ({m['cpus_allowed']} allowed), "
          f"jax {m['jax']} / jaxlib {m['jaxlib']}, XLA devices {m['devices']}, "
          f"XLA_FLAGS={m['xla_flags'] or '(none)'}, torch threads {m.get('torch_threads', '–')}, "
          f"{report['wall_s']:.0f} s; JSON: {args.json}")
    bad = [name for r in results for key, name in (("agreement", r["name"]),
                                                    ("agreement_torch", r["name"] + " (torch)"))
           if not r.get(key, {}).get("ok", True)]
    bad += [r["name"] + " decode (torch)" for r in results
            if not r.get("decode", {}).get("agreement_torch", {}).get("ok", True)]
    if bad:
        print(f"DISAGREEMENT between jnet and another implementation on: {', '.join(bad)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
