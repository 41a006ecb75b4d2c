"""`Options`: the rarely changed knobs of `jnet.fit`, as one typed value.

    jnet.fit(model, "adam", x, y, epochs=3, key=0,
             options=jnet.training.Options(scan=False, validation_batch_size=1024))

Everything people set every day stays a keyword of `fit`; these are for tuning the compiled
loop, starting from given trees, or skipping the data check.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from jnet.errors import ArgumentError, ArgumentTypeError, entry_point
from jnet.training import checks, compile_cache
from jnet.typing import PyTree


@dataclasses.dataclass(frozen=True)
class Options:
    """Less common settings of `jnet.fit` (all optional).

    Args:
        scan: run each epoch of in-memory data as `lax.scan` calls (True), or one jitted call
            per step (False). Default None: scan when the data fits on the device (a quarter
            of its memory).
        steps_per_call: with ``scan``, steps per compiled call (default: the whole epoch); the
            progress bar advances after each call.
        validation_batch_size: batch size of the validation pass (None: all at once;
            default 256).
        check_finite: check once, before training, that the data holds no NaN / inf.
        drop_remainder: drop a short last batch instead of padding it with masked examples.
        eval_weights: the weights the validation pass uses: ``"optimizer"`` (default) the
            ones the optimizer declares (`jnet.optim.eval_params`: the average θ̄ of `ema`,
            x_t of the schedule-free rules, the params themselves for every other rule), or
            ``"params"``: the params being trained. Training always continues from the params.
        params, state, opt_state: start from these instead of ``model.init`` /
            ``optimizer.init`` (checked against the model's structure and shapes; copied,
            never donated).
        compilation_cache: a directory (str or `os.PathLike`; created if missing) for JAX's
            persistent compilation cache: `fit` turns it on before compiling, so a later
            process that compiles the same programs (same model, shapes, jax version and
            device) reads them from disk instead of compiling. It stays on for the rest of
            the process and covers every compilation. Default None: no cache. Only trusted
            users may write to the directory (an entry is executable code).

    Raises:
        ArgumentError / ArgumentTypeError: a value of the wrong kind, named.
    """

    scan: bool | None = None
    steps_per_call: int | None = None
    validation_batch_size: int | None = 256
    check_finite: bool = True
    drop_remainder: bool = False
    eval_weights: str = "optimizer"
    params: PyTree = None
    state: PyTree = None
    opt_state: PyTree = None
    compilation_cache: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        with entry_point("jnet.training.Options"):
            checks.positive_int("steps_per_call", self.steps_per_call, allow_none=True)
            checks.positive_int("validation_batch_size", self.validation_batch_size,
                                allow_none=True)
            for name in ("check_finite", "drop_remainder"):
                if not isinstance(getattr(self, name), bool):
                    raise ArgumentTypeError(f"{name} must be True or False, got "
                                            f"{getattr(self, name)!r}.")
            if self.eval_weights not in ("optimizer", "params"):
                raise ArgumentError(f"eval_weights must be 'optimizer' (the weights the "
                                    f"optimizer declares, e.g. ema's average) or 'params', got "
                                    f"{self.eval_weights!r}.")
            compile_cache.check_path(self.compilation_cache)
            if self.scan is not None and not isinstance(self.scan, bool):
                raise ArgumentTypeError(f"scan must be True, False or None (automatic), got "
                                        f"{self.scan!r}.")


def as_options(value: Any) -> Options:
    """``options=`` of `jnet.fit`: an `Options` or None (the defaults).

    Raises:
        ArgumentTypeError: anything else.
    """
    if value is None:
        return Options()
    if not isinstance(value, Options):
        raise ArgumentTypeError(f"options must be a jnet.training.Options(...), got "
                                f"{type(value).__name__}.")
    return value
