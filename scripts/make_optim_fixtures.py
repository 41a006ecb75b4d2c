"""Write the optimizer parity fixtures tests/fixtures/optim_<case>.npz from the reference
implementations (torch.optim, the `schedulefree` package, optax), so that
tests/test_optim_parity.py checks jnet's trajectories without them installed; with them
installed the tests also rerun these references live.

Each case runs 200 float64 updates on one fixed problem: params {"b": (5,), "w1": (4, 3),
"w2": (3, 5)} (jnet's (fan_in, fan_out) layout; PyTorch gets the matrices transposed where
the rule cares), gradients g_t = c ⊙ θ_{t-1} + n_t with fixed curvatures c and noise n_t.
A fixture holds the initial params (``init/<k>``, a check that `problem()` has not changed)
and the params after the updates in RECORD (``traj/<k>``, shape (len(RECORD), ...)); the
schedule-free cases also the evaluation weights x_t (``eval/<k>``). The tests rebuild the
problem with `problem()` (this module imports torch, schedulefree and optax only when a
reference runs).

    python scripts/make_optim_fixtures.py        # rewrites tests/fixtures/optim_*.npz
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
STEPS = 200
RECORD = (1, 2, 5, 10, 50, 100, 200)
KEYS = ("b", "w1", "w2")
MATRICES = ("w1", "w2")


def problem(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """The fixed problem: initial params, curvatures and per-step noise, float64."""
    rng = np.random.default_rng(seed)
    shapes = {"b": (5,), "w1": (4, 3), "w2": (3, 5)}
    init = {k: rng.normal(size=s) for k, s in shapes.items()}
    curv = {k: np.abs(rng.normal(size=s)) + 0.5 for k, s in shapes.items()}
    noise = {k: 0.3 * rng.normal(size=(STEPS, *s)) for k, s in shapes.items()}
    return {"init": init, "curv": curv, "noise": noise}


def gradient(prob: dict, params: dict[str, np.ndarray], t: int) -> dict[str, np.ndarray]:
    """g_t at the params of update t (1-based)."""
    return {k: prob["curv"][k] * params[k] + prob["noise"][k][t - 1] for k in KEYS}


def _torch_float64_muon() -> None:
    """Run torch's Muon Newton-Schulz in the tensor's dtype: its source minus the bfloat16
    cast, so a float64 trajectory can be compared to 1e-10 (the cast is the only change)."""
    import torch.optim._muon as muon_module

    source = inspect.getsource(muon_module._zeropower_via_newtonschulz)
    namespace: dict[str, Any] = {}
    exec(source.replace(".bfloat16()", ""), vars(muon_module), namespace)
    muon_module._zeropower_via_newtonschulz = namespace["_zeropower_via_newtonschulz"]


def run_torch(prob: dict, make: Callable[[dict], Any], transpose: tuple[str, ...] = (),
              schedule_free: bool = False) -> dict[str, np.ndarray]:
    """A torch optimizer's trajectory; `make(tensors)` builds it from the dict of params."""
    import torch

    def to_jnet(k, p):
        x = p.detach().numpy().copy()
        return x.T if k in transpose else x

    tensors = {k: torch.tensor(v.T.copy() if k in transpose else v.copy(), dtype=torch.float64,
                               requires_grad=True) for k, v in prob["init"].items()}
    opt = make(tensors)
    if schedule_free:
        opt.train()
    out: dict[str, list] = {f"{kind}/{k}": [] for k in KEYS for kind in ("traj", "eval")}
    for t in range(1, STEPS + 1):
        grads = gradient(prob, {k: to_jnet(k, p) for k, p in tensors.items()}, t)
        for k, p in tensors.items():
            p.grad = torch.tensor(grads[k].T.copy() if k in transpose else grads[k])
        opt.step()
        if t in RECORD:
            for k, p in tensors.items():
                out[f"traj/{k}"].append(to_jnet(k, p))
            if schedule_free:
                opt.eval()
                for k, p in tensors.items():
                    out[f"eval/{k}"].append(to_jnet(k, p))
                opt.train()
    return {name: np.stack(v) for name, v in out.items() if v}


def run_optax(prob: dict, opt: Any) -> dict[str, np.ndarray]:
    """An optax optimizer's float64 trajectory."""
    import jax
    import optax

    with jax.enable_x64(True):
        params = {k: jax.numpy.asarray(v) for k, v in prob["init"].items()}
        state = opt.init(params)
        out: dict[str, list] = {f"traj/{k}": [] for k in KEYS}
        for t in range(1, STEPS + 1):
            grads = gradient(prob, {k: np.asarray(v) for k, v in params.items()}, t)
            updates, state = opt.update({k: jax.numpy.asarray(g) for k, g in grads.items()},
                                        state, params)
            params = optax.apply_updates(params, updates)
            if t in RECORD:
                for k in KEYS:
                    out[f"traj/{k}"].append(np.asarray(params[k]))
    return {name: np.stack(v) for name, v in out.items()}


def _muon(tensors: dict) -> Any:
    import torch

    _torch_float64_muon()

    class Both:  # torch's Muon takes 2-D params only: AdamW for the bias, as jnet routes it
        def __init__(self):
            self.parts = [torch.optim.Muon([tensors["w1"], tensors["w2"]], lr=0.02),
                          torch.optim.AdamW([tensors["b"]], lr=0.02, weight_decay=0.0)]

        def step(self):
            for part in self.parts:
                part.step()

    return Both()


def _cases() -> dict[str, Callable[[dict], dict[str, np.ndarray]]]:
    """Each case's reference run (imports happen when a case runs)."""
    def torch_optim(name: str, **kw: Any):
        import torch

        return lambda ts: getattr(torch.optim, name)(list(ts.values()), **kw)

    def schedulefree(name: str, **kw: Any):
        import schedulefree as sf

        return lambda ts: getattr(sf, name)(list(ts.values()), **kw)

    def optax_rule(name: str, *args: Any, **kw: Any):
        import optax

        return getattr(optax, name)(*args, **kw)

    return {
        "radam": lambda p: run_torch(p, torch_optim("RAdam", lr=0.01)),
        "adafactor": lambda p: run_torch(p, torch_optim("Adafactor", lr=0.01, weight_decay=0.01),
                                         transpose=MATRICES),
        "rprop": lambda p: run_torch(p, torch_optim("Rprop", lr=0.01)),
        "muon": lambda p: run_torch(p, _muon, transpose=MATRICES),
        "schedule_free_adamw": lambda p: run_torch(
            p, schedulefree("AdamWScheduleFree", lr=0.01, weight_decay=0.01, warmup_steps=10,
                            foreach=False), schedule_free=True),
        "schedule_free_sgd": lambda p: run_torch(
            p, schedulefree("SGDScheduleFree", lr=0.05, weight_decay=0.01, warmup_steps=10,
                            foreach=False), schedule_free=True),
        "lamb": lambda p: run_optax(p, optax_rule("lamb", 0.01, weight_decay=0.01)),
        "lars": lambda p: run_optax(p, optax_rule("lars", 0.5, weight_decay=1e-3)),
        "lars_nesterov": lambda p: run_optax(p, optax_rule("lars", 0.5, nesterov=True)),
    }


CASES = _cases()


def reference(case: str) -> dict[str, np.ndarray]:
    """The reference trajectory of `case` on `problem()`, computed now."""
    return CASES[case](problem())


def main() -> None:
    prob = problem()
    for case, run in CASES.items():
        arrays = {f"init/{k}": v for k, v in prob["init"].items()}
        arrays.update(run(prob))
        np.savez_compressed(OUT / f"optim_{case}.npz", **arrays)
        print(f"wrote optim_{case}.npz")


if __name__ == "__main__":
    main()
