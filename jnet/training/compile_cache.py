"""The persistent compilation cache behind ``jnet.training.Options(compilation_cache=DIR)``.

XLA programs compiled while the cache is on are written to DIR, keyed by the program, the
compiler options, the jax / jaxlib versions and the device; a later process (a rerun of the
same script, the next notebook session) that compiles the same program reads it back instead
of compiling. jnet turns it on with JAX's own switches (`jax_compilation_cache_dir`,
`jax_persistent_cache_min_compile_time_secs`, `jax_persistent_cache_min_entry_size_bytes`),
so it covers every compilation of the process from then on, not only `fit`'s.
"""

from __future__ import annotations

import os
from typing import Any

import jax
from jax.experimental.compilation_cache import compilation_cache

from jnet.errors import ArgumentError, ArgumentTypeError

# Cache every program, however fast it compiled: on the CPU most of a short run's compile
# time is spent in programs under JAX's default threshold of 1 s (eval steps, epoch-end
# metrics, the scan of a small model), and reading an entry costs less than compiling it.
MIN_COMPILE_TIME_S = 0.0
MIN_ENTRY_SIZE_BYTES = 0


def check_path(value: Any) -> None:
    """Raise unless `value` is None, a str or an `os.PathLike` (``compilation_cache=``).

    Raises:
        ArgumentTypeError: anything else, named.
    """
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise ArgumentTypeError(
            f"compilation_cache must be a directory path (a str or pathlib.Path) where "
            f"compiled programs are kept between runs, or None (no cache), got "
            f"{type(value).__name__} {value!r:.60}. Pass e.g. "
            "compilation_cache='~/.cache/jnet-xla'.")


def enable(path: str | os.PathLike) -> str:
    """Turn on JAX's persistent compilation cache in `path` (created if missing; ``~``
    expanded) for every compilation of this process from now on. Returns the directory.

    A process that compiled something before still switches: JAX decides once per process
    whether a cache is in use, so that decision is reset here.

    Raises:
        ArgumentError: `path` cannot be created or written (read-only, a file, no permission).
    """
    check_path(path)
    directory = os.path.abspath(os.path.expanduser(os.fspath(path)))
    try:
        os.makedirs(directory, exist_ok=True)
        writable = os.access(directory, os.W_OK | os.X_OK)
    except OSError as err:
        raise ArgumentError(
            f"compilation_cache must be a directory jnet can create and write, got "
            f"{os.fspath(path)!r}, which cannot be created ({err.strerror}). Pick a "
            "writable directory, e.g. compilation_cache='~/.cache/jnet-xla'.") from None
    if not writable:
        raise ArgumentError(
            f"compilation_cache must be a directory jnet can write, got {directory!r}, which "
            "is not writable by this user. Pick a writable directory, e.g. "
            "compilation_cache='~/.cache/jnet-xla'.")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", MIN_ENTRY_SIZE_BYTES)
    compilation_cache.set_cache_dir(directory)
    compilation_cache.reset_cache()  # (re)opened in `directory` by the next compilation
    return directory
