"""jnet.distributed: data parallelism, FSDP-style sharding, sharded checkpoints, two processes.

Several devices on CPU exist only if jax is told so before it starts, so the training runs
happen in subprocesses (`tests/_distributed_worker.py`: one process with 8 virtual devices, and
two processes x 2 devices started by `scripts/launch.py`); each writes JSON and the tests here
compare. The reference is plain `jax.jit(make_train_step(...))` on one device, and plain
`jnet.fit` without a mesh.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jnet import distributed as dist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "_distributed_worker.py")
LAUNCH = os.path.join(ROOT, "scripts", "launch.py")
# Reductions over a sharded batch run in another order: equal up to float32 rounding, which
# four Adam steps amplify little (|Δθ| <= lr per step).
TOL = dict(rtol=1e-5, atol=2e-6)


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get(
        "PYTHONPATH")])), XLA_FLAGS="")


def _run(cmd: list[str], timeout: float) -> None:
    try:
        proc = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s:\n{e.stdout}\n{e.stderr}")
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n" \
                                 f"{proc.stderr[-4000:]}"


@pytest.fixture(scope="module")
def devices(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("devices") / "out.json"
    _run([sys.executable, WORKER, "devices", str(out)], timeout=400)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def processes(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("processes")
    _run([sys.executable, LAUNCH, "-n", "2", "--devices-per-process", "2", "--timeout", "300",
          "--", sys.executable, WORKER, "processes", str(out)], timeout=330)
    return [json.loads((out / f"process_{i}.json").read_text()) for i in range(2)]


def _close(a, b, **tol) -> None:
    flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert flat_a, "compared empty trees"
    for x, y in zip(flat_a, flat_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **(tol or TOL))


# ---------------------------------------------------------------------------------------------
# One process, 8 devices


def test_data_parallel_equals_single_device(devices):
    assert devices["n_devices"] == 8
    _close(devices["dp"], devices["ref"])  # params AND BatchNorm running statistics


def test_fsdp_equals_single_device(devices):
    _close(devices["fsdp"], devices["ref"])


def test_training_moved_the_parameters(devices):
    # guards the equality tests above against runs that changed nothing
    for init, trained in zip(jax.tree.leaves(devices["init"][0]),
                             jax.tree.leaves(devices["ref"][0]), strict=True):
        assert np.max(np.abs(np.asarray(init) - np.asarray(trained))) > 1e-4
    mean = np.asarray(devices["ref"][1]["batch_norm_3"]["mean"])
    assert np.max(np.abs(mean)) > 1e-3  # running statistics were updated from zero


def test_batches_are_split_over_devices(devices):
    assert devices["batch_spec"] == "P('data', None)"
    assert devices["batch_shard_shapes"] == [[2, 6]]  # 16 examples / 8 devices


def test_data_parallel_replicates_params(devices):
    assert all(spec.endswith("P()") for spec in devices["dp_specs"].values())


def test_fsdp_shards_params_and_optimizer_state_by_largest_divisible_dim(devices):
    specs = devices["fsdp_specs"]
    assert specs["['dense_1']['w']"] == "(6, 32) P(None, 'data')"  # 32 divisible, 6 not
    assert specs["['dense_5']['w']"] == "(32, 3) P('data',)"
    assert specs["['dense_5']['b']"] == "(3,) P()"  # nothing divisible: replicated
    assert devices["fsdp_w_shard_shapes"] == [[6, 4]]
    opt = devices["fsdp_opt_specs"]
    assert opt[".inner[0].mu['dense_1']['w']"] == "(6, 32) P(None, 'data')"
    assert opt[".inner[0].nu['dense_5']['w']"] == "(32, 3) P('data',)"
    assert opt[".step"] == "() P()"
    assert devices["bytes_fsdp"] * 4 < devices["bytes_dp"]


def test_fit_with_mesh_equals_fit(devices):
    _close(devices["fit_dp"], devices["fit_ref"])
    _close(devices["fit_fsdp"], devices["fit_ref"])
    np.testing.assert_allclose(*devices["fit_loss"], rtol=1e-5)
    assert devices["fit_fsdp_specs"]["['dense_1']['w']"] == "(6, 32) P(None, 'data')"


def test_fit_with_mesh_resumes_exactly(devices):
    # 1 epoch, checkpoint, resume to 2 epochs == 2 epochs straight, bit for bit
    _close(devices["fit_resumed"], devices["fit_fsdp"], rtol=0, atol=0)


def test_sharded_checkpoint_round_trip(devices):
    _close(devices["restored"], devices["fsdp"][0], rtol=0, atol=0)
    assert devices["restored_specs"] == devices["fsdp_specs"]
    assert devices["restored_opt_equal"] is True
    assert devices["restored_key"] == [0, 7]
    # the same file restores into another layout
    assert all(spec.endswith("P()") for spec in devices["replicated_specs"].values())


@pytest.mark.parametrize("case", ["shard_batch", "step", "fit"])
def test_indivisible_batch_is_a_clear_error(devices, case):
    message = devices["errors"][case]
    assert message.startswith("Error/ValueError")  # a jnet.Error that is also a ValueError
    assert "12 examples" in message and "8 devices" in message and "multiple of 8" in message


@pytest.mark.parametrize("case,words", [
    ("batch_axis", ["'b'", "not an axis", "'data'"]),
    ("param_axis", ["'model'", "not an axis"]),
    ("mesh_type", ["TypeError", "Mesh", "list"]),
    ("too_many", ["9 devices", "has 8", "xla_force_host_platform_device_count"]),
])
def test_bad_mesh_is_a_clear_error(devices, case, words):
    for word in words:
        assert word in devices["errors"][case]


# ---------------------------------------------------------------------------------------------
# Two processes x 2 devices on localhost


def test_two_processes_train_in_step(processes, devices):
    a, b = processes
    assert (a["process"], b["process"], a["processes"]) == (0, 1, 2)
    assert a["devices"] == 4 and a["local_devices"] == 2
    # each process fed and holds half of the global batch of 16
    assert a["batch_shape"] == [16, 6] and a["batch_addressable_rows"] == 8
    assert a["dp"] == b["dp"] and a["fsdp"] == b["fsdp"]  # identical, bit for bit
    _close(a["dp"], devices["ref"])
    _close(a["fsdp"], devices["ref"])
    assert a["fsdp_specs"]["['dense_1']['w']"] == "(6, 32) P(None, 'data')"


def test_two_processes_fit_with_mesh_equals_fit(processes, devices):
    a, b = processes
    assert a["fit"] == b["fit"]
    _close(a["fit"], devices["fit_ref"])


def test_two_processes_checkpoint_round_trip(processes):
    for p in processes:
        _close(p["restored"], p["fsdp"][0], rtol=0, atol=0)


def test_two_processes_fit_checkpoints_and_resumes_exactly(processes):
    """fit(mesh=fsdp, checkpoint_dir=) with 2 processes: one file per epoch (process 0 wrote
    it, no temporary left), and resuming after epoch 1 ends bit-identical to the
    uninterrupted run on both processes."""
    for p in processes:
        assert p["checkpoint_files"] == ["ckpt_000001.safetensors", "ckpt_000002.safetensors"]
        assert p["resumed_epoch"] == 2
        _close(p["resumed"], p["fit"], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# Pure rules (no devices needed)


@pytest.mark.parametrize("shape,n,spec", [
    ((784, 512), 8, ("data", None)),    # the largest divisible dim
    ((300, 512), 8, (None, "data")),    # 300 % 8 != 0
    ((512, 300), 8, ("data", None)),
    ((64, 64), 8, ("data", None)),      # ties: the first
    ((3, 3, 16, 8), 8, (None, None, "data", None)),
    ((10,), 8, ()),                     # not divisible: replicated
    ((), 8, ()),
    ((16, 16), 1, ()),                  # one device: nothing to split
])
def test_param_spec(shape, n, spec):
    assert tuple(dist.param_spec(shape, n)) == spec


def test_launcher_stops_all_processes_when_one_fails(tmp_path):
    code = ("import os, sys, time\n"
            "if os.environ['JNET_PROCESS_ID'] == '1': sys.exit(3)\n"
            "time.sleep(60)\n")
    proc = subprocess.run([sys.executable, LAUNCH, "-n", "2", "--", sys.executable, "-c", code],
                          env=_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3
    assert "stopping the others" in proc.stderr


def test_a_failing_process_ends_the_job_instead_of_hanging(tmp_path):
    # process 1 dies before the collective that process 0 waits in; initialize(fail_fast=True)
    # makes it exit at once, and the launcher then stops process 0
    code = ("from jnet import distributed as dist\n"
            "dist.initialize()\n"
            "import jax, numpy as np\n"
            "plan = dist.data_parallel()\n"
            "if jax.process_index() == 1: raise RuntimeError('boom')\n"
            "x = dist.shard_batch(np.ones((1, 3), np.float32), plan)\n"
            "print(float(jax.jit(lambda a: a.sum())(x)))\n")
    proc = subprocess.run([sys.executable, LAUNCH, "-n", "2", "--devices-per-process", "1",
                           "--timeout", "100", "--", sys.executable, "-c", code],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "RuntimeError: boom" in proc.stdout
    assert "stopping the others" in proc.stderr


@pytest.mark.slow
def test_bench_scale_runs(tmp_path):
    out = tmp_path / "scale.json"
    _run([sys.executable, os.path.join(ROOT, "scripts", "bench_scale.py"), "--devices", "1", "2",
          "--batch", "8", "--width", "8", "--steps", "2", "--repeats", "1", "--json", str(out)],
         timeout=300)
    rows = json.loads(out.read_text())
    assert [r["devices"] for r in rows] == [1, 2]
    assert [r["per_device"] for r in rows] == [8, 4]
    assert all(r["examples_per_s"] > 0 for r in rows)
