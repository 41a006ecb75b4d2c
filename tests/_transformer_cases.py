"""PyTorch numbers for the transformer-era layers, and the float64 parity check.

Two sources: the committed ``tests/fixtures/tf_<case>.npz``, always checked, and fresh draws
of ``scripts/make_transformer_fixtures.py`` when torch is importable (see that script for what
a case holds). `assert_parity` runs the jnet layer in float64 and compares the output and the
gradients of ``sum(w * y)`` with respect to the input and every parameter to 1e-10.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-10


def _split(arrays: dict) -> dict:
    case = {k: v for k, v in arrays.items() if "/" not in k}
    for group in ("sd", "grad_sd"):
        case[group] = {k.removeprefix(group + "/"): v for k, v in arrays.items()
                       if k.startswith(group + "/")}
    return case


def fixture_case(name: str) -> dict:
    """The committed case ``tests/fixtures/tf_<name>.npz``."""
    with np.load(ROOT / "tests" / "fixtures" / f"tf_{name}.npz") as f:
        return _split({k: f[k] for k in f.files})


def live_case(name: str, seed: int) -> dict:
    """A fresh case drawn by torch (skips the test when torch is not installed)."""
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location(
        "make_transformer_fixtures", ROOT / "scripts" / "make_transformer_fixtures.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return _split(script.run_case(script.make_cases(seed)[name], seed))


def assert_parity(case: dict, layer, convert: Callable[[dict], dict], **kwargs) -> None:
    """jnet's float64 output and gradients equal PyTorch's to `TOL` (real steps only when the
    case has a mask). `convert` maps a state dict (weights or their gradients) to params."""
    with jax.enable_x64(True):
        params = jax.tree.map(jnp.asarray, convert(case["sd"]))
        x, w = jnp.asarray(case["x"]), jnp.asarray(case["w"])
        mask = jnp.asarray(case["mask"]) if "mask" in case else None

        def loss(p, x):
            y, _ = layer.apply(p, {}, x, mask=mask, **kwargs)
            return jnp.sum(w * y), y

        (_, y), (g_params, g_x) = jax.value_and_grad(loss, (0, 1), has_aux=True)(params, x)
        assert y.dtype == jnp.float64
        real = np.ones(y.shape[:2], bool) if mask is None else np.asarray(mask)
        np.testing.assert_allclose(np.asarray(y)[real], case["y"][real], rtol=TOL, atol=TOL)
        np.testing.assert_allclose(g_x, case["grad_x"], rtol=TOL, atol=TOL)
        want = convert(case["grad_sd"])
        assert jax.tree.structure(g_params) == jax.tree.structure(want)
        for (path, got), ref in zip(jax.tree_util.tree_leaves_with_path(g_params),
                                    jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(got, ref, rtol=TOL, atol=TOL,
                                       err_msg=jax.tree_util.keystr(path))
