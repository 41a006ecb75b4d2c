"""Training history: every logged value per epoch, and its plot.

``history["loss"]`` is the list of per-epoch training losses, ``history["val_loss"]`` the
validation losses, ``history["lr"]`` the learning rate at the end of each epoch (one
``history["lr/<group>"]`` per parameter group with `jnet.optim.partition`), and so on for
every metric (Keras's ``History.history``, as a small object you can also index directly).

A population run (``jnet.fit(..., population=...)``) records a ``(P,)`` array per epoch for
each name, one value per member; ``history.member(i)`` is member i's own history and
``history.plot()`` draws one curve per member. `History` is a pytree (registered here), so a
`FitResult` holding it can be checkpointed whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np

from jnet.errors import ArgumentError, ArgumentKeyError


def _value(v: Any) -> float | np.ndarray:
    """A logged value: a float, or a float array of per-member values."""
    v = np.asarray(v, np.float64)
    return float(v) if v.ndim == 0 else v


def pyplot():
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

    def __init__(self, values: Mapping[str, Any] | None = None):
        self._values: dict[str, list] = {k: [_value(e) for e in v]
                                         for k, v in (values or {}).items()}

    def append(self, logs: Mapping[str, Any]) -> None:
        """Record one epoch's logs (new names start here; names missing this epoch get NaN)."""
        epochs = self.epochs
        for name in logs:
            self._values.setdefault(name, [float("nan")] * epochs)
        for name, values in self._values.items():
            values.append(_value(logs.get(name, float("nan"))))

    def member(self, i: int) -> History:
        """Member `i`'s history of a population run (per-epoch floats)."""
        return History({k: [v[i] if isinstance(v, np.ndarray) else v for v in values]
                        for k, values in self._values.items()})

    def __getitem__(self, name: str) -> list[float]:
        """The per-epoch values of `name`.

        Raises:
            ArgumentKeyError: nothing was logged under `name` (a `KeyError`); the message
                lists what was.
        """
        try:
            return self._values[name]
        except (KeyError, TypeError):  # TypeError: an unhashable name such as a list
            hint = (" Validation values (val_*) are logged only with validation_data=."
                    if isinstance(name, str) and name.startswith("val_") else "")
            raise ArgumentKeyError(f"the history has no {name!r}; it logged "
                                   f"{sorted(self._values)}.{hint}") from None

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
        last = ", ".join(f"{k}={np.median(v[-1]):.4g}" for k, v in self._values.items() if v)
        return f"History(epochs={self.epochs}{', last: ' + last if last else ''})"

    def plot(self, keys: str | list[str] | None = None, *, fig: Any = None,
             title: str | None = None):
        """Draw each quantity against the epoch, training and validation on one axes.

        One panel per base name (``loss``, ``accuracy``, ``lr``, ...): the training curve and,
        when present, the ``val_`` curve of the same quantity (one of each per member for a
        population). The x axis shows whole epochs; the learning rate panel uses a log scale.
        matplotlib is imported here (the ``plot`` extra). Returns the figure.

        Args:
            keys: base names to draw (default: all); one name may be given as a string.
            fig: a matplotlib figure to draw into (cleared first), e.g. for live updates.
            title: a title over the panels.

        Returns:
            The matplotlib figure.

        Raises:
            ArgumentError: a key that was never logged.
        """
        plt = pyplot()
        bases = [k for k in self._values if not k.startswith("val_")]
        bases += [k[4:] for k in self._values if k.startswith("val_") and k[4:] not in bases]
        if isinstance(keys, str):  # one name, not its letters
            keys = [keys]
        if keys is not None:
            missing = [k for k in keys if k not in bases]
            if missing:
                raise ArgumentError(f"no values named {missing}; recorded: {bases}.",
                                    where="History.plot")
            bases = list(keys)
        if fig is None:
            fig = plt.figure(figsize=(4.2 * max(len(bases), 1), 3.2))
        else:
            fig.clear()
        from matplotlib.ticker import MaxNLocator

        epochs = np.arange(1, self.epochs + 1)
        for i, base in enumerate(bases):
            ax = fig.add_subplot(1, max(len(bases), 1), i + 1)
            for name, style in ((base, "-o"), (f"val_{base}", "--s")):
                if name in self._values:
                    self._curves(ax, epochs, name, style)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_title(base)
            if base == "lr" or base.startswith("lr/"):
                ax.set_yscale("log")
            if f"val_{base}" in self._values or self._population(base):
                ax.legend(fontsize="small")
            ax.grid(alpha=0.3)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return fig

    def _population(self, name: str) -> bool:
        return any(isinstance(v, np.ndarray) for v in self._values.get(name, ()))

    def _curves(self, ax: Any, epochs: np.ndarray, name: str, style: str) -> None:
        """Draw `name` on `ax`: one curve, or one per member of a population."""
        kind = "validation" if name.startswith("val_") else "train"
        values = self._values[name]
        if not self._population(name):
            ax.plot(epochs, values, style, markersize=3, label=kind)
            return
        table = np.stack([np.broadcast_to(v, np.shape(values[-1])) for v in values])
        for i in range(table.shape[1]):
            ax.plot(epochs, table[:, i], style, markersize=3, color=f"C{i % 10}",
                    label=f"{kind} {i}")


jax.tree_util.register_pytree_node(
    History, lambda h: ((h.history,), None), lambda _, children: History(children[0])
)
