"""The v0.2 keywords of `fit` that moved, kept for one release (removed in 0.4).

Each still works and warns with a `DeprecationWarning` naming its replacement:

    checkpoint_dir, checkpoint_every, keep_checkpoints, resume
        -> callbacks=[jnet.callbacks.Checkpoint(dir, every=1, keep=3, resume=False)]
    live_plot=True / "path.png"
        -> callbacks=[jnet.callbacks.LivePlot(path)]
    scan, steps_per_call, validation_batch_size, check_finite, drop_remainder,
    params, state, opt_state
        -> options=jnet.training.Options(...)
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any

from jnet.errors import ArgumentError, ArgumentTypeError
from jnet.training import checks
from jnet.training.callbacks import Callback
from jnet.training.checkpointing import Checkpoint
from jnet.training.live_plot import LivePlot
from jnet.training.options import Options

OPTIONS = ("scan", "steps_per_call", "validation_batch_size", "check_finite", "drop_remainder",
           "params", "state", "opt_state")
CHECKPOINT = {"checkpoint_dir": "dir", "checkpoint_every": "every",
              "keep_checkpoints": "keep", "resume": "resume"}


def _replacement(name: str) -> str:
    if name in CHECKPOINT:
        return (f"callbacks=[jnet.callbacks.Checkpoint(dir, every=..., keep=..., resume=...)] "
                f"({name} is its {CHECKPOINT[name]!r})")
    if name == "live_plot":
        return "callbacks=[jnet.callbacks.LivePlot(path)]"
    return f"options=jnet.training.Options({name}=...)"


def translate(legacy: dict[str, Any], options: Options
              ) -> tuple[Options, list[Callback], list[Callback]]:
    """``(options, callbacks to run first, callbacks to run last)`` from the v0.2 keywords in
    `legacy`, each warned about.

    Raises:
        ArgumentTypeError: a keyword `fit` never had.
        ArgumentError: a bad value (named by its old keyword), or ``resume=True`` without
            ``checkpoint_dir``.
    """
    for name in legacy:
        if name not in (*OPTIONS, *CHECKPOINT, "live_plot"):
            raise ArgumentTypeError(f"fit() got an unexpected keyword argument {name!r}. See "
                                    "help(jnet.fit) for its keywords and jnet.training.Options "
                                    "for the rarely used ones.")
        warnings.warn(f"jnet.fit({name}=...) is deprecated and will be removed in jnet 0.4; "
                      f"use {_replacement(name)}.", DeprecationWarning, stacklevel=3)
    moved = {k: legacy[k] for k in OPTIONS if k in legacy}
    options = dataclasses.replace(options, **moved) if moved else options
    first: list[Callback] = []
    last: list[Callback] = []
    directory = legacy.get("checkpoint_dir")
    every, keep = legacy.get("checkpoint_every", 1), legacy.get("keep_checkpoints", 3)
    checks.positive_int("checkpoint_every", every)
    checks.positive_int("keep_checkpoints", keep)
    if directory is not None:
        last.append(Checkpoint(directory, every, keep, bool(legacy.get("resume", False))))
    elif legacy.get("resume"):
        raise ArgumentError("resume=True needs checkpoint_dir= (where to resume from); pass "
                            "callbacks=[jnet.callbacks.Checkpoint(dir, resume=True)].")
    plot = legacy.get("live_plot", False)
    if plot:
        path = plot if isinstance(plot, (str, os.PathLike)) else os.path.join(
            directory or ".", "history.png")
        first.append(LivePlot(path))
    return options, first, last
