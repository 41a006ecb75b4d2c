"""The test run's XLA flag, in one place: `tests/conftest.py` sets it for the run, and scripts
whose output is a measurement or a cross-implementation comparison (`scripts/bench.py`) run
without it, as users run them."""

from __future__ import annotations

import os

# XLA's LLVM back end at -O0: a quarter less compile time, the same HLO optimisations; the
# machine code may round differently in the last bits (no fused multiply-adds).
O0 = "--xla_backend_optimization_level=0"


def default_env() -> dict[str, str]:
    """This process's environment without `O0`: for a subprocess that must run at XLA's
    defaults (bench.py compares jnet with the floor after Adam's sign-like first updates, which
    amplify last-bit rounding differences between two programs compiled at -O0)."""
    flags = os.environ.get("XLA_FLAGS", "").replace(O0, "").split()
    return {**os.environ, "XLA_FLAGS": " ".join(flags)}
