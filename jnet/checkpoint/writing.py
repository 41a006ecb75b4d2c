"""Writing checkpoints: atomically, and into a directory proven writable and big enough."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import time
from typing import Any

from jnet.checkpoint.errors import CheckpointError, PathLike, fspath
from jnet.checkpoint.format import encode, file_size
from jnet.errors import public
from jnet.typing import PyTree

# Temporary files: ``.jnet-tmp-<pid>@<host>-<16 hex>.tmp``. The pid and host say whose they
# are, so a later save can tell a dead writer's leftovers from a live writer's work in progress.
TMP_PREFIX = ".jnet-tmp-"
TMP_PATTERN = re.compile(r"\.jnet-tmp-(\d+)@([A-Za-z0-9.-]*)-[0-9a-f]{16}\.tmp")
HOST = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())
# A temporary untouched this long is stale whoever wrote it: a writer on another host (a
# shared file system, where its pid means nothing here), or a pid reused since. A live
# writer touches its file with every write; an hour of silence is a dead one.
STALE_AFTER_S = 3600.0

# The fix for each way a write can fail, by errno.
_WRITE_FIXES = {
    getattr(errno, "EDQUOT", errno.ENOSPC): "the disk quota is exhausted: free some space, "
                                            "or save elsewhere",
    errno.ENOSPC: "the disk is full: free some space, or save to another file system",
    errno.EFBIG: "the file exceeds the size limit (`ulimit -f`, or the file system's maximum): "
                 "raise the limit, or save to another file system",
    errno.EACCES: "the directory is not writable by this user: fix its permissions, or save "
                  "to a writable directory",
    errno.EPERM: "the directory is not writable by this user: fix its permissions, or save "
                 "to a writable directory",
    errno.EROFS: "the file system is read-only: save to a writable directory",
    errno.ENOENT: "the directory does not exist: create it first (`os.makedirs`), or use "
                  "`jnet.checkpoint.CheckpointManager`, which creates its directory",
    errno.ENOTDIR: "a component of the path is a regular file, not a directory: choose a "
                   "path inside a directory",
    errno.EISDIR: "the path is a directory: give a file name inside it, e.g. "
                  "'<dir>/ckpt.safetensors'",
    errno.EEXIST: "a regular file has that name: remove it, or choose another directory",
}


def _write_error(target: str, err: OSError, action: str) -> CheckpointError:
    """A CheckpointError for an OSError met while doing `action` to `target`."""
    reason = err.strerror or str(err)
    code = errno.errorcode.get(err.errno, "") if err.errno is not None else ""
    fix = _WRITE_FIXES.get(err.errno, "check the path and the file system")
    return CheckpointError(
        f"could not {action} '{target}': {reason}{f' ({code})' if code else ''}; {fix}. "
        "Nothing was changed: any previous checkpoint there is intact.",
        path=target,
    )


def write_file(f, data: bytes) -> None:
    """Write all of `data` to the open file `f` (a seam for tests that simulate a crash)."""
    f.write(data)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable; directories cannot be opened for fsync on every OS."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _create_temporary(directory: str) -> tuple[int, str]:
    """A new temporary file in `directory`, created with the umask's permissions (mkstemp
    would force 0600): ``(fd, path)``."""
    name = f"{TMP_PREFIX}{os.getpid()}@{HOST}-{os.urandom(8).hex()}.tmp"
    tmp = os.path.join(directory, name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    return os.open(tmp, flags, 0o666), tmp


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host runs (a zombie counts as running until reaped)."""
    if os.name == "nt" or pid <= 0:  # Windows' os.kill(pid, 0) would send CTRL_C
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: another user's live process
        return True
    return True


def _remove_stale_temporaries(directory: str) -> None:
    """Delete the temporaries of dead writers in `directory` (best effort: never raises)."""
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            match = TMP_PATTERN.fullmatch(entry.name)
            if not match:
                continue
            pid, host = int(match.group(1)), match.group(2)
            with contextlib.suppress(OSError):  # it may vanish: its writer finished
                dead = host == HOST and pid != os.getpid() and not _pid_alive(pid)
                if dead or time.time() - entry.stat().st_mtime > STALE_AFTER_S:
                    os.unlink(entry.path)


def _atomic_write(path: str, data: bytes) -> None:
    """Replace `path` by `data` atomically; on failure `path` is untouched and no temporary
    remains."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):  # say so before writing gigabytes that cannot be renamed
        raise _write_error(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)),
                           "write the checkpoint")
    _remove_stale_temporaries(directory)
    try:
        fd, tmp = _create_temporary(directory)
    except OSError as e:
        raise _write_error(path, e, "write the checkpoint") from e
    try:
        with os.fdopen(fd, "wb") as f:
            write_file(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise _write_error(path, e, "write the checkpoint") from e
        raise
    _fsync_directory(directory)


@public("jnet.checkpoint.check_writable")
def check_writable(directory: PathLike) -> str:
    """Make sure checkpoints can be written into `directory`, before any work depends on it.

    Creates `directory` (and its parents) if missing, removes stale temporaries of dead
    writers, then creates and removes a file there.

    Args:
        directory: the checkpoint directory.

    Returns:
        The directory as a str.

    Raises:
        CheckpointError: the directory cannot be created or written (read-only file system,
            permissions, a regular file in the way), naming it and the fix.
        ArgumentTypeError: `directory` is not a path.
    """
    directory = fspath(directory, "directory")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise _write_error(directory, e, "create the checkpoint directory") from e
    _remove_stale_temporaries(directory)
    try:
        fd, tmp = _create_temporary(directory)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise _write_error(directory, e, "create a file in the checkpoint directory") from e
    return directory


def _existing_ancestor(directory: str) -> str:
    """`directory`, or its nearest existing parent: the file system it will be created on."""
    current = os.path.abspath(directory)
    while not os.path.isdir(current) and os.path.dirname(current) != current:
        current = os.path.dirname(current)
    return current


def _block_size(directory: str) -> int:
    """The file system's allocation unit (files take whole blocks); 1 where unknown."""
    try:
        return max(1, os.statvfs(directory).f_frsize)
    except (AttributeError, OSError):  # Windows has no statvfs
        return 1


@public("jnet.checkpoint.check_space")
def check_space(directory: PathLike, tree: PyTree, *, metadata: Any = None) -> int:
    """Make sure the file system of `directory` can hold one checkpoint of `tree`, before any
    work depends on it.

    `save` writes the whole file as a temporary in the target directory and then renames it,
    so one checkpoint needs its full size free at once, even when it replaces an older file
    (the old one stays until the rename). That size is computed from the shapes and dtypes
    alone, as `save` would lay the file out (header included), rounded up to whole blocks of
    the file system; no array is read, so `tree` may hold `jax.ShapeDtypeStruct` leaves (e.g.
    from `jax.eval_shape`).

    Args:
        directory: the checkpoint directory; when it does not exist yet, the file system of
            its nearest existing parent is checked.
        tree: what will be saved (any tree `save` accepts, or its `jax.ShapeDtypeStruct`s).
        metadata: the `metadata` that will be saved with it (its JSON counts too).

    Returns:
        The bytes one checkpoint of `tree` needs (the file's size, in whole blocks).

    Raises:
        CheckpointError: the file system has fewer bytes free than one checkpoint needs (the
            message names the directory, both numbers and the fix), its free space cannot be
            read, or `tree` / `metadata` cannot be saved at all (as `save`).
        ArgumentTypeError: `directory` is not a path.
    """
    directory = fspath(directory, "directory")
    where = _existing_ancestor(directory)
    block = _block_size(where)
    needed = -(-file_size(tree, metadata) // block) * block
    try:
        free = shutil.disk_usage(where).free
    except OSError as e:
        raise _write_error(where, e, "measure the free space of") from e
    if free < needed:
        raise CheckpointError(
            f"the file system of '{directory}' has {free:,} bytes free, but one checkpoint of "
            f"this tree needs {needed:,} bytes ({needed / 2**20:,.1f} MiB, written whole "
            "before it replaces anything). Free at least "
            f"{needed - free:,} bytes there, or save the checkpoints to a file system with more "
            "room.", path=directory)
    return needed


@public("jnet.checkpoint.save")
def save(path: PathLike, tree: PyTree, *, metadata: Any = None) -> None:
    """Save a pytree of arrays and scalars to one safetensors file, atomically.

    Every leaf and dict key is checked before anything is written, so a file `save` writes
    always loads back as it was given.

    Args:
        path: the file to write (conventionally ``*.safetensors``); replaced atomically if it
            exists. Its directory must exist (`check_writable` creates it).
        tree: nested dicts / lists / tuples / NamedTuples / registered dataclasses whose leaves
            are jax or NumPy arrays of numbers or bools (any shape and numeric dtype, bfloat16
            included), NumPy scalars, Python int / float / bool / str, None, or PRNG keys
            (typed or legacy uint32). Dict keys are str or int (not both in one dict).
        metadata: optional JSON-serialisable value stored with the checkpoint; read it back
            with `read_metadata(path)` without loading any tensor.

    Raises:
        CheckpointError: a leaf has an unsupported type, an array holds strings, dates or
            Python objects, a dict key is neither str nor int (the message names its key path
            and the fix), `metadata` is not JSON-serialisable, or the file cannot be written
            (disk full, directory missing or read-only, `path` a directory); then any previous
            file at `path` is intact and no temporary remains.
        ArgumentTypeError: `path` is not a path.
    """
    path = fspath(path, "path")
    _atomic_write(path, encode(path, tree, metadata))
