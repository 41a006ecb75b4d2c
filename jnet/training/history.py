"""Training history: every logged value per epoch, and its plot.

``history["loss"]`` is the list of per-epoch training losses, ``history["val_loss"]`` the
validation losses, ``history["lr"]`` the learning rate at the end of each epoch, and so on for
every metric (Keras's ``History.history``, as a small object you can also index directly).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:  # matplotlib is optional: the `plot` extra
        raise ImportError(
            "History.plot needs matplotlib, which jnet does not install by default. Install "
            "the plot extra: `pip install 'jnet[plot]'` (or `pip install matplotlib`)."
        ) from e
    return plt


class History(Mapping):
    """Per-epoch values of every logged quantity: a read-only mapping ``name -> list[float]``."""

    def __init__(self, values: Mapping[str, list[float]] | None = None):
        self._values: dict[str, list[float]] = {k: list(v) for k, v in (values or {}).items()}

    def append(self, logs: Mapping[str, float]) -> None:
        """Record one epoch's logs (new names start here; names missing this epoch get NaN)."""
        epochs = len(self)
        for name in logs:
            self._values.setdefault(name, [float("nan")] * epochs)
        for name, values in self._values.items():
            values.append(float(logs.get(name, float("nan"))))

    def __getitem__(self, name: str) -> list[float]:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        """Number of keys, as for any mapping; use `epochs` for the number of epochs."""
        return len(self._values)

    @property
    def epochs(self) -> int:
        """Number of epochs recorded."""
        return max((len(v) for v in self._values.values()), default=0)

    @property
    def history(self) -> dict[str, list[float]]:
        """The values as a plain dict (Keras's ``History.history``)."""
        return {k: list(v) for k, v in self._values.items()}

    def __repr__(self) -> str:
        last = ", ".join(f"{k}={v[-1]:.4g}" for k, v in self._values.items() if v)
        return f"History(epochs={self.epochs}{', last: ' + last if last else ''})"

    def plot(self, keys: list[str] | None = None, *, fig: Any = None, title: str | None = None):
        """Draw each quantity against the epoch, training and validation on one axes.

        One panel per base name (``loss``, ``accuracy``, ``lr``, ...): the training curve and,
        when present, the ``val_`` curve of the same quantity. The learning rate panel uses a
        log scale. matplotlib is imported here (the ``plot`` extra). Returns the figure.

        Args:
            keys: base names to draw (default: all).
            fig: a matplotlib figure to draw into (cleared first), e.g. for live updates.
            title: a title over the panels.
        """
        plt = _pyplot()
        bases = [k for k in self._values if not k.startswith("val_")]
        bases += [k[4:] for k in self._values if k.startswith("val_") and k[4:] not in bases]
        if keys is not None:
            missing = [k for k in keys if k not in bases]
            if missing:
                raise KeyError(f"History.plot: no values named {missing}; recorded: {bases}.")
            bases = list(keys)
        if fig is None:
            fig = plt.figure(figsize=(4.2 * max(len(bases), 1), 3.2))
        else:
            fig.clear()
        epochs = range(1, self.epochs + 1)
        for i, base in enumerate(bases):
            ax = fig.add_subplot(1, max(len(bases), 1), i + 1)
            for name, style in ((base, "-o"), (f"val_{base}", "--s")):
                if name in self._values:
                    ax.plot(epochs, self._values[name], style, markersize=3,
                            label="validation" if name.startswith("val_") else "train")
            ax.set_xlabel("epoch")
            ax.set_title(base)
            if base == "lr":
                ax.set_yscale("log")
            if f"val_{base}" in self._values:
                ax.legend()
            ax.grid(alpha=0.3)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig


class LivePlot:
    """Callback that redraws ``history.plot()`` after each epoch, in place, in a notebook.

    Use ``jnet.fit(..., live_plot=True)`` or ``callbacks=[LivePlot()]``. Outside IPython it does
    nothing (the progress bar already reports each epoch).
    """

    def __init__(self, keys: list[str] | None = None):
        self.keys = keys
        self._handle = None
        self._fig = None

    def __call__(self, epoch: int, logs: Mapping[str, float], history: History) -> bool:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return False
        if get_ipython() is None:
            return False
        plt = _pyplot()
        if self._fig is None:
            self._fig = plt.figure()
            plt.close(self._fig)  # keep the inline backend from showing a second copy
        fig = history.plot(self.keys, fig=self._fig)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        return False
