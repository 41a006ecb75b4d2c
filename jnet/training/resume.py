"""What a checkpoint of `fit` holds, and how a run resumes from one.

One checkpoint (``ckpt_<epoch>.safetensors`` of a `jnet.checkpoint.CheckpointManager`) holds
the tree

    {"params", "state", "opt_state", "key", "epoch", "step", "stopped",
     "history": {name: float32 (epochs,) or (epochs, P)},
     "best": {"params", "state", "epoch"}       # only with early stopping's best weights}

and, in its header's metadata (`jnet.checkpoint.read_metadata`, no tensor read), what a
resumed run needs to know before loading: ``{"epoch", "step", "names", "has_best",
"population"}``. Resuming reads that header, checks it against the run's arguments, builds the
exact template of the tree from it and loads the tensors once.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import ArgumentError, DataError
from jnet.training.callbacks import Best
from jnet.training.history import History
from jnet.typing import PyTree


class Saved(NamedTuple):
    """A checkpoint read back: the run's trees and counters at the end of epoch `epoch`."""

    params: PyTree
    state: PyTree
    opt_state: PyTree
    key: jax.Array
    epoch: int
    step: int
    stopped: bool
    best: Best | None
    history: History


def checkpoint_tree(params, state, opt_state, key, epoch: int, step: int, history: History,
                    stopped: bool, best: Best | None) -> dict:
    """The tree one checkpoint holds (see the module docstring)."""
    tree = {
        "params": params, "state": state, "opt_state": opt_state, "key": key,
        "epoch": epoch, "step": step, "stopped": int(stopped),
        "history": {k: np.asarray(v, np.float32) for k, v in history.items()},
    }
    if best is not None:
        tree["best"] = best._asdict()
    return tree


def header(epoch: int, step: int, history: History, best: Best | None,
           population: int | None) -> dict:
    """The metadata stored in a checkpoint's header."""
    return {"epoch": epoch, "step": step, "names": list(history), "has_best": best is not None,
            "population": population}


def save(manager, tree: dict, meta: dict, logs: dict) -> None:
    """Write checkpoint ``meta["epoch"]`` with its header metadata and (single runs) the
    epoch's logs as its metrics.

    With several processes (`jnet.distributed.initialize`), every process calls this: the
    sharded arrays are gathered (a collective), process 0 writes the one file, and all wait
    for it, so no two processes write one path and every process sees the file on return."""
    scalar = all(np.ndim(v) == 0 for v in logs.values())
    metrics = logs if scalar else None
    if jax.process_count() == 1:
        manager.save(meta["epoch"], tree, metrics=metrics, metadata=meta)
        return
    from jax.experimental import multihost_utils

    from jnet.distributed import gather

    tree = gather(tree)
    if jax.process_index() == 0:
        manager.save(meta["epoch"], tree, metrics=metrics, metadata=meta)
    multihost_utils.sync_global_devices(f"jnet.fit checkpoint {meta['epoch']}")


def read_header(manager, epoch: int) -> dict:
    """The metadata of checkpoint `epoch`.

    Raises:
        DataError: the checkpoint was not written by `fit` (no metadata).
    """
    from jnet.checkpoint import read_metadata

    path = manager.path(epoch)
    meta = (read_metadata(path) or {}).get("metadata")
    if not isinstance(meta, dict) or "names" not in meta:
        raise DataError(
            f"checkpoint '{path}' was not written by jnet.fit of this version (its header has "
            "no fit metadata), so fit cannot resume from it. Load it with "
            "jnet.checkpoint.load and pass Options(params=..., opt_state=...), or use a fresh "
            "Checkpoint directory."
        )
    return meta


def check_header(meta: dict, epochs: int, population: int | None) -> None:
    """Raise when checkpoint `meta` cannot continue this run.

    Raises:
        ArgumentError: the checkpoint is past the requested epochs, or of another population
            size.
    """
    if meta["epoch"] > epochs:
        raise ArgumentError(
            f"resume=True: the checkpoint is at epoch {meta['epoch']}, past the requested "
            f"{epochs} epoch(s). Pass epochs >= {meta['epoch']} to continue it (or the steps= "
            "budget that reaches them), or use another Checkpoint directory to start afresh."
        )
    if meta.get("population") != population:
        raise ArgumentError(
            f"resume=True: the checkpoint was written with population size "
            f"{meta.get('population')}, this run has {population}. Resume with the same "
            "population= as the run that wrote it."
        )


def restore(manager, meta: dict, params: PyTree, state: PyTree, opt_state: PyTree,
            key: jax.Array) -> Saved:
    """Load checkpoint ``meta["epoch"]`` into the structure of this run's trees, reading each
    tensor once; the ``best`` entry comes back when the header says the file holds one.
    Sharded trees (``fit(mesh=...)``) come back in their layout: each process reads the file
    and gives its devices their own shards."""
    epoch = meta["epoch"]
    lead = (epoch,) if meta.get("population") is None else (epoch, meta["population"])
    pop = meta.get("population")
    best_epoch = 0 if pop is None else np.zeros((pop,), np.int32)
    best = Best(params, state, best_epoch) if meta["has_best"] else None
    like = checkpoint_tree(params, state, opt_state, key, 0, 0, History(), False, best)
    like["history"] = {k: jax.ShapeDtypeStruct(lead, jnp.float32) for k in meta["names"]}
    tree = manager.restore(epoch, like=like)
    history = History({k: list(np.asarray(tree["history"][k], np.float64))
                       for k in meta["names"]})
    best = None if "best" not in tree else Best(**tree["best"])
    return Saved(tree["params"], tree["state"], tree["opt_state"], tree["key"],
                 int(tree["epoch"]), int(tree["step"]), bool(int(tree["stopped"])),
                 best, history)
