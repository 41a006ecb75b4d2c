"""Muon against `torch.optim.Muon` on the same matrices: one whole update, and the
Newton-Schulz iterations alone (`scripts/bench.py --only muon_torch`).

Four implementations, timed in rounds whose order flips each round:

* jnet: `jnet.optim.muon(...).update` (state and params donated) / `jnet.optim.newton_schulz`,
  jitted over the list of matrices.
* floor: `floors.floor_muon` / `floors.floor_newton_schulz`, jitted likewise.
* torch: `torch.optim.Muon(...).step()` as shipped; its Newton-Schulz runs in bfloat16.
* torch f32: the same step with torch's Newton-Schulz source minus its bfloat16 cast, so the
  iteration jnet runs (float32): the like-for-like comparison.

Same hyperparameters everywhere (torch's defaults, which jnet's are): momentum 0.95 with the
Nesterov direction (torch: buf.lerp_(g, 1-μ), g.lerp(buf, μ), jnet: B = μB + (1-μ)g,
(1-μ)g + μB), decoupled weight decay 0.1, eps 1e-7, 5 steps of Keller Jordan's quintic, and a
rate of 0.02. The matrices are square, so the shape scale (`lr_scale="original"`, torch's
`adjust_lr_fn=None`) is 1 and torch's (out, in) layout needs no transpose. Agreement: the first
update p_1 - p_0 (and the Newton-Schulz output) of each against jnet's, as max |diff| / max |jnet|.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from bench import torch_side
from bench.floors import MUON_ABC, floor_muon, floor_newton_schulz

LR = 0.02
RTOL = 1e-4  # jnet vs floor and vs torch's float32 iteration; bfloat16 torch is only reported
IMPLS = ("jnet", "floor", "torch", "torch f32")


def _torch_ns(bfloat16: bool) -> Callable:
    """torch's `_zeropower_via_newtonschulz` compiled from its module's source file: as shipped,
    or with the bfloat16 cast removed (nothing else). From the file, not the function, so a
    replacement installed by someone else (tests/test_optim_parity.py's fixtures) is ignored."""
    import torch.optim._muon as muon_module

    source = inspect.getsource(muon_module)
    (node,) = [n for n in ast.parse(source).body
               if isinstance(n, ast.FunctionDef) and n.name == "_zeropower_via_newtonschulz"]
    code = ast.get_source_segment(source, node) or ""
    namespace: dict = {}
    exec(code if bfloat16 else code.replace(".bfloat16()", ""), vars(muon_module), namespace)
    return namespace["_zeropower_via_newtonschulz"]


@contextlib.contextmanager
def _torch_ns_installed(fn: Callable):
    """Run torch's Muon with `fn` as its Newton-Schulz (looked up by name at each step)."""
    import torch.optim._muon as muon_module

    before = muon_module._zeropower_via_newtonschulz
    muon_module._zeropower_via_newtonschulz = fn
    try:
        yield
    finally:
        muon_module._zeropower_via_newtonschulz = before


def _jax_update(opt_update, init, params, grads) -> tuple[Callable, Callable]:
    """(fresh carry, step(carry) -> carry) of a jitted, donated JAX update."""
    fn = jax.jit(lambda g, s, p: opt_update(g, s, p)[::-1], donate_argnums=(1, 2))

    def fresh():
        copies = [jnp.copy(x) for x in params]
        return init(copies), [jnp.copy(x) for x in params]

    def step(carry):
        return jax.block_until_ready(fn(grads, *carry))

    return fresh, step


def _torch_update(params, grads, ns_fn) -> tuple[Callable, Callable]:
    import torch

    def fresh():
        ps = [torch.nn.Parameter(torch.from_numpy(np.array(p))) for p in params]
        for p, g in zip(ps, grads, strict=True):
            p.grad = torch.from_numpy(np.array(g))
        return ps, torch.optim.Muon(ps, lr=LR)

    def step(carry):
        with _torch_ns_installed(ns_fn):
            carry[1].step()
        return carry

    return fresh, step


def _updates(params, grads) -> dict[str, tuple[Callable, Callable, Callable]]:
    """name -> (fresh carry, step, new params of a carry as NumPy) for one Muon update."""
    import jnet

    opt, (floor_init, floor_update) = jnet.optim.muon(LR), floor_muon(LR)

    def jax_params(carry):
        return [np.asarray(x) for x in carry[1]]

    def torch_params(carry):
        return [p.detach().numpy() for p in carry[0]]

    return {"jnet": (*_jax_update(opt.update, opt.init, params, grads), jax_params),
            "floor": (*_jax_update(floor_update, floor_init, params, grads), jax_params),
            "torch": (*_torch_update(params, grads, _torch_ns(True)), torch_params),
            "torch f32": (*_torch_update(params, grads, _torch_ns(False)), torch_params)}


def _iterations(grads) -> dict[str, tuple[Callable, Callable, Callable]]:
    """name -> (fresh carry, step, output as NumPy) for Newton-Schulz alone on each matrix."""
    import torch

    import jnet

    jnet_ns = jax.jit(lambda xs: [jnet.optim.newton_schulz(x) for x in xs])
    floor_ns = jax.jit(lambda xs: [floor_newton_schulz(x) for x in xs])
    torch_grads = [torch.from_numpy(np.array(g)) for g in grads]

    def jax_impl(fn):
        return (lambda: None, lambda _: jax.block_until_ready(fn(grads)),
                lambda out: [np.asarray(x) for x in out])

    def torch_impl(fn):
        def step(_):
            with torch.no_grad():
                return [fn(g, MUON_ABC, 5, 1e-7) for g in torch_grads]

        return lambda: None, step, lambda out: [x.float().numpy() for x in out]

    return {"jnet": jax_impl(jnet_ns), "floor": jax_impl(floor_ns),
            "torch": torch_impl(_torch_ns(True)), "torch f32": torch_impl(_torch_ns(False))}


def _row(impls: dict, rounds: int, steps: int, delta_from: list[np.ndarray] | None) -> dict:
    """Time each implementation (`steps` synced calls per round, order flipped each round) and
    compare its first result (minus `delta_from`: an update) with jnet's."""
    firsts = {}
    for name, (fresh, step, output) in impls.items():  # warm up (compiles) and record
        out = output(step(fresh()))
        firsts[name] = [o - d for o, d in zip(out, delta_from, strict=True)] if delta_from \
            else out
    times: dict[str, list[float]] = {name: [] for name in impls}
    for r in range(rounds):
        for name in list(impls) if r % 2 == 0 else list(impls)[::-1]:
            fresh, step, _ = impls[name]
            carry = fresh()
            for _ in range(steps):
                t0 = time.perf_counter()
                carry = step(carry)
                times[name].append(time.perf_counter() - t0)
    want = firsts["jnet"]
    scale = max(float(np.max(np.abs(w))) for w in want)
    diffs = {name: max(float(np.max(np.abs(g - w))) for g, w in zip(got, want, strict=True))
             / scale for name, got in firsts.items() if name != "jnet"}
    return {"impls": {name: {"median_s": statistics.median(t), "min_s": min(t)}
                      for name, t in times.items()},
            "max_rel_diff": diffs}


def run(quick: bool, rounds: int, steps: int, log) -> dict:
    """The `muon_torch` result: both rows, agreement and the shapes (10 x 1000x1000 float32;
    `quick`: 2 x 64x64)."""
    import torch

    torch.set_num_threads(torch_side.threads())
    n, side = (2, 64) if quick else (10, 1000)
    keys = jax.random.split(jax.random.key(5), 2 * n)
    params = [jax.random.normal(k, (side, side)) for k in keys[:n]]
    grads = [0.01 * jax.random.normal(k, (side, side)) for k in keys[n:]]
    rows = {}
    log(f"muon_torch: one update of {n} x {side}x{side} ...")
    rows["update"] = _row(_updates(params, grads), rounds, steps,
                          [np.asarray(p) for p in params])
    log("muon_torch: Newton-Schulz alone ...")
    rows["newton_schulz"] = _row(_iterations(grads), rounds, steps, None)
    worst = max(row["max_rel_diff"][k] for row in rows.values() for k in ("floor", "torch f32"))
    return {"name": "muon_torch", "kind": "muon_torch", "rows": rows,
            "info": {"arrays": n, "array_shape": (side, side), "lr": LR},
            "agreement": {"max_rel_diff": worst, "rtol": RTOL, "ok": worst <= RTOL}}


def table(result: dict) -> str:
    """Markdown: ms per call of each implementation, jnet's ratios, the differences."""
    n, (side, _) = result["info"]["arrays"], result["info"]["array_shape"]
    lines = [f"| muon_torch: Muon vs torch.optim.Muon ({n} x {side}x{side} f32) | ms jnet / "
             "floor / torch (bf16 NS) / torch (f32 NS) | jnet / floor | jnet / torch | jnet / "
             "torch f32 "
             "| max rel diff vs jnet: floor / torch / torch f32 |",
             "|---|---|---|---|---|---|"]
    for label, row in (("one update", result["rows"]["update"]),
                       ("Newton-Schulz alone", result["rows"]["newton_schulz"])):
        t = {name: row["impls"][name]["median_s"] for name in IMPLS}
        d = row["max_rel_diff"]
        lines.append(
            f"| {label} | {' / '.join(f'{t[i] * 1e3:.1f}' for i in IMPLS)} | "
            f"**{t['jnet'] / t['floor']:.2f}** | **{t['jnet'] / t['torch']:.2f}** | "
            f"**{t['jnet'] / t['torch f32']:.2f}** | "
            f"{' / '.join(f'{d[i]:.0e}' for i in IMPLS[1:])} |")
    return "\n".join(lines)
