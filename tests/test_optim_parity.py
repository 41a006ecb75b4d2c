"""The 2026 rules against independent implementations: float64 trajectories over 200 updates
agree to 1e-10 with torch.optim (RAdam, Adafactor, Rprop, Muon), the `schedulefree` package
(AdamW / SGD, their evaluation weights too) and optax (LAMB, LARS): live where the library is
installed, and always against the committed fixtures written by
scripts/make_optim_fixtures.py from those libraries."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnet import optim

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("make_optim_fixtures",
                                               ROOT / "scripts" / "make_optim_fixtures.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)

ATOL = 1e-10

JNET = {
    "radam": lambda: optim.radam(0.01),
    "adafactor": lambda: optim.adafactor(0.01, weight_decay=0.01),
    "rprop": lambda: optim.rprop(0.01),
    "muon": lambda: optim.muon(0.02),
    "schedule_free_adamw": lambda: optim.schedule_free_adamw(0.01, weight_decay=0.01,
                                                             warmup_steps=10),
    "schedule_free_sgd": lambda: optim.schedule_free_sgd(0.05, weight_decay=0.01,
                                                         warmup_steps=10),
    "lamb": lambda: optim.lamb(0.01, weight_decay=0.01),
    "lars": lambda: optim.lars(0.5, weight_decay=1e-3),
    "lars_nesterov": lambda: optim.lars(0.5, nesterov=True),
}
LIBRARY = {"radam": "torch", "adafactor": "torch", "rprop": "torch", "muon": "torch",
           "schedule_free_adamw": "schedulefree", "schedule_free_sgd": "schedulefree",
           "lamb": "optax", "lars": "optax", "lars_nesterov": "optax"}


def run_jnet(case: str) -> dict[str, np.ndarray]:
    """jnet's float64 trajectory on the fixtures' problem, recorded as the fixtures are."""
    prob = fixtures.problem()
    opt = JNET[case]()
    out: dict[str, list] = {}
    with jax.enable_x64(True):
        params = {k: jnp.asarray(v) for k, v in prob["init"].items()}
        state = opt.init(params)
        update = jax.jit(opt.update)
        for t in range(1, fixtures.STEPS + 1):
            grads = fixtures.gradient(prob, {k: np.asarray(v) for k, v in params.items()}, t)
            params, state = update({k: jnp.asarray(g) for k, g in grads.items()}, state, params)
            if t in fixtures.RECORD:
                for k in fixtures.KEYS:
                    out.setdefault(f"traj/{k}", []).append(np.asarray(params[k]))
                if case.startswith("schedule_free"):
                    x = optim.schedule_free_eval_params(params, state)
                    for k in fixtures.KEYS:
                        out.setdefault(f"eval/{k}", []).append(np.asarray(x[k]))
    assert all(v.dtype == np.float64 for v in jax.tree.leaves(out))
    return {name: np.stack(v) for name, v in out.items()}


def compare(got: dict, want: dict, case: str) -> None:
    assert set(got) == {k for k in want if not k.startswith("init/")}, case
    for name, value in got.items():
        np.testing.assert_allclose(value, want[name], rtol=0, atol=ATOL, err_msg=f"{case} {name}")
    # The trajectory moved: a no-op optimizer cannot pass.
    first, last = got["traj/w1"][0], got["traj/w1"][-1]
    assert np.max(np.abs(last - first)) > 1e-2, case


@pytest.fixture(scope="module")
def trajectories():
    return {case: run_jnet(case) for case in JNET}


@pytest.mark.parametrize("case", list(JNET))
def test_matches_committed_fixture(case, trajectories):
    with np.load(ROOT / "tests" / "fixtures" / f"optim_{case}.npz") as data:
        want = dict(data)
    for k, v in fixtures.problem()["init"].items():
        np.testing.assert_array_equal(want[f"init/{k}"], v)  # the problem has not drifted
    compare(trajectories[case], want, case)


@pytest.mark.parametrize("case", list(JNET))
def test_matches_library_live(case, trajectories):
    pytest.importorskip(LIBRARY[case])
    compare(trajectories[case], fixtures.reference(case), case)
