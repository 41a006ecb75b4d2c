"""`CheckpointManager`: a directory of numbered checkpoints, with rotation."""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from jnet.checkpoint.errors import (
    CheckpointError,
    CheckpointNotFoundError,
    PathLike,
    fspath,
    is_int,
)
from jnet.checkpoint.reading import read_metadata
from jnet.checkpoint.restore import load
from jnet.checkpoint.writing import check_writable, save
from jnet.errors import ArgumentError, ArgumentTypeError, public
from jnet.typing import PyTree

_PATTERN = re.compile(r"ckpt_([0-9]+)\.safetensors")  # [0-9]: \d would take other scripts
# How often `restore()` looks again when the latest checkpoint vanishes as it is opened
# (another manager's rotation). Each retry sees a newer step, so a handful suffice; the bound
# turns anything else that keeps vanishing into an error instead of a hang.
_RESTORE_ATTEMPTS = 100


def _file_name(step: int) -> str:
    return f"ckpt_{step:06d}.safetensors"


def _scan(directory: str) -> tuple[list[int], dict[str, str]]:
    """The steps that have a checkpoint in `directory`, ascending, and the names that look
    like checkpoints but are not named as a manager names them (``ckpt_1.safetensors``), each
    with the name it would need: those are not checkpoints of this directory, so they are
    never read, ranked or removed."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return [], {}
    except OSError as e:
        raise CheckpointError(f"could not list the checkpoint directory '{directory}': "
                              f"{e.strerror or e}. Check its permissions.",
                              path=directory) from e
    steps, odd = [], {}
    for name in sorted(names):
        match = _PATTERN.fullmatch(name)
        if match is None:
            continue
        step = int(match.group(1))
        if name == _file_name(step):
            steps.append(step)
        else:
            odd[name] = _file_name(step)
    return sorted(steps), odd


def _dangling(path: str) -> CheckpointError | None:
    """The error for a checkpoint name that is a symbolic link to nothing, else None."""
    if not os.path.islink(path) or os.path.exists(path):
        return None
    target = "?"
    with contextlib.suppress(OSError):
        target = os.readlink(path)
    return CheckpointError(
        f"'{path}' is a symbolic link to '{target}', which does not exist, so that checkpoint "
        "cannot be read. Restore the link's target, or remove the link to use the checkpoints "
        "before it.", path=path)


def _optional_count(value: Any, name: str, minimum: int, meaning: str) -> int | None:
    """`value` checked as None or an int >= `minimum`."""
    if value is not None and (not is_int(value) or value < minimum):
        raise ArgumentError(f"{name} must be an int >= {minimum} ({meaning}) or None, got "
                            f"{value!r}.")
    return value


def _step_arg(step: Any) -> int:
    """A checkpoint step checked as an int >= 0."""
    if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 0:
        raise ArgumentError(f"step must be an int >= 0, got {step!r}.")
    return int(step)


def _metrics_arg(metrics: Any) -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in dict(metrics or {}).items()}
    except (TypeError, ValueError):
        raise ArgumentError(f"metrics must be a mapping of names to scalars, got "
                            f"{metrics!r}.") from None


class CheckpointManager:
    """Numbered checkpoints in one directory, with rotation.

    Files are ``ckpt_000120.safetensors`` (step 120); each holds its step and metrics in its
    metadata, so the directory is its own index (no extra file to keep consistent). After each
    `save`, rotation keeps the `keep_last` highest steps, plus the `keep_best` best by
    ``metrics[monitor]`` (``mode="min"`` or ``"max"``), plus the step just saved; the rest are
    deleted. ``keep_best=None`` keeps the single best checkpoint whenever metrics name
    `monitor`, so `best_step()` can always be restored; ``keep_best=0`` keeps none for being
    best. ``keep_last=None`` keeps every checkpoint.

    Several managers (threads, processes, jobs) may share a directory: rotation tolerates
    files that another one removes underneath it, and unreadable files are not ranked. Files
    named otherwise (``ckpt_1.safetensors``, ``notes.txt``) are ignored: never read, ranked or
    removed.

    Example:

        manager = CheckpointManager("runs/cnn", keep_last=3, monitor="val_loss")
        manager.save(step, {"params": params, "opt_state": opt_state},
                     metrics={"val_loss": 0.31})
        tree = manager.restore(like=template)          # the latest
        best = manager.restore(manager.best_step(), like=template)
    """

    @public("jnet.checkpoint.CheckpointManager")
    def __init__(self, directory: PathLike, *, keep_last: int | None = 3,
                 keep_best: int | None = None, monitor: str = "val_loss", mode: str = "min"):
        """Args:
            directory: where the checkpoints live; created if missing, and checked writable
                (`check_writable`) before anything is trained.
            keep_last: how many of the highest steps rotation keeps (>= 1), None for all.
            keep_best: how many of the best by ``metrics[monitor]`` it also keeps (>= 0);
                None keeps the best one when metrics name `monitor`.
            monitor: the metric that ranks checkpoints.
            mode: ``"min"`` (losses) or ``"max"`` (accuracies).

        Raises:
            ArgumentError: a count, `monitor` or `mode` is invalid.
            CheckpointError: the directory cannot be created or written.
        """
        self.keep_last = _optional_count(keep_last, "keep_last", 1,
                                         "the latest checkpoint is needed to resume")
        self.keep_best = _optional_count(keep_best, "keep_best", 0, "0 keeps none for being best")
        if not isinstance(monitor, str):
            raise ArgumentTypeError(f"monitor must be a metric name (a str), got {monitor!r}.")
        if mode not in ("min", "max"):
            raise ArgumentError(f"mode must be 'min' (for losses) or 'max' (for accuracies), "
                                f"got {mode!r}.")
        self.monitor, self.mode = monitor, mode
        self.directory = check_writable(fspath(directory, "directory"))

    def path(self, step: int) -> str:
        """The file of checkpoint `step`."""
        return os.path.join(self.directory, _file_name(step))

    def steps(self) -> list[int]:
        """The steps that have a checkpoint, ascending ([] when the directory is gone)."""
        return _scan(self.directory)[0]

    def latest_step(self) -> int | None:
        """The highest saved step, or None when the directory holds no checkpoint."""
        steps = self.steps()
        return steps[-1] if steps else None

    @public("jnet.checkpoint.CheckpointManager.metrics")
    def metrics(self, step: int) -> dict[str, float]:
        """The metrics saved with checkpoint `step` (``{}`` when none were given).

        Raises:
            CheckpointNotFoundError: there is no checkpoint `step`.
            CheckpointError: its header is damaged or not a jnet checkpoint's.
        """
        meta = read_metadata(self.path(_step_arg(step)))
        metrics = meta.get("metrics") if isinstance(meta, dict) else None
        if not isinstance(metrics, dict):
            return {}
        return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}

    def _ranked(self, steps: list[int]) -> list[int]:
        """`steps` that carry a finite monitored metric, best first (earlier step on ties).
        A file removed meanwhile (another manager's rotation) or unreadable is not ranked."""
        scored = []
        for step in steps:
            try:
                value = self.metrics(step).get(self.monitor)
            except CheckpointError:
                continue
            if value is not None and math.isfinite(value):
                scored.append((value if self.mode == "min" else -value, step))
        return [step for _, step in sorted(scored)]

    def best_step(self) -> int | None:
        """The saved step with the best ``metrics[monitor]``, or None when none has it."""
        ranked = self._ranked(self.steps())
        return ranked[0] if ranked else None

    @public("jnet.checkpoint.CheckpointManager.save")
    def save(self, step: int, tree: PyTree, metrics: Mapping[str, Any] | None = None, *,
             metadata: Any = None) -> str:
        """Save `tree` as checkpoint `step` (atomically), rotate, and return its path.

        Args:
            step: the checkpoint's number (an int >= 0), e.g. the epoch.
            tree: what to save (see `jnet.checkpoint.save`).
            metrics: scalars (floats, or 0-d arrays) stored with the checkpoint; the one
                named `monitor` ranks checkpoints for `keep_best` / `best_step`.
            metadata: JSON-serialisable data stored too:
                ``read_metadata(manager.path(step))["metadata"]`` reads it without the tensors.

        Returns:
            The path of the file written.

        Raises:
            ArgumentError: `step` or `metrics` is invalid.
            CheckpointError: the tree cannot be stored or the file cannot be written (the
                previous checkpoints are then untouched).
        """
        step = _step_arg(step)
        metrics = _metrics_arg(metrics)
        if self.keep_best and metrics and self.monitor not in metrics:
            raise ArgumentError(f"keep_best={self.keep_best} ranks by monitor={self.monitor!r}, "
                                f"but metrics only has {sorted(metrics)}. Pass it, or set "
                                "monitor= to one of those.")
        path = self.path(step)
        save(path, tree, metadata={"step": step, "metrics": metrics, "metadata": metadata})
        self._rotate(just_saved=step)
        return path

    def _rotate(self, just_saved: int) -> None:
        steps = self.steps()
        keep = {just_saved}
        keep.update(steps if self.keep_last is None else steps[-self.keep_last:])
        n_best = 1 if self.keep_best is None else self.keep_best
        keep.update(self._ranked(steps)[:n_best])
        for step in steps:
            if step not in keep:
                with contextlib.suppress(FileNotFoundError):  # another manager removed it
                    os.remove(self.path(step))

    @public("jnet.checkpoint.CheckpointManager.restore")
    def restore(self, step: int | None = None, like: PyTree = None, *, verify: bool = True,
                allow_downcast: bool = False) -> PyTree:
        """Load checkpoint `step` (default: the latest) with
        `load(path, like, verify=..., allow_downcast=...)`.

        Raises:
            CheckpointNotFoundError: the directory holds no checkpoint, or none for `step`.
            CheckpointError: as `load`; or the checkpoint is a symbolic link to nothing; or
                the latest checkpoint vanished before it could be read, again and again.
        """
        if step is not None:
            path = self.path(_step_arg(step))
            if not os.path.exists(path):
                raise _dangling(path) or CheckpointNotFoundError(
                    f"no checkpoint for step {step} in '{self.directory}'; it holds steps "
                    f"{self.steps()}.", path=self.directory)
            return load(path, like=like, verify=verify, allow_downcast=allow_downcast)
        for _ in range(_RESTORE_ATTEMPTS):
            steps, odd = _scan(self.directory)
            if not steps:
                name, fixed = next(iter(odd.items()), ("", ""))
                what = "no ckpt_*.safetensors file" if not odd else (
                    f"only {', '.join(odd)}, not named as checkpoints are: rename {name} to "
                    f"{fixed} to use it")
                raise CheckpointNotFoundError(
                    f"no checkpoint in '{self.directory}' ({what}). Save one first, or check "
                    "the directory.", path=self.directory)
            path = self.path(steps[-1])
            try:
                return load(path, like=like, verify=verify, allow_downcast=allow_downcast)
            except CheckpointNotFoundError:
                problem = _dangling(path)
                if problem:
                    raise problem from None
                # rotated away by another manager since the listing: look again
        raise CheckpointError(
            f"the latest checkpoint in '{self.directory}' vanished {_RESTORE_ATTEMPTS} times in "
            "a row before it could be read (another process deletes files there faster than "
            "this one reads them). Stop the other writer, or restore a step explicitly.",
            path=self.directory)
