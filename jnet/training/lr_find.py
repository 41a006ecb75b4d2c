"""`lr_find`: a learning-rate range test, as ONE population run.

Smith (2017) and fastai's ``lr_find`` train a single model while the rate grows exponentially
from step to step and read the loss along the way. Each point of that curve then mixes the
current rate with everything the earlier (smaller) rates did, so the curve bends late and the
usual rule (the minimum divided by 10) corrects for it by hand.

`lr_find` trains instead P copies of the model, from the SAME initial weights, each at its own
constant rate r_i = min_lr · (max_lr / min_lr)^(i / (P-1)) for the same short budget of
``steps`` updates: ``jnet.fit(..., population={"learning_rate": rates})``, all P members in
one compiled program (`jax.vmap`), so on small models it costs little more than one run. Point
i of the curve is the mean training loss of member i over its last epoch: what training at r_i
achieves, independent of every other rate. A member that diverges (NaN / inf) is recorded as
``inf``. Only the members' shuffles differ (fit derives them from ``fold_in(key, i)``).

Suggested rate: the rate of the lowest loss, halved. In a short budget the lowest loss sits
close to the stability edge (for gradient descent on a quadratic with largest Hessian
eigenvalue λ_max, between 1/λ_max and 2/λ_max, beyond which it diverges); half of it keeps a
margin for a longer run, where curvature usually grows as training proceeds (Cohen et al.
2021, "Gradient Descent on Neural Networks Typically Occurs at the Edge of Stability").
``result.best`` is the rate of the lowest loss itself.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import ArgumentError, ArgumentTypeError, entry_point
from jnet.layers.base import Layer
from jnet.training.driver import fit
from jnet.training.history import pyplot
from jnet.training.inference import evaluate
from jnet.training.options import Options
from jnet.training.result import FitResult, TrainingDiverged
from jnet.training.setup import as_key


@dataclasses.dataclass(frozen=True)
class LRFindResult:
    """The curve of `jnet.lr_find`.

    Attributes:
        rates: ``(P,)`` the learning rates tried, log-spaced, increasing.
        losses: ``(P,)`` the mean training loss of each rate's last epoch (``inf`` where the
            run diverged).
        initial_loss: the loss of the shared initial weights on the training data.
        initial_params, initial_state: those weights (and model state), where every rate
            started.
        best: the rate of the lowest loss.
        suggestion: ``best / 2`` (the module docstring says why).
        fit_result: the population's `FitResult` (``fit_result.member(i)`` is rate i's run).
    """

    rates: np.ndarray
    losses: np.ndarray
    initial_loss: float
    initial_params: Any
    initial_state: Any
    best: float
    suggestion: float
    fit_result: FitResult

    def plot(self, ax: Any = None) -> Any:
        """Draw the loss against the rate (log axis), with the initial loss and the
        suggestion; diverged rates are marked at the top. matplotlib is imported here (the
        ``plot`` extra).

        Args:
            ax: a matplotlib axes to draw into (default: a new figure's).

        Returns:
            The axes.
        """
        if ax is None:
            ax = pyplot().figure(figsize=(5, 3.5)).add_subplot()
        finite = np.isfinite(self.losses)
        top = max(2 * self.initial_loss, float(np.max(self.losses[finite], initial=0.0)))
        top = min(top, 4 * self.initial_loss) if self.initial_loss > 0 else top
        shown = np.minimum(np.where(finite, self.losses, top), top)
        ax.semilogx(self.rates, shown, "o-", label="loss after the budget")
        ax.semilogx(self.rates[~finite], shown[~finite], "rx", label="diverged")
        ax.axhline(self.initial_loss, color="grey", lw=0.8, ls=":", label="initial loss")
        ax.axvline(self.suggestion, color="C2", ls="--",
                   label=f"suggestion {self.suggestion:.2g}")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.legend(fontsize="small")
        return ax


def _factory(optimizer: Any) -> Callable[..., Any]:
    """``make_optimizer(learning_rate)`` from a rule name or a function.

    Raises:
        ArgumentTypeError: an optimizer instance (its rate is fixed) or anything else.
    """
    from jnet import optim

    if isinstance(optimizer, str):
        optim.get(optimizer)  # an unknown name fails here, with its suggestions
        return lambda learning_rate: optim.get(optimizer, learning_rate=learning_rate)
    if callable(optimizer) and not hasattr(optimizer, "update"):
        return optimizer
    raise ArgumentTypeError(
        f"optimizer must be a rule name ('adamw') or a function of the rate, e.g. `lambda "
        f"learning_rate: jnet.optim.adamw(learning_rate, weight_decay=0.01)`, got "
        f"{type(optimizer).__name__}: an optimizer's rate is already fixed.")


def _check_range(min_lr: Any, max_lr: Any, num: Any, steps: Any) -> None:
    ok = all(isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)
             for v in (min_lr, max_lr))
    if not ok or not 0 < min_lr < max_lr:
        raise ArgumentError(f"need 0 < min_lr < max_lr, got min_lr={min_lr!r}, "
                            f"max_lr={max_lr!r}. The default range is 1e-6 to 1.")
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 2:
        raise ArgumentError(f"num must be an int >= 2 (rates to try), got {num!r}.")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ArgumentError(f"steps must be a positive int (updates per rate), got {steps!r}.")


def _shared_start(model: Layer, key: Any, x: Any, num: int) -> tuple[Any, Any]:
    """One initialisation, repeated for the `num` members."""
    seed = as_key(key)
    in_shape = None if model.input_shape is not None else tuple(np.shape(x)[1:])
    _, params, state = model.init(jax.random.fold_in(seed, 0), in_shape)
    tile = lambda tree: jax.tree.map(  # noqa: E731
        lambda a: jnp.broadcast_to(a, (num, *jnp.shape(a))), tree)
    return tile(params), tile(state)


def lr_find(model: Layer, optimizer: str | Callable[..., Any], x: Any, y: Any, *,
            min_lr: float = 1e-6, max_lr: float = 1.0, num: int = 16, steps: int = 100,
            batch_size: int | None = 32, key: Any = 0, loss: Any = None,
            mask: Any = None) -> LRFindResult:
    """Learning-rate range test: train `num` copies for `steps` updates at log-spaced rates
    in one compiled population run; returns the curve and a suggested rate.

        found = jnet.lr_find(model, "adamw", x, y, steps=50)
        found.suggestion, found.plot()

    Args:
        model: a `Layer` (its head gives the loss, or pass ``loss``).
        optimizer: a rule name of `jnet.optim` (built with ``learning_rate=`` only) or a
            function ``make_optimizer(learning_rate) -> optimizer``.
        x, y: in-memory training arrays, N examples on axis 0.
        min_lr, max_lr: the range, 0 < min_lr < max_lr (default 1e-6 to 1).
        num: P, the rates tried (log-spaced, both ends included; default 16).
        steps: the updates each copy makes (default 100): the budget the curve answers for.
        batch_size: as in `jnet.fit` (None: full batch).
        key: int seed or PRNG key: the shared initialisation and the members' shuffles.
        loss, mask: as in `jnet.fit`.

    Returns:
        An `LRFindResult`: ``rates``, ``losses`` ``(P,)``, ``initial_loss``,
        ``initial_params`` / ``initial_state`` (where every rate started), ``best``,
        ``suggestion`` (``best / 2``), ``fit_result``, and ``.plot()``.

    Raises:
        ArgumentError / ArgumentTypeError: a bad range, an optimizer instance (a fixed rate),
            or anything `jnet.fit` refuses; also when no rate lowered the loss below its
            initial value (all diverged, or all too small for the budget).
    """
    with entry_point("jnet.lr_find"):
        make_optimizer = _factory(optimizer)
        _check_range(min_lr, max_lr, num, steps)
        rates = np.geomspace(min_lr, max_lr, num)
        params, state = _shared_start(model, key, x, num)
        with warnings.catch_warnings():  # the large rates are expected to diverge
            warnings.filterwarnings("ignore", message=".*population member.*diverged")
            try:
                run = fit(model, make_optimizer, x, y, steps=steps, batch_size=batch_size,
                          key=key, mask=mask, loss=loss, metrics=[], verbose=0,
                          population={"learning_rate": list(rates)},
                          options=Options(params=params, state=state))
            except TrainingDiverged as err:
                raise ArgumentError(f"every rate from {min_lr:g} to {max_lr:g} diverged. "
                                    "Lower min_lr (and max_lr).") from err
        losses = np.asarray(run.history["loss"][-1], np.float64)
        losses = np.where(np.isfinite(losses), losses, np.inf)
        params, state = jax.tree.map(lambda a: a[0], (params, state))
        initial = evaluate(model, params, state, x, y, loss=loss, metrics=[], mask=mask)["loss"]
        if not np.min(losses) < initial:
            raise ArgumentError(
                f"no rate from {min_lr:g} to {max_lr:g} lowered the training loss below its "
                f"initial {initial:.4g} in {steps} steps (they diverged, or are too small to "
                "move). Widen the range (lower min_lr, or raise max_lr) or raise steps.")
        best = float(rates[int(np.argmin(losses))])
        return LRFindResult(rates, losses, float(initial), params, state, best, best / 2, run)
