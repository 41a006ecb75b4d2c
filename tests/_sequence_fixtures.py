"""PyTorch numbers for the sequence layers (LayerNorm, Embedding, MultiHeadAttention).

Two sources, as in test_interop.py: the committed ``tests/fixtures/seq_<case>.npz``, always
checked, and fresh cases drawn by ``scripts/make_torch_fixtures.py`` when torch is importable.
Each case is a dict of NumPy arrays: ``sd`` (the state dict), ``x``, ``y`` (PyTorch's output)
and, for attention, ``mask`` (jnet's convention: True on real steps), ``num_heads``, ``causal``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def fixture_case(name: str) -> dict:
    """The committed case ``tests/fixtures/seq_<name>.npz``."""
    with np.load(ROOT / "tests" / "fixtures" / f"seq_{name}.npz") as f:
        case = {k: f[k] for k in f.files if not k.startswith("sd/")}
        case["sd"] = {k.removeprefix("sd/"): f[k] for k in f.files if k.startswith("sd/")}
    return case


def live_case(name: str, seed: int) -> dict:
    """A fresh case drawn by torch (skips the test when torch is not installed)."""
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location(
        "make_torch_fixtures", ROOT / "scripts" / "make_torch_fixtures.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    case = script.make_sequence_cases(seed)[name]
    out = script.sequence_outputs(case)
    arrays = {k: np.asarray(v) for k, v in case.items() if k != "module"}
    sd = {k: v.detach().numpy() for k, v in case["module"].state_dict().items()}
    return {**arrays, **out, "sd": sd}
