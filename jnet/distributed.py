"""Scale-out on `jax.sharding`: data parallelism, FSDP-style parameter sharding, many processes.

JAX is the distributed engine; this module only decides WHERE arrays live and lets XLA's
partitioner (GSPMD) derive the collectives. No pmap, no hand-written all-reduce.

    plan = jnet.distributed.data_parallel()            # all devices, batch split along "data"
    result = jnet.fit(model, opt, x, y, epochs=5, batch_size=256, key=key, mesh=plan)

    # or a hand-written loop, the same jit-compiled step on every device:
    step = jnet.distributed.shard_train_step(jnet.make_train_step(model, opt), plan)
    params, state, opt_state = jnet.distributed.place((params, state, opt_state), plan)
    batch = jnet.distributed.shard_batch((x_local, y_local), plan)   # this process's share
    params, state, opt_state, logs = step(params, state, opt_state, batch, key)

Data parallelism. Each batch is split along its axis 0 over the mesh axis ``batch_axis``;
parameters, model state and optimizer state are replicated. The step is the single-device step
with sharding constraints on its inputs and outputs, so its maths is unchanged: the loss
Σ w ℓ / Σ w and BatchNorm's batch statistics are means over the WHOLE global batch (XLA inserts
the all-reduces), and dropout masks do not depend on the sharding
(``jax_threefry_partitionable``). Results equal single-device training up to float rounding
(sums are reduced in a different order).

Parameter sharding (ZeRO-3 / FSDP style, ``fsdp(...)`` or ``Plan(param_axis=...)``). Every
array of params, model state and optimizer state is split along ONE dimension over
``param_axis``: its largest dimension whose size the axis divides (the first of equal ones);
arrays with none (scalars, odd sizes) stay replicated. Each device then holds ~1/n of the
parameters and of Adam's moments; XLA all-gathers a weight where a layer needs it whole and
reduce-scatters its gradient. The default puts both on the same axis (classic FSDP).

Many processes. Call `initialize` (a thin wrapper of `jax.distributed.initialize`) first in
every process; `jax.devices()` then lists every process's devices and a mesh over them spans
the job. Each process feeds its own share of each batch (`shard_batch`, built on
`jax.make_array_from_process_local_data`) and runs the same program. `scripts/launch.py` starts
N local processes; on several hosts, run the same command on each with the coordinator's
address.

Checkpoints (`save` / `restore`) use the simplest correct scheme: sharded arrays are gathered,
process 0 writes ONE ordinary `jnet.checkpoint` file, and on restore every process reads it and
puts on each of its devices only that device's shard. It needs a file system every process can
read (or a copy of the file per host) and host memory for the whole model on each host.

How others differ: PyTorch DDP replicates and all-reduces gradients by hooks, FSDP wraps
modules and shards flat parameter groups; Flax/Orbax write one directory per checkpoint with
per-process shard files. Keras 3 `DataParallel` / `ModelParallel` are the same idea on JAX.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jnet import checkpoint as _checkpoint
from jnet.errors import ArgumentError, ArgumentTypeError
from jnet.typing import PyTree

DATA = "data"


class Plan(NamedTuple):
    """Where training arrays live: a mesh, the axis that splits batches, and optionally the
    axis that splits parameters (None: parameters replicated, plain data parallelism)."""

    mesh: Mesh
    batch_axis: str = DATA
    param_axis: str | None = None

    @property
    def size(self) -> int:
        """Devices along the batch axis: every batch size must be a multiple of it."""
        return int(self.mesh.shape[self.batch_axis])


# --------------------------------------------------------------------------------------------
# Meshes and plans


def make_mesh(devices: Sequence[jax.Device] | int | None = None, *,
              axis: str = DATA) -> Mesh:
    """A 1-D mesh named `axis` over `devices` (default: every device of every process; an int
    n takes the first n). Its axis is `Auto`, so models need no sharding annotations."""
    if devices is None:
        devices = jax.devices()
    elif isinstance(devices, int) and not isinstance(devices, bool):
        available = jax.devices()
        if not 1 <= devices <= len(available):
            raise ArgumentError(
                f"jnet.distributed.make_mesh: asked for {devices} devices, this job has "
                f"{len(available)} ({available[0].platform}). On CPU, set "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N before jax starts to get N "
                "virtual devices.")
        devices = available[:devices]
    if isinstance(devices, np.ndarray):  # e.g. from jax.experimental.mesh_utils
        devices = list(devices.flat)
    if not isinstance(devices, Sequence) or isinstance(devices, str) or not all(
            isinstance(d, jax.Device) for d in devices):
        raise ArgumentError(
            f"jnet.distributed.make_mesh: devices must be None (all), an int n (the first n) or "
            f"a list of jax devices (`jax.devices()[:4]`), got {devices!r}.")
    if not devices:
        raise ArgumentError("jnet.distributed.make_mesh: got an empty device list.")
    return Mesh(np.asarray(devices), (axis,), axis_types=(AxisType.Auto,))


def _check_axis(mesh: Mesh, axis: str, role: str) -> None:
    if axis not in mesh.shape:
        raise ArgumentError(
            f"jnet.distributed: the {role} {axis!r} is not an axis of the mesh, whose axes are "
            f"{dict(mesh.shape)}. Build the mesh with that axis name (`make_mesh(axis="
            f"{axis!r})`) or pass {role.replace(' ', '_')}= one of {list(mesh.shape)}.")


def as_plan(mesh: Mesh | Plan, *, batch_axis: str = DATA,
            param_axis: str | None = None) -> Plan:
    """A `Plan` from a `Plan` (checked) or a `Mesh` (with the given axes)."""
    plan = mesh if isinstance(mesh, Plan) else None
    if plan is None:
        if not isinstance(mesh, Mesh):
            raise ArgumentTypeError(
                f"jnet.distributed: expected a jax.sharding.Mesh or a jnet.distributed.Plan, got "
                f"{type(mesh).__name__}. Build one with `jnet.distributed.data_parallel()` or "
                "`make_mesh()`.")
        plan = Plan(mesh, batch_axis, param_axis)
    _check_axis(plan.mesh, plan.batch_axis, "batch axis")
    if plan.param_axis is not None:
        _check_axis(plan.mesh, plan.param_axis, "param axis")
    return plan


def data_parallel(devices: Sequence[jax.Device] | int | None = None) -> Plan:
    """Batches split over `devices` (default all), parameters replicated."""
    return Plan(make_mesh(devices))


def fsdp(devices: Sequence[jax.Device] | int | None = None) -> Plan:
    """Batches AND parameters / optimizer state split over `devices` (ZeRO-3 / FSDP style)."""
    return Plan(make_mesh(devices), DATA, DATA)


# --------------------------------------------------------------------------------------------
# Sharding rules


def param_spec(shape: Sequence[int], n: int, axis: str = DATA) -> P:
    """The FSDP rule: split the largest dimension that `n` divides (the first of equal sizes)
    over `axis`; ``P()`` (replicated) when no dimension is divisible or ``n == 1``.

    >>> param_spec((300, 512), 8)   # P(None, 'data'): 300 is not a multiple of 8
    """
    dims = [d for d in range(len(shape)) if n > 1 and shape[d] % n == 0]
    if not dims:
        return P()
    best = max(dims, key=lambda d: (shape[d], -d))
    return P(*[axis if d == best else None for d in range(len(shape))])


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def tree_shardings(tree: PyTree, plan: Mesh | Plan) -> PyTree:
    """A `NamedSharding` per array leaf of `tree` (None for Python scalars / None leaves):
    replicated, or by `param_spec` when the plan shards parameters."""
    plan = as_plan(plan)

    def one(x):
        if not _is_array(x):
            return None
        if plan.param_axis is None or jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return NamedSharding(plan.mesh, P())
        n = int(plan.mesh.shape[plan.param_axis])
        return NamedSharding(plan.mesh, param_spec(x.shape, n, plan.param_axis))

    return jax.tree.map(one, tree)


def place(tree: PyTree, plan: Mesh | Plan) -> PyTree:
    """Put params / state / optimizer state on the plan's devices (`tree_shardings`).

    With several processes every process must pass the same values (e.g. the same key to
    ``model.init``): each one keeps only the shards of its own devices. The result never
    aliases `tree`'s buffers, so donating it to a step leaves `tree` usable.
    """
    shardings = tree_shardings(tree, plan)

    def one(x, sharding):
        if sharding is None:
            return x
        # device_put may reuse x's buffer for the shard on x's device, even with may_alias=False
        fresh = jnp.array(x, copy=True) if isinstance(x, jax.Array) else x
        return jax.device_put(fresh, sharding)

    return jax.tree.map(one, tree, shardings)


def batch_sharding(plan: Mesh | Plan, ndim: int = 1) -> NamedSharding:
    """Axis 0 split over the batch axis, other axes whole."""
    plan = as_plan(plan)
    return NamedSharding(plan.mesh, P(plan.batch_axis, *([None] * (ndim - 1))))


def _check_batch_size(n: int, plan: Plan, where: str, what: str = "the batch") -> None:
    if n % plan.size:
        multiple = plan.size * max(1, round(n / plan.size))
        raise ArgumentError(
            f"{where}: {what} has {n} examples, which the {plan.size} devices of mesh axis "
            f"{plan.batch_axis!r} cannot split evenly. Use a batch size that is a multiple of "
            f"{plan.size} (e.g. {multiple}), or a mesh with a device count that divides {n}.")


def shard_batch(batch: PyTree, plan: Mesh | Plan) -> PyTree:
    """This process's share of a batch -> global arrays split along axis 0 over the batch axis.

    Each leaf holds this process's rows (with one process: the whole batch); the global batch
    is the processes' shares concatenated in process order
    (`jax.make_array_from_process_local_data`).
    Every process must call it with the same number of rows.
    """
    plan = as_plan(plan)
    processes = len({d.process_index for d in plan.mesh.devices.flat})
    rows = {np.shape(leaf)[0] for leaf in jax.tree.leaves(batch) if np.ndim(leaf)}
    if len(rows) > 1:
        raise ArgumentError(
            "jnet.distributed.shard_batch: every leaf of the batch must hold the same number "
            f"of rows (axis 0), got {sorted(rows)}. Pass matching arrays, e.g. (x, y) with one "
            "target per example.")

    def one(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if x.ndim == 0:
            raise ArgumentError(
                "jnet.distributed.shard_batch: every leaf of a batch needs a leading batch axis, "
                f"got a scalar {x!r}.")
        # the global batch when every process of the mesh feeds its own rows (a 1-D mesh)
        _check_batch_size(x.shape[0] * processes, plan, "jnet.distributed.shard_batch",
                          "the global batch")
        return jax.make_array_from_process_local_data(batch_sharding(plan, x.ndim), x)

    return jax.tree.map(one, batch)


# --------------------------------------------------------------------------------------------
# The sharded step


def _constrain(tree: PyTree, shardings: PyTree) -> PyTree:
    return jax.tree.map(lambda x, s: x if s is None else jax.lax.with_sharding_constraint(x, s),
                        tree, shardings)


def constrain_step(train_step: Callable, plan: Mesh | Plan) -> Callable:
    """`train_step` with its batch split over the batch axis and its params / state /
    optimizer state laid out by the plan, before and after the update (not jitted: use it
    inside your own `jax.jit` / `lax.scan`; `shard_train_step` jits it).

    Raises ValueError at trace time when the batch size is not a multiple of the device count.
    """
    plan = as_plan(plan)

    def step(params, state, opt_state, batch, key):
        n = int(np.shape(jax.tree.leaves(batch)[0])[0])
        _check_batch_size(n, plan, "jnet.distributed (sharded train step)")
        batch = jax.tree.map(
            lambda x: jax.lax.with_sharding_constraint(x, batch_sharding(plan, x.ndim)), batch)
        carry = (params, state, opt_state)
        shardings = tree_shardings(carry, plan)
        params, state, opt_state = _constrain(carry, shardings)
        params, state, opt_state, logs = train_step(params, state, opt_state, batch, key)
        params, state, opt_state = _constrain((params, state, opt_state), shardings)
        return params, state, opt_state, logs

    return step


def shard_train_step(train_step: Callable, plan: Mesh | Plan, *, donate: bool = True) -> Callable:
    """The jit-compiled sharded step ``(params, state, opt_state, batch, key) -> (params, state,
    opt_state, metrics)``; feed it `place`-d trees and a `shard_batch`-ed batch. ``donate``
    reuses the buffers of params / state / opt_state (do not read the old ones afterwards)."""
    return jax.jit(constrain_step(train_step, plan), donate_argnums=(0, 1, 2) if donate else ())


def for_fit(mesh: Mesh | Plan, train_step: Callable, carry: PyTree,
            batch_size: int | None) -> tuple[Callable, PyTree]:
    """What `jnet.fit(..., mesh=...)` calls: the constrained step and the placed carry
    ``(params, state, opt_state)``; checks the batch size up front."""
    plan = as_plan(mesh)
    if batch_size is not None:
        _check_batch_size(batch_size, plan, "jnet.fit(mesh=...)", "batch_size")
    return constrain_step(train_step, plan), place(carry, plan)


# --------------------------------------------------------------------------------------------
# Processes


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, local_device_count: int | None = None,
               fail_fast: bool = True) -> None:
    """Join a multi-process job: `jax.distributed.initialize`, with CPU collectives (gloo).

    Arguments default to the environment `scripts/launch.py` sets: ``JNET_COORDINATOR``
    (``host:port`` of process 0), ``JNET_NUM_PROCESSES``, ``JNET_PROCESS_ID`` and
    ``JNET_LOCAL_DEVICES`` (virtual CPU devices per process). Call it before any other jax
    call. On GPU clusters managed by SLURM / Open MPI, ``jax.distributed.initialize()`` with no
    arguments finds these itself.

    ``fail_fast``: an uncaught exception prints its traceback and ends the process at once
    (exit code 1). Otherwise jax's exit handler waits in a shutdown barrier for peers that are
    themselves blocked in a collective waiting for this process, and the job hangs.
    """
    env = os.environ
    coordinator = coordinator_address or env.get("JNET_COORDINATOR")
    processes = num_processes if num_processes is not None else env.get("JNET_NUM_PROCESSES")
    pid = process_id if process_id is not None else env.get("JNET_PROCESS_ID")
    if local_device_count is None and env.get("JNET_LOCAL_DEVICES"):
        local_device_count = int(env["JNET_LOCAL_DEVICES"])
    if coordinator is None or processes is None or pid is None:
        raise ArgumentError(
            "jnet.distributed.initialize: need coordinator_address ('host:port' of process 0), "
            "num_processes and process_id, as arguments or as JNET_COORDINATOR / "
            f"JNET_NUM_PROCESSES / JNET_PROCESS_ID (got {coordinator!r}, "
            f"{processes!r}, {pid!r}). scripts/launch.py sets them.")
    if local_device_count is not None:
        jax.config.update("jax_num_cpu_devices", int(local_device_count))
    # CPU devices of different processes talk through gloo; GPUs/TPUs ignore this setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, int(processes), int(pid))
    if fail_fast:
        sys.excepthook = _exit_on_exception


def _exit_on_exception(kind, value, traceback) -> None:
    sys.__excepthook__(kind, value, traceback)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(1)


# --------------------------------------------------------------------------------------------
# Checkpoints of sharded arrays


def gather(tree: PyTree) -> PyTree:
    """Every array leaf as a whole host (NumPy) array, on every process (a collective: all
    processes must call it with the same tree). Typed PRNG keys, which are replicated, stay
    keys."""

    def one(x):
        if not isinstance(x, jax.Array):
            return x
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.device_get(x.addressable_data(0))
        if x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(one, tree)


def save(path: str | os.PathLike, tree: PyTree, *, metadata: Any = None) -> None:
    """Save a tree of (possibly sharded, multi-process) arrays as one `jnet.checkpoint` file.

    Every process must call it; process 0 writes (atomically), the others wait for it, so the
    file is complete on return everywhere.
    """
    host = gather(tree)
    if jax.process_index() == 0:
        _checkpoint.save(path, host, metadata=metadata)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"jnet.distributed.save {os.fspath(path)}")


def restore(path: str | os.PathLike, like: PyTree, plan: Mesh | Plan | None = None) -> PyTree:
    """Load a checkpoint into the layout of `like` (a tree of sharded arrays, or of
    `jax.ShapeDtypeStruct` with shardings), or into ``tree_shardings(like, plan)`` when a plan
    is given. Shapes and dtypes are checked as in `jnet.checkpoint.load`. Each process reads
    the file and gives each of its devices only its own shard.
    """
    shardings = (tree_shardings(like, plan) if plan is not None
                 else jax.tree.map(lambda x: getattr(x, "sharding", None), like))
    template = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if _is_array(x) else x, like)
    host = _checkpoint.load(path, like=template)

    def one(x, sharding):
        if sharding is None or not isinstance(x, jax.Array):
            return x
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = jax.device_put(np.asarray(jax.random.key_data(x)), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        data = np.asarray(x)
        return jax.make_array_from_callback(data.shape, sharding, lambda index: data[index])

    return jax.tree.map(one, host, shardings)


def describe(tree: PyTree) -> dict[str, str]:
    """``{path: "shape spec"}`` of every array leaf: how a tree is laid out (for logs/tests)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    out = {}
    for path, x in flat:
        spec = getattr(getattr(x, "sharding", None), "spec", None)
        out[jax.tree_util.keystr(path)] = f"{tuple(np.shape(x))} {spec}"
    return out


def bytes_per_device(tree: PyTree) -> int:
    """The largest number of bytes of `tree` that any one device holds."""
    per: dict[Any, int] = {}
    for x in jax.tree.leaves(tree):
        if isinstance(x, jax.Array):
            for shard in x.addressable_shards:
                size = math.prod(shard.data.shape) * shard.data.dtype.itemsize
                per[shard.device] = per.get(shard.device, 0) + size
    return max(per.values(), default=0)
