"""The pictures: activations with their derivatives, optimizer paths, learning-rate sweeps.

Every function returns a `matplotlib.figure.Figure` and never calls `plt.show()`: in Jupyter the
returned figure displays itself, in a script call `fig.savefig(path)`. Figures are created
without pyplot (no global figure list to leak in loops) unless you pass your own `ax`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

from jnet import activations
from jnet.errors import ArgumentError
from jnet.viz.descent import LossFn, Optimizer, descent_path, sweep_losses
from jnet.viz.surfaces import Bounds, Surface

# The documented formula of each named activation and of its derivative (mathtext), as in the
# docstrings of `jnet.activations`. Parameters appear by their symbol.
FORMULAS: dict[str, tuple[str, str]] = {
    "binary_step": (r"$[x \geq 0]$", r"$0$"),
    "linear": (r"$a\,x$", r"$a$"),
    "sigmoid": (r"$\sigma(x) = 1/(1+e^{-x})$", r"$\sigma(x)\,(1-\sigma(x))$"),
    "tanh": (r"$\tanh x$", r"$1-\tanh^2 x$"),
    "relu": (r"$\max(0, x)$", r"$[x > 0]$"),
    "leaky_relu": (r"$x$ if $x>0$ else $\alpha x$", r"$1$ if $x>0$ else $\alpha$"),
    "prelu": (r"$x$ if $x>0$ else $\alpha x$", r"$1$ if $x>0$ else $\alpha$"),
    "elu": (r"$x$ if $x>0$ else $\alpha(e^x-1)$", r"$1$ if $x>0$ else $\alpha e^x$"),
    "swish": (
        r"$x\,\sigma(\beta x)$",
        r"$\sigma(\beta x) + \beta x\,\sigma(\beta x)(1-\sigma(\beta x))$",
    ),
    "softmax": (r"$e^{x}/(e^{x}+e^{0})$", r"$s\,(1-s)$"),
    "log_softmax": (r"$x - \log(e^{x}+e^{0})$", r"$1-s$"),
    "softplus": (r"$\log(1+e^x)$", r"$\sigma(x)$"),
    "log_sigmoid": (r"$\log\sigma(x)$", r"$1-\sigma(x)$"),
}

# Functions of a whole vector, shown on the two-class input [x, 0] (their first output).
_VECTOR_FUNCTIONS = ("softmax", "log_softmax")
# Parameters a named activation needs before it can be plotted: PReLU's initial slope (He et al.).
_PLOT_DEFAULTS = {"prelu": {"alpha": 0.25}}


def _activation(name_or_fn: str | Callable) -> tuple[Callable, str, str | None, str | None]:
    """A scalar function `x -> f(x)`, its label, and its formula and derivative's (if known)."""
    fn = activations.get(name_or_fn)
    base, kwargs = (fn.func, dict(fn.keywords)) if isinstance(fn, functools.partial) else (fn, {})
    name = getattr(base, "__name__", "f")
    documented = activations.ALL.get(name) is base
    if isinstance(name_or_fn, str):
        kwargs = {**_PLOT_DEFAULTS.get(name, {}), **kwargs}
    fn = functools.partial(base, **kwargs) if kwargs else base
    label = name + (f"({', '.join(f'{k}={v:g}' for k, v in kwargs.items())})" if kwargs else "")
    if documented and name in _VECTOR_FUNCTIONS:
        label = f"{name}([x, 0])[0]"
        fn = functools.partial(_first_of_two_classes, fn)
    formula, derivative = FORMULAS.get(name, (None, None)) if documented else (None, None)
    return fn, label, formula, derivative


def _first_of_two_classes(vector_fn: Callable, x: jax.Array) -> jax.Array:
    return vector_fn(jnp.stack([x, jnp.zeros_like(x)]))[0]


def plot_activation(
    name_or_fn: str | Callable | Sequence[str | Callable],
    x_range: tuple[float, float] = (-5.0, 5.0),
    derivative: bool = True,
    ax: Axes | Sequence[Axes] | None = None,
    *,
    num: int = 400,
) -> Figure | SubFigure:
    """Plot one or several activations and their derivatives (by `jax.grad`, vmapped).

    Args:
        name_or_fn: an activation name (`"relu"`, see `jnet.activations.ALL`), an elementwise
            function (e.g. `functools.partial(jnet.activations.elu, alpha=0.5)`), or a list of
            them to compare. `softmax` / `log_softmax` are shown on the two-class input [x, 0]
            (where softmax equals the sigmoid); `prelu` with its initial slope 0.25.
        x_range: `(low, high)` of the x axis.
        derivative: also plot f'(x).
        ax: None for a new figure (function left, derivative right); one Axes to draw both on
            it (derivative dashed, same colour); or two Axes `(function_ax, derivative_ax)`.
        num: sample points (an even count keeps x = 0, where kinks sit, off the grid).

    Returns:
        The figure (the one `ax` belongs to, a `SubFigure` when it sits in one). Legends give
        each documented formula (named activations).
    """
    # anything but a name, a function or an iterable of them: activations.get says what is wrong
    items: list[Any] = [name_or_fn] if isinstance(name_or_fn, str) or callable(name_or_fn) \
        or not isinstance(name_or_fn, Iterable) else list(name_or_fn)
    if not items:
        raise ArgumentError("plot_activation: got an empty list of activations; pass a name, "
                            "a function or a non-empty list of them.")
    try:
        low, high = map(float, x_range)
    except (TypeError, ValueError):
        low = high = float("nan")  # reported below
    if not low < high:
        raise ArgumentError(f"plot_activation: x_range must be (low, high) with low < high, got "
                            f"{x_range!r}.")
    fig, (f_ax, d_ax) = _activation_axes(ax, derivative)
    xs = jnp.linspace(low, high, num)
    for i, item in enumerate(items):
        fn, label, formula, d_formula = _activation(item)
        ys = np.asarray(jax.jit(jax.vmap(fn))(xs))
        colour = f"C{i}"
        f_ax.plot(xs, ys, color=colour, label=label + (f": {formula}" if formula else ""))
        if d_ax is not None:  # derivative=True
            dys = np.asarray(jax.jit(jax.vmap(jax.grad(fn)))(xs))
            d_label = f"{label}′" + (f": {d_formula}" if d_formula else "")
            d_ax.plot(xs, dys, color=colour, linestyle="--" if d_ax is f_ax else "-",
                      label=d_label)
    for a, title in ((f_ax, "f(x)"), (d_ax, "f′(x) by jax.grad")):
        if a is None:
            continue
        a.axhline(0.0, color="0.75", linewidth=0.8, zorder=0)
        a.axvline(0.0, color="0.75", linewidth=0.8, zorder=0)
        a.set_xlabel("x")
        a.legend(fontsize="small")
        if d_ax is not f_ax:
            a.set_title(title)
    return fig


def _activation_axes(ax, derivative: bool) -> tuple[Figure | SubFigure, tuple[Axes, Axes | None]]:
    if ax is None:
        fig = Figure(figsize=(10.0 if derivative else 5.5, 4.0), layout="constrained")
        axes = fig.subplots(1, 2 if derivative else 1, squeeze=False)[0]
        return fig, (axes[0], axes[1] if derivative else None)
    if isinstance(ax, Axes):
        return ax.figure, (ax, ax if derivative else None)
    f_ax, d_ax = ax
    return f_ax.figure, (f_ax, d_ax if derivative else None)


def optimizer_paths(
    loss_fn_2d: LossFn | Surface,
    optimizers: Mapping[str, Optimizer],
    start: Sequence[float] | None = None,
    steps: int = 100,
    *,
    bounds: Bounds | None = None,
    minimum: Sequence[float] | None = None,
    value_at_minimum: float | None = None,
    resolution: int = 200,
) -> Figure:
    """Contour plot of a 2-D loss with the path of each optimizer, and the loss per step.

    Every optimizer starts at the same point and takes `steps` full-gradient updates (computed
    by `descent_path`, one `lax.scan` each). A path that diverges stops at its last finite
    point and its legend says when.

    Args:
        loss_fn_2d: `xy -> scalar` for `xy` of shape `(2,)`, e.g. `jnet.viz.surfaces.rosenbrock`;
            a `Surface` also supplies the defaults of `start`, `bounds`, `minimum` and
            `value_at_minimum`.
        optimizers: `{label: optimizer}`, e.g. `{"Adam": jnet.optim.adam(0.1)}`.
        start: the common start point `(x, y)`.
        steps: updates per optimizer.
        bounds: `((x_lo, x_hi), (y_lo, y_hi))` of the contour plot; default: the surface's, else
            the box around all paths.
        minimum: marked with a star on the contour plot.
        value_at_minimum: f*; the right panel then shows the gap f − f* on a log scale.
        resolution: grid points per axis for the contours.

    Returns:
        The figure: left, contours (log-spaced levels) and paths; right, loss per step.
    """
    if not isinstance(optimizers, Mapping) or not optimizers:
        raise ArgumentError("optimizer_paths: `optimizers` must be a non-empty dict {label: "
                            f"optimizer}}, e.g. {{'Adam': jnet.optim.adam(0.1)}}, got "
                            f"{optimizers!r:.60}.")
    surface = loss_fn_2d if isinstance(loss_fn_2d, Surface) else None
    if surface is not None:
        start = surface.start if start is None else start
        bounds = surface.bounds if bounds is None else bounds
        minimum = surface.minimum if minimum is None else minimum
        value_at_minimum = surface.value_at_minimum if value_at_minimum is None \
            else value_at_minimum
    if start is None:
        raise ArgumentError("optimizer_paths: pass `start=(x, y)` (only a Surface has a default).")
    point = jnp.asarray(start, dtype=float)
    if point.shape != (2,):
        raise ArgumentError(f"optimizer_paths: `start` must be a point (x, y), got shape "
                            f"{point.shape}.")

    runs = {label: jax.jit(functools.partial(descent_path, loss_fn_2d, opt, steps=steps))(point)
            for label, opt in optimizers.items()}
    paths = {label: _finite_prefix(np.asarray(run.path)) for label, run in runs.items()}
    losses = {label: _finite_prefix(np.asarray(run.losses)) for label, run in runs.items()}
    if bounds is None:
        bounds = _box_around(np.concatenate(list(paths.values())))

    fig = Figure(figsize=(12.0, 5.0), layout="constrained")
    path_ax, loss_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.2, 1.0]})
    _contours(path_ax, loss_fn_2d, bounds, resolution, value_at_minimum)
    path_ax.plot(*np.asarray(point), "o", color="black", markersize=6, label="_start", zorder=5)
    if minimum is not None:
        path_ax.plot(*minimum, "*", color="gold", markeredgecolor="black", markersize=15,
                     label="_minimum", zorder=5)
    for i, label in enumerate(runs):
        name = label if len(losses[label]) == steps + 1 else \
            f"{label} (diverged at step {len(losses[label])})"
        path_ax.plot(paths[label][:, 0], paths[label][:, 1], "-", color=f"C{i}", marker=".",
                     markersize=3, linewidth=1.5, label=name)
        gap = losses[label] - value_at_minimum if value_at_minimum is not None else losses[label]
        loss_ax.plot(np.arange(len(gap)), gap, color=f"C{i}", label=name)
    (x_lo, x_hi), (y_lo, y_hi) = bounds
    path_ax.set(xlim=(x_lo, x_hi), ylim=(y_lo, y_hi), xlabel="x", ylabel="y")
    path_ax.set_title(_surface_title(loss_fn_2d))
    path_ax.legend(fontsize="small", loc="best")
    _log_scale(loss_ax, np.concatenate(list(losses.values())), value_at_minimum is not None)
    loss_ax.set(xlabel="step", ylabel="f − f*" if value_at_minimum is not None else "loss")
    loss_ax.set_title("loss per step")
    loss_ax.grid(True, which="major", alpha=0.3)
    return fig


def learning_rate_sweep(
    make_optimizer: Callable[[jax.Array], Optimizer],
    learning_rates: Sequence[float],
    loss_fn: LossFn,
    params: Any,
    steps: int = 100,
    *,
    value_at_minimum: float | None = None,
    title: str | None = None,
) -> Figure:
    """Loss curves of one optimizer at several learning rates on one problem.

    All runs are computed together by `sweep_losses` (one `jax.vmap` over the learning rate,
    one compilation). Too small a rate crawls, a good one drops fast, too large a one
    oscillates or diverges; diverged curves stop at their last finite loss, marked ×.

    Args:
        make_optimizer: `learning_rate -> optimizer`, e.g. `jnet.optim.sgd` or
            `lambda lr: jnet.optim.momentum(lr, 0.9)`.
        learning_rates: the rates to compare.
        loss_fn: `params -> scalar` (a `Surface`, or a network's loss with the data closed over).
        params: the common initial parameters (any pytree).
        steps: updates per run.
        value_at_minimum: f*; plots then show the gap f − f* (default: the Surface's, else none).
        title: figure title (default: names the problem when it is a Surface).

    Returns:
        The figure: left, loss per step for each rate; right, final loss against the rate.
    """
    if value_at_minimum is None and isinstance(loss_fn, Surface):
        value_at_minimum = loss_fn.value_at_minimum
    rates = np.asarray(learning_rates, dtype=float)
    curves = np.asarray(sweep_losses(make_optimizer, rates, loss_fn, params, steps))
    offset = value_at_minimum or 0.0

    fig = Figure(figsize=(12.0, 4.5), layout="constrained")
    curve_ax, final_ax = fig.subplots(1, 2)
    colours = _rate_colours(len(rates))
    final_values: list[float] = []
    diverged: list[int] = []
    best = int(np.nanargmin(np.where(np.isfinite(curves[:, -1]), curves[:, -1], np.inf))) \
        if np.isfinite(curves[:, -1]).any() else None
    for i, (rate, curve) in enumerate(zip(rates, curves, strict=True)):
        kept = _finite_prefix(curve) - offset
        label = f"lr = {rate:.3g}"
        if len(kept) < steps + 1:
            label += f" (diverged at step {len(kept)})"
            diverged.append(i)
        elif i == best:
            label += " (best)"
        curve_ax.plot(np.arange(len(kept)), kept, color=colours[i], label=label)
        if len(kept) < steps + 1 and len(kept):
            curve_ax.plot(len(kept) - 1, kept[-1], "x", color=colours[i], markersize=9,
                          label="_diverged")
        final_values.append(kept[-1] if len(kept) else np.nan)
    finals = np.asarray(final_values)
    converged = [i for i in range(len(rates)) if i not in diverged]
    _log_scale(curve_ax, curves.ravel(), value_at_minimum is not None)
    curve_ax.set(xlabel="step", ylabel="f − f*" if value_at_minimum is not None else "loss",
                 title="loss per step")
    curve_ax.legend(fontsize="small")
    curve_ax.grid(True, alpha=0.3)

    final_ax.plot(rates[converged], finals[converged], "o-", color="0.3", label="final loss")
    if diverged:
        final_ax.plot(rates[diverged], finals[diverged], "x", color="red", markersize=9,
                      label="loss where it diverged")
    final_ax.set_xscale("log")
    _log_scale(final_ax, finals, value_at_minimum is not None)
    final_ax.set(xlabel="learning rate", ylabel=f"after {steps} steps",
                 title="final loss against learning rate")
    final_ax.legend(fontsize="small")
    final_ax.grid(True, which="both", alpha=0.3)
    if title is None and isinstance(loss_fn, Surface):
        title = f"learning-rate sweep on {loss_fn.name}"
    if title:
        fig.suptitle(title)
    return fig


def _finite_prefix(values: np.ndarray) -> np.ndarray:
    """The rows of `values` before the first non-finite one (a diverged run's last good step)."""
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    return values[: int(np.argmax(bad)) if bad.any() else len(values)]


def _box_around(points: np.ndarray, margin: float = 0.1) -> Bounds:
    """``((x_lo, x_hi), (y_lo, y_hi))`` around `(n, 2)` points, widened by `margin`."""
    low, high = points.min(axis=0), points.max(axis=0)
    pad = margin * np.maximum(high - low, 1e-3)
    (x_lo, y_lo), (x_hi, y_hi) = low - pad, high + pad
    return (float(x_lo), float(x_hi)), (float(y_lo), float(y_hi))


def _contours(ax: Axes, loss_fn: LossFn, bounds, resolution: int,
              value_at_minimum: float | None) -> None:
    """Filled contours of log(f − f*) (or of f − min over the grid), so valleys show."""
    (x_lo, x_hi), (y_lo, y_hi) = bounds
    xs, ys = np.linspace(x_lo, x_hi, resolution), np.linspace(y_lo, y_hi, resolution)
    grid = jnp.stack(jnp.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    values = np.asarray(jax.vmap(loss_fn)(grid)).reshape(resolution, resolution)
    floor = value_at_minimum if value_at_minimum is not None else values.min()
    gap = np.maximum(values - floor, 0.0)
    low = max(np.percentile(gap, 0.5), 1e-6 * max(gap.max(), 1e-12), 1e-12)
    levels = np.geomspace(low, max(gap.max(), low * 10), 16)
    ax.contourf(xs, ys, np.log10(np.maximum(gap, low)), levels=np.log10(levels), cmap="Blues_r",
                alpha=0.55, extend="min")
    ax.contour(xs, ys, np.log10(np.maximum(gap, low)), levels=np.log10(levels), colors="0.45",
               linewidths=0.5)


def _surface_title(loss_fn: LossFn | Surface) -> str:
    if isinstance(loss_fn, Surface):
        return f"{loss_fn.name}: {loss_fn.formula}"
    return getattr(loss_fn, "__name__", "loss surface")


def _log_scale(ax: Axes, values: np.ndarray, gap: bool) -> None:
    """A log y axis for a gap f − f* ≥ 0 (a run that lands exactly on f* ends its curve there)
    or for a positive loss; symlog when a loss of unknown minimum reaches 0 or below."""
    values = values[np.isfinite(values)]
    if gap or (values > 0).all():
        ax.set_yscale("log", nonpositive="mask")
    else:
        positive = np.abs(values[values != 0])
        ax.set_yscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0)


def _rate_colours(n: int) -> list:
    return [colormaps["viridis"](v) for v in np.linspace(0.0, 0.9, n)]
