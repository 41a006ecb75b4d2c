"""Fixtures shared by several test modules (pytest finds them here; nothing is imported) and
the run-wide XLA compilation cache."""

import os
import shutil
import tempfile

from _xla_flags import O0

# XLA's LLVM back end at -O0 in the tests (and the scripts and notebooks they start, except
# bench.py: `_xla_flags.default_env`): a quarter less compile time with the same HLO
# optimisations. The machine code may round differently in the last bits (no fused
# multiply-adds), so comparisons of two different float32 programs use float64 or
# float32-sized tolerances. Speed is measured by scripts/bench.py at XLA's defaults, never
# here. Set before jax creates its CPU client, which reads XLA_FLAGS once.
if O0 not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {O0}".strip()

import jax
import pytest

_CACHE_DIR = pytest.StashKey[str]()


@pytest.fixture(scope="module")
def fast_compiling_prng():
    """Use the non-partitionable threefry while a module's tests run.

    With jax 0.10 on CPU the default (partitionable) threefry makes XLA take 15-30 s to compile
    a random draw of some small shapes such as (3, 3, 4, 9); the classic one takes ~1 s. Only
    the random bits change, not what the tests check. A module opts in with
    ``pytestmark = pytest.mark.usefixtures("fast_compiling_prng")``.
    """
    with jax.threefry_partitionable(False):
        yield


# --- One XLA compilation cache for the whole run -------------------------------------------
# Tests build fresh closures around the same models, steps and optimizers, so one process
# compiles many identical programs; jit's in-memory cache only knows function objects. JAX's
# persistent cache keys a compiled program by its HLO, compiler options and versions, so an
# identical program is compiled once per run and read back afterwards, by either xdist worker
# (a third of the driver tests' time, ~15% of the whole run's; what is compiled, and so
# every result, is unchanged).
# The directory lives for one run: the controller makes it and hands it to the workers.
_CACHE_KEY = "jnet_xla_cache_dir"


def _use_compilation_cache(directory: str) -> None:
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_configure(config):
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None:  # an xdist worker: the controller's directory
        _use_compilation_cache(worker_input[_CACHE_KEY])
        return
    directory = tempfile.mkdtemp(prefix="jnet-test-xla-cache-")
    config.stash[_CACHE_DIR] = directory
    _use_compilation_cache(directory)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):  # xdist (controller side): pass the directory to a worker
    node.workerinput[_CACHE_KEY] = node.config.stash[_CACHE_DIR]


def pytest_unconfigure(config):
    if getattr(config, "workerinput", None) is None and _CACHE_DIR in config.stash:
        shutil.rmtree(config.stash[_CACHE_DIR], ignore_errors=True)
