"""The `muon_torch` benchmark table times the same maths in jnet, the floor and torch.optim.Muon:
their first updates and Newton-Schulz outputs agree (float32 iteration to 1e-4; torch's shipped
bfloat16 iteration only to bfloat16 precision). Timings are never asserted."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from bench import muon_torch


def test_jnet_floor_and_torch_muon_agree_on_the_quick_matrices():
    result = muon_torch.run(quick=True, rounds=1, steps=1, log=lambda msg: None)
    assert result["agreement"]["ok"], result["agreement"]
    for name, row in result["rows"].items():
        diffs = row["max_rel_diff"]
        assert diffs["floor"] <= 1e-4 and diffs["torch f32"] <= 1e-4, (name, diffs)
        # bfloat16 has 8 mantissa bits: differences of ~1e-2, not of a different rule (~1)
        assert 1e-4 < diffs["torch"] < 5e-2, (name, diffs)
        assert all(t["median_s"] > 0 for t in row["impls"].values())
    table = muon_torch.table(result)
    assert "one update" in table and "Newton-Schulz alone" in table
