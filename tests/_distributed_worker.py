"""Runs in a subprocess for tests/test_distributed.py: jax must see several devices (8 virtual
CPU devices, or 2 processes x 2) from its start, which the pytest process cannot arrange.

    python tests/_distributed_worker.py devices OUT.json    # one process, 8 devices
    python scripts/launch.py -n 2 --devices-per-process 2 -- \\
        python tests/_distributed_worker.py processes OUTDIR  # one file per process

Writes JSON: parameters (as nested lists) and facts about shardings and errors; the test
process compares them. The reference run uses only `jax.jit` on one device, never
jnet.distributed.
"""

from __future__ import annotations

import json
import os
import sys

import jax

MODE, OUT = sys.argv[1], sys.argv[2]
if MODE == "devices":
    jax.config.update("jax_num_cpu_devices", 8)
else:
    from jnet import distributed as _d

    _d.initialize()  # from the JNET_* variables scripts/launch.py sets

import numpy as np  # noqa: E402

import jnet  # noqa: E402
from jnet import distributed as dist  # noqa: E402
from jnet import layers as L  # noqa: E402

STEPS, BATCH = 4, 16
FIT = dict(epochs=2, batch_size=BATCH, key=jax.random.key(0), verbose=0)


def problem():
    """A model with BatchNorm and Dropout (batch-global statistics and per-example masks), data,
    initial params / state and the per-step keys."""
    model = L.serial(L.Input((6,)), L.Dense(32), L.ReLU(), L.BatchNorm(), L.Dropout(0.25),
                     L.Dense(3), L.ClassificationOutput())
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * BATCH, 6)).astype(np.float32)
    y = rng.integers(0, 3, STEPS * BATCH).astype(np.int32)
    _, params, state = model.init(jax.random.key(1))
    keys = [jax.random.key(100 + s) for s in range(STEPS)]
    return model, x, y, params, state, keys


def tolist(tree):
    return jax.tree.map(lambda a: np.asarray(a).tolist(), dist.gather(tree))


def single_device():
    """Reference: the plain jitted step on the default device, the global batch whole."""
    model, x, y, params, state, keys = problem()
    opt = jnet.optim.adam(1e-2)
    step = jax.jit(jnet.make_train_step(model, opt))
    carry = (params, state, opt.init(params))
    for s in range(STEPS):
        rows = slice(s * BATCH, (s + 1) * BATCH)
        *carry, _ = step(*carry, (x[rows], y[rows]), keys[s])
    return carry


def sharded(plan, rows_of_process=lambda rows: rows):
    """The same run with jnet.distributed: each process feeds its own rows of each batch."""
    model, x, y, params, state, keys = problem()
    opt = jnet.optim.adam(1e-2)
    step = dist.shard_train_step(jnet.make_train_step(model, opt), plan)
    carry = dist.place((params, state, opt.init(params)), plan)
    for s in range(STEPS):
        rows = rows_of_process(np.arange(s * BATCH, (s + 1) * BATCH))
        batch = dist.shard_batch((x[rows], y[rows]), plan)
        *carry, _ = step(*carry, batch, keys[s])
    return carry, batch


def error(fn) -> str:
    try:
        fn()
    except (ValueError, TypeError) as e:
        bases = "/".join(b.__name__ for b in (jnet.Error, ValueError, TypeError)
                         if isinstance(e, b))
        return f"{bases}: {e}"
    return "no error"


def run_devices() -> dict:
    model, x, y, params, state, keys = problem()
    ref = single_device()
    dp, batch = sharded(dist.data_parallel())
    fs, _ = sharded(dist.fsdp())
    out = {
        "n_devices": len(jax.devices()),
        "init": tolist((params, state)),
        "ref": tolist(ref[:2]), "dp": tolist(dp[:2]), "fsdp": tolist(fs[:2]),
        "dp_specs": dist.describe(dp[0]), "fsdp_specs": dist.describe(fs[0]),
        "fsdp_opt_specs": dist.describe(fs[2]),
        "batch_spec": str(batch[0].sharding.spec),
        "batch_shard_shapes": sorted({s.data.shape for s in batch[0].addressable_shards}),
        "fsdp_w_shard_shapes": sorted({s.data.shape for s in fs[0]["dense_1"]["w"]
                                       .addressable_shards}),
        "bytes_dp": dist.bytes_per_device(dp), "bytes_fsdp": dist.bytes_per_device(fs),
    }
    # jnet.fit with one argument, against plain jnet.fit (scan and per-step paths)
    fit_ref = jnet.fit(model, jnet.optim.adam(1e-2), x, y, **FIT)
    out["fit_ref"] = tolist(fit_ref.params)
    out["fit_dp"] = tolist(jnet.fit(model, jnet.optim.adam(1e-2), x, y,
                                    mesh=dist.make_mesh(), **FIT).params)
    fit_fsdp = jnet.fit(model, jnet.optim.adam(1e-2), x, y, mesh=dist.fsdp(),
                        options=jnet.training.Options(scan=False), **FIT)
    out["fit_fsdp"] = tolist(fit_fsdp.params)
    out["fit_fsdp_specs"] = dist.describe(fit_fsdp.params)
    ckpt_dir = os.path.join(os.path.dirname(OUT), "fit_ckpt")
    resume_kw = dict(FIT, mesh=dist.fsdp(), options=jnet.training.Options(scan=False))
    jnet.fit(model, jnet.optim.adam(1e-2), x, y, **dict(resume_kw, epochs=1),
             callbacks=[jnet.callbacks.Checkpoint(ckpt_dir)])
    out["fit_resumed"] = tolist(jnet.fit(
        model, jnet.optim.adam(1e-2), x, y,
        callbacks=[jnet.callbacks.Checkpoint(ckpt_dir, resume=True)], **resume_kw).params)
    out["fit_loss"] = [fit_ref.history["loss"], fit_fsdp.history["loss"]]
    # checkpoint of sharded arrays: restore into the FSDP layout and into a replicated one
    path = os.path.join(os.path.dirname(OUT), "sharded.safetensors")
    tree = {"params": fs[0], "opt_state": fs[2], "key": jax.random.key(7)}
    dist.save(path, tree)
    back = dist.restore(path, like=tree)
    out["restored"] = tolist(back["params"])
    out["restored_specs"] = dist.describe(back["params"])
    saved, loaded = (jax.tree.leaves(dist.gather(t)) for t in (fs[2], back["opt_state"]))
    out["restored_opt_equal"] = len(saved) == len(loaded) and all(
        np.array_equal(a, b) for a, b in zip(saved, loaded, strict=True))
    out["restored_key"] = np.asarray(jax.random.key_data(back["key"])).tolist()
    replicated = dist.restore(path, like=tree, plan=dist.data_parallel())
    out["replicated_specs"] = dist.describe(replicated["params"])
    # bad configurations
    plan = dist.data_parallel()
    step = dist.shard_train_step(jnet.make_train_step(model, jnet.optim.sgd(0.1)), plan)
    placed = dist.place((params, state, jnet.optim.sgd(0.1).init(params)), plan)
    out["errors"] = {
        "shard_batch": error(lambda: dist.shard_batch((x[:12], y[:12]), plan)),
        "step": error(lambda: step(*placed, (x[:12], y[:12]), keys[0])),
        "fit": error(lambda: jnet.fit(model, jnet.optim.sgd(0.1), x, y, epochs=1,
                                      batch_size=12, key=keys[0], verbose=0, mesh=plan)),
        "batch_axis": error(lambda: dist.as_plan(dist.Plan(dist.make_mesh(), batch_axis="b"))),
        "param_axis": error(lambda: dist.as_plan(dist.make_mesh(), param_axis="model")),
        "mesh_type": error(lambda: dist.as_plan(jax.devices())),
        "too_many": error(lambda: dist.make_mesh(9)),
    }
    return out


def run_processes() -> dict:
    """One of several processes: each feeds its contiguous share of every global batch."""
    pid, count = jax.process_index(), jax.process_count()
    plan = dist.data_parallel()
    share = lambda rows: np.array_split(rows, count)[pid]  # noqa: E731
    dp, batch = sharded(plan, share)
    fs, _ = sharded(dist.fsdp(), share)
    path = os.path.join(OUT, "ckpt.safetensors")
    dist.save(path, {"params": fs[0]})
    back = dist.restore(path, like={"params": fs[0]})
    model, x, y, *_ = problem()  # fit: every process passes the whole data set
    fitted = jnet.fit(model, jnet.optim.adam(1e-2), x, y, mesh=dist.fsdp(), **FIT)
    # checkpoints of a multi-process fit: process 0 writes, everyone waits; resume restores
    # each process's shards and continues exactly
    ckpt_dir = os.path.join(OUT, "fit_ckpt")
    jnet.fit(model, jnet.optim.adam(1e-2), x, y, mesh=dist.fsdp(),
             callbacks=[jnet.callbacks.Checkpoint(ckpt_dir)], **{**FIT, "epochs": 1})
    resumed = jnet.fit(model, jnet.optim.adam(1e-2), x, y, mesh=dist.fsdp(),
                       callbacks=[jnet.callbacks.Checkpoint(ckpt_dir, resume=True)], **FIT)
    return {
        "fit": tolist(fitted.params),
        "process": pid, "processes": count, "devices": len(jax.devices()),
        "local_devices": len(jax.local_devices()),
        "batch_addressable_rows": sum(s.data.shape[0] for s in batch[0].addressable_shards),
        "batch_shape": list(batch[0].shape),
        "dp": tolist(dp[:2]), "fsdp": tolist(fs[:2]),
        "fsdp_specs": dist.describe(fs[0]), "restored": tolist(back["params"]),
        "resumed": tolist(resumed.params), "resumed_epoch": resumed.epoch,
        "checkpoint_files": sorted(os.listdir(ckpt_dir)),
    }


if __name__ == "__main__":
    result = run_devices() if MODE == "devices" else run_processes()
    target = OUT if MODE == "devices" else os.path.join(OUT, f"process_{jax.process_index()}.json")
    with open(target, "w") as f:
        json.dump(result, f)
