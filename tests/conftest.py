"""Fixtures shared by several test modules (pytest finds them here; nothing is imported)."""

import jax
import pytest


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
