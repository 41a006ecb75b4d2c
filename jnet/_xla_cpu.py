"""The one XLA:CPU setting jnet changes, and only before jax starts its CPU client.

jaxlib 0.10's XLA:CPU hands 2-D convolutions with more than 16 channels to YNNPACK, and runs
each of them on **one thread** however many cores the machine has (process CPU time / wall time
1.00 for every convolution of the bench CNNs at 2 threads, where torch keeps both cores busy;
`scripts/bench/conv_ops.py` prints it). XLA's other convolution kernels (Eigen) use every core:
with them the bench CNN's training step at default threads on 2 cores took 37.7 instead of
55.6 ms, torch eager 38.4 (docs/speed.md, "Where the CNN's time goes"); on one core they cost
the same. So `import jnet` adds

    --xla_cpu_experimental_ynn_fusion_type=-individual_convolution

to ``XLA_FLAGS`` when all of these hold:

- jax has not started its CPU client yet (XLA reads ``XLA_FLAGS`` once, at that point; after
  it, the flag could not take effect, so jnet leaves the environment alone);
- ``XLA_FLAGS`` does not mention ``xla_cpu_experimental_ynn_fusion_type`` (your setting wins);
- the installed jaxlib is one this was measured on (`TESTED_JAXLIB`): XLA aborts the process
  on a flag it does not know, and this one is experimental;
- ``JNET_XLA_CPU_DEFAULTS`` is not ``0`` (the opt-out).

`APPLIED` says what was added (empty when nothing was). Only which kernel runs a convolution
changes: results agree to float rounding, dots and everything else compile as before.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

THREADED_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
TESTED_JAXLIB = ((0, 10), (0, 11))  # [from, to): the jaxlib versions measured with the flag
OPT_OUT = "JNET_XLA_CPU_DEFAULTS"


def _jaxlib_version() -> tuple[int, ...]:
    import jaxlib.version

    return tuple(int(p) for p in jaxlib.version.__version__.split(".")[:2] if p.isdigit())


def _backend_started() -> bool:
    """Has jax created a backend client (and so read XLA_FLAGS)? True when unsure."""
    try:
        from jax._src import xla_bridge
    except ImportError:
        return True
    return bool(getattr(xla_bridge, "_backends", True))


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> tuple[str, ...]:
    """Add `THREADED_CONVOLUTIONS` to ``environ["XLA_FLAGS"]`` under the conditions of the
    module docstring; returns the flags added (``()`` when none)."""
    flags = environ.get("XLA_FLAGS", "")
    if (environ.get(OPT_OUT, "1") == "0" or "xla_cpu_experimental_ynn_fusion_type" in flags
            or not TESTED_JAXLIB[0] <= _jaxlib_version() < TESTED_JAXLIB[1]
            or _backend_started()):
        return ()
    environ["XLA_FLAGS"] = f"{flags} {THREADED_CONVOLUTIONS}".strip()
    return (THREADED_CONVOLUTIONS,)


APPLIED: tuple[str, ...] = apply_defaults()  # importing jnet imports this module first
