"""The benchmark's language-model rows (`scripts/bench.py --only gpt`): jnet's GPT, the
hand-written JAX floor and the PyTorch GPT built from the same weights compute the same first
loss, and greedy decoding with jnet's key / value cache emits the tokens a torch cache loop
over the same weights emits. Correctness only; timings are the benchmark's business."""

import importlib.util
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from _xla_flags import default_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "scripts", "bench.py")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_script_gpt", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # puts scripts/ on sys.path: `bench.lm` imports
    return module


def _first_loss(impl, w):
    _, loss = jax.jit(impl.make_step())(impl.init_carry(), w.batches[0], w.keys[0])
    return float(loss)


@pytest.fixture(scope="module")
def gpt(bench):
    """The quick gpt workload and jnet's first loss."""
    from bench import lm

    w = lm.gpt_workload(2, quick=True)
    assert w.info["tokens_per_step"] == lm.QUICK.batch * lm.QUICK.context
    loss = _first_loss(w.impls["jnet"], w)
    # random ids under a near-uniform tied head: the first loss is about log(vocab)
    assert abs(loss - np.log(98)) < 0.5
    return w, loss


def test_quick_gpt_first_loss_agrees_with_the_floor(gpt):
    w, jnet_loss = gpt
    np.testing.assert_allclose(_first_loss(w.impls["floor"], w), jnet_loss, rtol=2e-5)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_quick_gpt_first_loss_agrees_with_torch(gpt):
    w, jnet_loss = gpt
    step = w.torch(False).step_fn()
    np.testing.assert_allclose(float(step(0)), jnet_loss, rtol=2e-5)


def test_quick_decode_tokens_agree_with_torch_cache_loop(bench):
    from bench import lm

    row = lm.decode_row(True, 1, bench.CompileMeter(), lambda msg: None)
    tokens = row["tokens"]
    assert len(tokens) == lm.QUICK.context and tokens[:4] == [70, 71, 72, 2]  # "def " forced
    assert row["impls"]["jnet"]["tokens_per_s"] > 0 and row["impls"]["jnet"]["compile_s"] > 0
    if importlib.util.find_spec("torch") is not None:
        agree = row["agreement_torch"]
        assert agree["tokens_equal"] and agree["first_logits_max_abs_diff"] <= 1e-4, agree
        assert agree["ok"] and row["impls"]["torch"]["tokens_per_s"] > 0


@pytest.mark.slow
def test_quick_bench_run_prints_the_lm_tables(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, BENCH, "--quick", "--only", "gpt", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env=default_env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["name"] == "gpt" and row["agreement"]["ok"]
    assert row["impls"]["jnet"]["compile_s"] > 0 and row["impls"]["floor"]["compile_s"] > 0
    assert row["decode"]["impls"]["jnet"]["tokens_per_s"] > 0
    assert "| gpt |" in proc.stdout and "tokens/s jnet / floor / torch" in proc.stdout
    assert "| gpt decode (16 tokens) |" in proc.stdout
