"""`scripts/bench.py --quick` keeps working: jnet and the hand-written floors do the same work.

Correctness only (losses agree, one compilation per step function, JSON complete); timings are
measured by the benchmark itself, never asserted in tests.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_quick(tmp_path, only=None):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "bench.py"), "--quick",
           "--json", str(out)] + (["--only", only] if only else [])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout, json.loads(out.read_text())


def _check(stdout, report, expected):
    assert {r["name"] for r in report["results"]} == expected
    for r in report["results"]:
        assert r["agreement"]["ok"], (r["name"], r["agreement"])
        assert len(r["impls"]["jnet"]["checks"]) == 3  # the first 3 steps are compared
        for impl in ("jnet", "floor"):
            m = r["impls"][impl]
            assert m["compiles"] == 1, (r["name"], impl, "recompiled")
            for key in ("compile_s", "step_median_s", "step_min_s", "scan_step_s"):
                assert m[key] > 0
        assert set(r["ratio"]) == {"compile", "step", "step_min", "loop", "scan"}
        if r["kind"] == "optim":
            assert r["copy_bandwidth_Bps"] > 0 and r["impls"]["jnet"]["time_vs_copy_limit"] > 0
    for key in ("jax", "jaxlib", "numpy", "cpu", "backend"):
        assert report["machine"][key]
    assert report["command"].startswith("scripts/bench.py") and report["date"]
    for r in report["results"]:
        assert r["name"].removeprefix("update ") in stdout  # the Markdown table lists each


def test_quick_subset(tmp_path):
    """A training workload with Adam, a recurrent one, mixed precision and one update rule."""
    stdout, report = _run_quick(tmp_path, "mlp,gru,mlp_bf16,update_nesterov")
    _check(stdout, report, {"mlp", "gru", "mlp_bf16", "update nesterov"})
    assert "| workload |" in stdout and "| update (" in stdout


@pytest.mark.slow
def test_quick_everything(tmp_path):
    stdout, report = _run_quick(tmp_path)
    names = {r["name"] for r in report["results"]}
    assert {"mlp", "cnn", "cnn_bn_dropout", "lstm", "gru", "mlp_bf16", "cnn_bf16",
            "update adam"} <= names
    _check(stdout, report, names)
