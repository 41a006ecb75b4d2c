"""`scripts/bench.py --quick` keeps working: jnet and the hand-written floors do the same work.

Correctness only (losses agree, one compilation per step function, JSON complete); timings are
measured by the benchmark itself, never asserted in tests.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from _xla_flags import default_env

import jnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "scripts", "bench.py")


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_script", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def _run_quick(tmp_path, only=None):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, BENCH, "--quick",
           "--json", str(out)] + (["--only", only] if only else [])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=default_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc.stdout, json.loads(out.read_text())


def _check(stdout, report, expected):
    assert {r["name"] for r in report["results"]} == expected
    for r in report["results"]:
        if r["kind"] == "muon_torch":  # its own table: jnet, floor and torch agree
            assert r["agreement"]["ok"], r["agreement"]
            continue
        if r["kind"] == "missing":  # a workload whose layer has not landed on this branch
            assert "needs jnet.layers." in r["reason"] and r["reason"] in stdout
            continue
        assert r["agreement"]["ok"], (r["name"], r["agreement"])
        assert len(r["impls"]["jnet"]["checks"]) == 3  # the first 3 steps are compared
        for impl in ("jnet", "floor"):
            m = r["impls"][impl]
            assert m["compiles"] == 1, (r["name"], impl, "recompiled")
            for key in ("compile_s", "step_median_s", "step_min_s", "scan_step_s"):
                assert m[key] > 0
        base = {"compile", "step", "step_min", "loop", "scan"}
        with_torch = r["kind"] == "train" and not r["name"].endswith("bf16")
        if with_torch and _has_torch():  # the torch eager column and its ratios
            assert set(r["ratio"]) == base | {"step_vs_torch", "scan_vs_torch"}
            assert r["agreement_torch"]["ok"], (r["name"], r["agreement_torch"])
            assert r["impls"]["torch"]["step_median_s"] > 0
        else:
            assert set(r["ratio"]) == base
        if r["kind"] == "optim":
            assert r["copy_bandwidth_Bps"] > 0 and r["impls"]["jnet"]["time_vs_copy_limit"] > 0
    for key in ("jax", "jaxlib", "numpy", "cpu", "backend", "devices", "cpus_allowed"):
        assert report["machine"][key]
    assert "xla_flags" in report["machine"] and report["machine"]["peak"]["dot_Fps"] > 0
    for r in report["results"]:
        if r["kind"] == "train":  # XLA's cost analysis counted the step's FLOPs
            assert r["flops_per_step"] > 0, r["name"]
    assert report["command"].startswith("scripts/bench.py") and report["date"]
    for r in report["results"]:
        assert r["name"].removeprefix("update ") in stdout  # the Markdown table lists each


def test_every_optimizer_rule_has_a_floor_and_an_update_workload():
    """`jnet.optim.RULES` is the list of rules: the benchmark must time each against a floor."""
    bench = _bench_module()
    assert set(bench.OPTIMIZERS) == set(jnet.optim.RULES)
    for name, (make_jnet, make_floor, n_state) in bench.OPTIMIZERS.items():
        assert type(make_jnet(jnet.optim)).__name__ == "Optimizer", name
        init, update = make_floor()
        assert callable(init) and callable(update) and n_state in (0, 1, 2)
    names = {build().name for build in bench.workload_builders({"update"}, quick=True)}
    assert names == {f"update {rule}" for rule in jnet.optim.RULES}


@pytest.mark.slow
def test_quick_everything(tmp_path):
    """Every workload (training, recurrent, mixed precision, each update rule) in one
    `--quick` run: the same work as the floor (and torch, when installed), no recompiles."""
    stdout, report = _run_quick(tmp_path)
    names = {r["name"] for r in report["results"]}
    assert {"mlp", "cnn", "cnn_bn_dropout", "lstm", "gru", "cnn_strided", "transformer",
            "cnn1d", "mlp_bf16", "cnn_bf16", "update adam"} <= names
    _check(stdout, report, names)
    (strided,) = [r for r in report["results"] if r["name"] == "cnn_strided"]
    assert strided["fit"]["fit_scan_step_s"] > 0 and strided["fit"]["fit_no_scan_step_s"] > 0
    assert "`jnet.fit` ms/step" in stdout
    assert "| workload |" in stdout and "| update (" in stdout


def test_thread_options_parse_and_exclude_each_other():
    bench = _bench_module()
    args, _ = bench.parse_args(["--both", "--large", "--quick"])
    assert args.both and args.large and not args.single_core
    assert bench.parse_args(["--single-core"])[0].single_core
    with pytest.raises(SystemExit):
        bench.parse_args(["--both", "--single-core"])


def test_both_table_puts_default_and_single_core_side_by_side():
    bench = _bench_module()

    def run(jnet_s, torch_s):
        return {"results": [{"name": "cnn", "impls": {"jnet": {"scan_step_s": jnet_s},
                                                       "torch": {"step_median_s": torch_s}}}]}

    text = bench.both_table(run(0.010, 0.020), run(0.030, 0.015))
    assert "| cnn | 10.00 / 30.00 | 20.00 / 15.00 | 0.50 / 2.00 | – / – |" in text
    busy = run(0.010, 0.020)
    busy["results"][0]["impls"]["jnet"]["scan_cores"] = 1.04
    busy["results"][0]["impls"]["torch"]["loop_cores"] = 1.96
    assert "| 0.50 / 2.00 | 1.0 / 2.0 |" in bench.both_table(busy, run(0.030, 0.015))


def test_bench_gpu_script_dry_run(tmp_path):
    """`bench_gpu.sh OUT --quick` runs bench.py's --large preset end to end on the CPU."""
    out = tmp_path / "gpu.json"
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "bench_gpu.sh"), str(out),
                           "--quick", "--only", "update_sgd"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=default_env() | {"PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["config"]["large"] and report["config"]["quick"]
    _check(proc.stdout, report, {"update sgd"})
