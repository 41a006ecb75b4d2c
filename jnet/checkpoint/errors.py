"""The checkpoint errors, and the argument checks every module of the package shares."""

from __future__ import annotations

import os
from typing import Any

from jnet.errors import ArgumentTypeError, Error

PathLike = str | os.PathLike


class CheckpointError(Error, ValueError):
    """A checkpoint could not be written, read, or does not match the tree it is loaded into
    (a `jnet.Error` and a `ValueError`).

    Attributes:
        path: the checkpoint file or directory concerned (a str), or None.
        result: when `jnet.fit` could not write a checkpoint, the training result so far (a
            `FitResult`: nothing trained is lost); None otherwise.
    """

    def __init__(self, message: str = "", *, path: PathLike | None = None,
                 where: str | None = None):
        super().__init__(message, where=where)
        self.path = None if path is None else os.fspath(path)
        self.result: Any = None


class CorruptCheckpointError(CheckpointError):
    """The file is damaged (a checksum mismatch, a truncated or malformed header) or is not a
    checkpoint at all; an older checkpoint may still be good."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """There is no checkpoint where one was asked for (also a `FileNotFoundError`)."""


def corrupt(path: PathLike, why: str) -> CorruptCheckpointError:
    """The error for a damaged file: what is wrong with it, and what to do instead."""
    return CorruptCheckpointError(
        f"'{os.fspath(path)}' is corrupt: {why}. It was damaged or truncated after it was "
        "written (an interrupted copy or download, a disk error), or it is another kind of "
        "file. Load an older checkpoint (`CheckpointManager(directory).steps()` lists them) or "
        "re-save this one; `verify=False` skips the checksums to salvage what is left.",
        path=path,
    )


def fspath(value: Any, what: str) -> str:
    """`value` as a str path, or an ArgumentTypeError saying what a path is."""
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str) and path:
            return path
    raise ArgumentTypeError(
        f"{what} must be a non-empty str or os.PathLike (e.g. pathlib.Path) naming a file "
        f"system path, got {value!r} of type {type(value).__name__}. Pass a path such as "
        "'runs/ckpt.safetensors'."
    )


def check_bool(value: Any, what: str) -> bool:
    """`value` checked as True or False."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{what} must be True or False, got {value!r} of type "
                                f"{type(value).__name__}.")
    return value


def is_int(x: Any) -> bool:
    """Whether `x` is a Python int and not a bool (JSON keeps the two apart)."""
    return isinstance(x, int) and not isinstance(x, bool)
