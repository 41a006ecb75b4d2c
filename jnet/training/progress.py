"""The progress bar of `jnet.fit`: tqdm (``tqdm.auto``, so Jupyter shows its widget).

The bar counts optimizer steps over the whole run; tqdm's rate is the steps per second. When an
epoch runs as one compiled `lax.scan`, the bar advances once per epoch (or once per chunk of
``steps_per_call`` steps): reading progress inside the compiled loop would force a host sync at
every step. The postfix shows the epoch, the loss and metrics (train and validation) and the
learning rate; after the first epoch also the compile time; for a population the best and
median value over the members. A run stopped early ends as finished (the bar jumps to its end).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from tqdm import TqdmWarning


def _format(value: float) -> str:
    tiny_or_huge = value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e4)
    return f"{value:.3e}" if tiny_or_huge else f"{value:.4f}"


class Progress:
    """A tqdm bar over `total` steps, silent when ``verbose=0``."""

    def __init__(self, total: int | None, *, initial: int = 0, epochs: int | None,
                 verbose: int = 1, population: bool = False):
        self.epochs = epochs
        self.population = population
        self.bar = None
        if verbose:
            with warnings.catch_warnings():
                # without ipywidgets, tqdm.auto falls back to the text bar and warns; the text
                # bar is the right thing then, so say nothing
                warnings.simplefilter("ignore", TqdmWarning)
                from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                            desc="training")

    def update(self, steps: int) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def epoch_end(self, epoch: int, logs: Mapping[str, Any],
                  compile_s: float | None = None) -> None:
        """Show the epoch's logs (best / median over a population) and, once, compile time."""
        if self.bar is None:
            return
        self.bar.set_description(f"epoch {epoch + 1}/{self.epochs or '?'}")
        postfix = {}
        for k, v in logs.items():
            if np.ndim(v) == 0:
                postfix[k] = _format(float(v))
                continue
            best = np.nanmax(v) if "acc" in k else np.nanmin(v)
            postfix[f"{k}(best)"] = _format(float(best))
            postfix[f"{k}(median)"] = _format(float(np.nanmedian(v)))
        if compile_s is not None:
            postfix["compile"] = f"{compile_s:.2f}s"
        self.bar.set_postfix(postfix, refresh=True)

    def finish(self) -> None:
        """End the bar as complete (a run stopped early did fewer steps than planned)."""
        if self.bar is not None:
            self.bar.total = self.bar.n
            self.bar.refresh()

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
