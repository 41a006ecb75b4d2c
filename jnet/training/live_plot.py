"""`LivePlot`: the callback that redraws ``history.plot()`` after each epoch."""

from __future__ import annotations

import os
from typing import Any

from jnet.errors import ArgumentTypeError
from jnet.training.callbacks import Callback, RunState
from jnet.training.history import pyplot


class LivePlot(Callback):
    """Redraw ``run.history.plot()`` after each epoch.

    In a notebook it updates one figure in place; elsewhere (a script) it rewrites the PNG at
    `path` after each epoch and closes the figure so none pile up.

    Args:
        path: the PNG written outside a notebook (default ``history.png`` in the working
            directory).
        keys: base names to draw (default: all).

    Raises:
        ArgumentTypeError: `path` is not a path.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, keys: list[str] | None = None):
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise ArgumentTypeError(f"path must be a file path or None, got "
                                    f"{type(path).__name__}.", where="jnet.callbacks.LivePlot")
        self.keys = keys
        self.path = os.fspath(path) if path is not None else "history.png"
        self._handle: Any = None
        self._fig: Any = None

    def on_epoch_end(self, run: RunState) -> None:
        plt = pyplot()
        display = _notebook_display()
        if display is None:
            fig = run.history.plot(self.keys)
            fig.savefig(self.path)
            plt.close(fig)
            return
        if self._fig is None:
            self._fig = plt.figure()
            plt.close(self._fig)  # keep the inline backend from showing a second copy
        fig = run.history.plot(self.keys, fig=self._fig)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)


def _notebook_display() -> Any:
    """IPython's `display` inside a running notebook kernel, else None."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    shell = get_ipython()
    return display if shell is not None and hasattr(shell, "kernel") else None
