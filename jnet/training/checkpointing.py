"""`Checkpoint`: the callback that saves a `fit` run every few epochs and resumes it.

Each checkpoint holds the run's params, model state, optimizer state, key, counters, history
and (with `EarlyStopping`) the best weights (schema: `jnet.training.resume`), in a
`jnet.checkpoint.CheckpointManager` directory. Before the first step it proves the directory
can be written and has room for one checkpoint of this run's size, so a full disk is found
before any training, not after the first epoch.

Resuming (``resume=True``) continues from the latest checkpoint, bit-identical to a run that
was never interrupted. A run that was stopped (by early stopping or a callback) is finished:
resuming it with a larger budget trains nothing and warns, saying how to train on.
"""

from __future__ import annotations

import os
import warnings

import jax
import numpy as np

from jnet import checkpoint
from jnet.checkpoint import CheckpointManager
from jnet.errors import ArgumentError, ArgumentTypeError, entry_point
from jnet.training import checks
from jnet.training import resume as R
from jnet.training.callbacks import Best, Callback, RunState


class Checkpoint(Callback):
    """Save the run to `dir` every `every` epochs (and at the end); keep the last `keep`.

    Args:
        dir: the checkpoint directory (created if missing; one ``ckpt_<epoch>.safetensors``
            per saved epoch).
        every: save every `every` epochs (>= 1); the last epoch is always saved.
        keep: how many of the latest checkpoints to keep (>= 1).
        resume: continue from the latest checkpoint in `dir`, if any (same arguments as the
            run that wrote it; a different key is replaced by the checkpoint's, with a
            warning).

    Raises:
        ArgumentError / ArgumentTypeError: a bad value, named.
        CheckpointError: at the start of `fit`, a directory that cannot be written or has no
            room for one checkpoint; during training, a checkpoint that could not be written
            (``err.result`` then holds the run so far).
    """

    order = 1  # after the other callbacks at each epoch end: save what they decided

    def __init__(self, dir: str | os.PathLike, every: int = 1, keep: int = 3,
                 resume: bool = False):
        with entry_point("jnet.callbacks.Checkpoint"):
            if not isinstance(dir, (str, os.PathLike)):
                raise ArgumentTypeError(f"dir must be a path (str or os.PathLike), got "
                                        f"{type(dir).__name__}.")
            checks.positive_int("every", every)
            checks.positive_int("keep", keep)
            if not isinstance(resume, bool):
                raise ArgumentTypeError(f"resume must be True or False, got {resume!r}.")
        self.directory = os.fspath(dir)
        self.every, self.keep, self.resume = int(every), int(keep), resume
        self.manager: CheckpointManager | None = None

    def on_train_begin(self, run: RunState) -> None:
        """Check the directory (writable, room for one checkpoint); resume if asked."""
        checks.check_writable(self.directory)
        check_space(self.directory, run)
        # keep_best=0: exactly the last `keep` files (the best weights of early stopping
        # travel inside each checkpoint anyway)
        self.manager = CheckpointManager(self.directory, keep_last=self.keep, keep_best=0)
        if self.resume:
            _resume(self.manager, run)

    def on_epoch_end(self, run: RunState) -> None:
        """Save this epoch's checkpoint when due (every `every` epochs, and the last)."""
        if self.manager is None or (run.epoch % self.every and run.more()):
            return
        meta = R.header(run.epoch, run.step, run.history, run.best, run.size)
        tree = R.checkpoint_tree(run.params, run.state, run.opt_state, run.key, run.epoch,
                                 run.step, run.history, run.stop, run.best)
        R.save(self.manager, tree, meta, run.logs)


def check_space(directory: str, run: RunState) -> None:
    """Raise unless `directory`'s file system has room for one checkpoint of `run`, best
    weights included (`jnet.checkpoint.check_space`, from shapes and dtypes alone).

    Raises:
        CheckpointError: less free space than one checkpoint needs, naming both numbers.
    """
    best = run.best or Best(run.params, run.state, 0 if run.size is None else
                            np.zeros((run.size,), np.int32))
    tree = R.checkpoint_tree(run.params, run.state, run.opt_state, run.key, run.epoch, run.step,
                             run.history, run.stop, best)
    checkpoint.check_space(directory, tree,
                           metadata=R.header(run.epoch, run.step, run.history, best, run.size))


def _resume(manager: CheckpointManager, run: RunState) -> None:
    """Continue `run` from the latest checkpoint in `manager`, if any (header first, tensors
    once)."""
    latest = manager.latest_step()
    if latest is None:
        return
    meta = R.read_header(manager, latest)
    if run.planned_steps is not None and meta["step"] > run.planned_steps:
        raise ArgumentError(
            f"resume=True: the checkpoint is at step {meta['step']}, past the requested "
            f"steps={run.planned_steps}. Pass a larger budget, or another Checkpoint "
            "directory.")
    R.check_header(meta, meta["epoch"] if run.planned_epochs is None else run.planned_epochs,
                   run.size)
    saved = R.restore(manager, meta, run.params, run.state, run.opt_state, run.key)
    run.params, run.state, run.opt_state = saved.params, saved.state, saved.opt_state
    run.history, run.epoch, run.step = saved.history, saved.epoch, saved.step
    run.best = saved.best
    if saved.stopped:
        run.stop = True
        _warn_stopped(manager, run)
    if not np.array_equal(jax.random.key_data(saved.key), jax.random.key_data(run.key)):
        warnings.warn("jnet.fit: resuming with a different key than the checkpoint's; "
                      "using the checkpoint's key for an exact continuation.", stacklevel=2)
        run.key = saved.key


def _warn_stopped(manager: CheckpointManager, run: RunState) -> None:
    """A resumed run that was stopped trains nothing: say so when more was asked for."""
    if run.planned_epochs is not None:
        wants_more = run.epoch < run.planned_epochs
    else:
        wants_more = run.planned_steps is not None and run.step < run.planned_steps
    if wants_more:
        warnings.warn(
            f"jnet.fit: the run in '{manager.directory}' was stopped at epoch {run.epoch} "
            "(early stopping or a callback), so resuming it trains nothing more. To train on, "
            "start a new run from its weights: load the checkpoint with "
            "jnet.checkpoint.load and pass options=jnet.training.Options(params=..., "
            "state=..., opt_state=...) with another Checkpoint directory.", stacklevel=2)
