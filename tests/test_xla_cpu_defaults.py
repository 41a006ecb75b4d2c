"""`import jnet` moves 2-D convolutions off XLA:CPU's single-threaded YNNPACK kernels
(`jnet/_xla_cpu.py`) only when it safely can: before jax's CPU client starts, never over the
user's own setting, only on a measured jaxlib, and not with the opt-out."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _xla_flags import default_env

from jnet import _xla_cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = _xla_cpu.THREADED_CONVOLUTIONS


@pytest.fixture
def fresh_tested_process(monkeypatch):
    """As if jax had not started and the installed jaxlib were a tested one."""
    monkeypatch.setattr(_xla_cpu, "_backend_started", lambda: False)
    monkeypatch.setattr(_xla_cpu, "_jaxlib_version", lambda: _xla_cpu.TESTED_JAXLIB[0])


def test_adds_the_flag_after_the_users_flags(fresh_tested_process):
    env = {"XLA_FLAGS": "--xla_dump_to=/tmp/d"}
    assert _xla_cpu.apply_defaults(env) == (FLAG,)
    assert env["XLA_FLAGS"] == f"--xla_dump_to=/tmp/d {FLAG}"
    empty: dict[str, str] = {}
    assert _xla_cpu.apply_defaults(empty) == (FLAG,) and empty["XLA_FLAGS"] == FLAG


@pytest.mark.parametrize("env", [
    {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=individual_dot"},  # the user's own
    {"JNET_XLA_CPU_DEFAULTS": "0"},  # the opt-out
], ids=["user-setting", "opt-out"])
def test_leaves_the_environment_alone(fresh_tested_process, env):
    before = dict(env)
    assert _xla_cpu.apply_defaults(env) == ()
    assert env == before


def test_not_after_jax_started_nor_on_an_untested_jaxlib(monkeypatch):
    monkeypatch.setattr(_xla_cpu, "_jaxlib_version", lambda: _xla_cpu.TESTED_JAXLIB[0])
    monkeypatch.setattr(_xla_cpu, "_backend_started", lambda: True)
    env: dict[str, str] = {}
    assert _xla_cpu.apply_defaults(env) == () and env == {}
    monkeypatch.setattr(_xla_cpu, "_backend_started", lambda: False)
    for version in ((0, 9), _xla_cpu.TESTED_JAXLIB[1], (1, 0)):
        monkeypatch.setattr(_xla_cpu, "_jaxlib_version", lambda v=version: v)
        assert _xla_cpu.apply_defaults(env) == () and env == {}


PROBE = """
import json, sys
if sys.argv[1] == "jax-first":
    import jax.numpy as jnp
    jnp.zeros(1)  # starts jax's CPU client before jnet is imported
import jax, jnet, numpy as np
x = jax.random.normal(jax.random.key(0), (4, 9, 9, 32))
w = jax.random.normal(jax.random.key(1), (3, 3, 32, 64))
conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
    x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
text = conv.lower(x, w).compile().as_text()
print(json.dumps({"added": list(jnet.xla_cpu_flags), "ynn_conv": "ynn_fusion" in text,
                  "y": np.asarray(conv(x, w), np.float64).ravel()[:64].tolist()}))
"""


def _probe(order: str, **env) -> dict:
    # XLA_FLAGS empty: this process's own import of jnet has added the flag to its environment
    proc = subprocess.run([sys.executable, "-c", PROBE, order], cwd=ROOT, text=True,
                          capture_output=True, timeout=300,
                          env=default_env() | {"XLA_FLAGS": ""} | env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_import_jnet_moves_convolutions_off_ynnpack_same_values():
    first = _probe("jnet-first", JNET_XLA_CPU_DEFAULTS="1")
    late = _probe("jax-first", JNET_XLA_CPU_DEFAULTS="1")
    opted_out = _probe("jnet-first", JNET_XLA_CPU_DEFAULTS="0")
    assert late["added"] == [] and opted_out["added"] == []
    tested = _xla_cpu.TESTED_JAXLIB[0] <= _xla_cpu._jaxlib_version() < _xla_cpu.TESTED_JAXLIB[1]
    assert first["added"] == ([FLAG] if tested else [])
    if tested:  # the flag reached XLA: the convolution compiled without YNNPACK
        assert not first["ynn_conv"] and late["ynn_conv"] and opted_out["ynn_conv"]
    # either kernel computes the same convolution (float32 sums of 288 products)
    import numpy as np
    np.testing.assert_allclose(first["y"], opted_out["y"], rtol=1e-5, atol=1e-4)
