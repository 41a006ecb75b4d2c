"""`scripts/bench/pair_ab.py`, the interleaved jnet / floor timing of one bench workload: it runs,
and XLA compiles jnet's GPT and transformer training steps to the same memory traffic as the
hand-written floors' (the floors pay for `Embedding`'s NaN-row guard too), so a jnet / floor
time ratio away from 1 on these rows is measurement noise, not extra work in jnet."""

import os
import re
import sys

import jax
import numpy as np
import pytest

from jnet import layers as L

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from bench import floors, pair_ab  # noqa: E402


@pytest.mark.parametrize("workload", ["gpt", "transformer"])
def test_jnet_step_moves_the_bytes_the_floor_moves(workload, capsys):
    assert pair_ab.main([workload, "--quick", "--pairs", "2", "--scan-pairs", "0", "--hlo"]) == 0
    out = capsys.readouterr().out
    mb = {side: float(m) for side, m in
          re.findall(r"(jnet|floor) step: bytes accessed ([\d.]+) MB", out)}
    assert set(mb) == {"jnet", "floor"}, out
    assert abs(mb["jnet"] / mb["floor"] - 1) < 1e-3, out
    assert "per-pair ratio median" in out and "(A/A)" in out


def test_rejects_an_update_workload():
    with pytest.raises(SystemExit, match=r"optim_ab\.py"):
        pair_ab.main(["update_sgd", "--quick"])


def test_floor_lookup_is_embeddings_lookup_nan_rows_included():
    """The floors' guarded lookup against NumPy indexing, in float64: real rows exactly, a NaN
    row for each id outside [0, V) (negative ones too), as jnet's `Embedding` gives under
    `jax.jit` (eager calls raise instead)."""
    rng = np.random.default_rng(0)
    table = rng.standard_normal((7, 3))
    ids = np.array([[0, 6, 3, 7], [-1, 2, 100, 5]], np.int32)
    valid = (ids >= 0) & (ids < 7)
    expected = np.where(valid[..., None], table[np.clip(ids, 0, 6)], np.nan)
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(floors.lookup)(table, ids))
        emb, _ = jax.jit(L.Embedding(7, 3).apply)({"embedding": table}, {}, ids)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(np.asarray(emb), expected)
