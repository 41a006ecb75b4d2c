"""Standard 2-D test surfaces for watching optimizers move downhill.

Each surface is a `Surface`: a pure function of a point `xy` of shape `(2,)` returning a scalar
(so `jax.grad(surfaces.rosenbrock)` works), plus what a plot needs to frame it: where its
minimum is, the loss there, a window and a start point that show the surface's difficulty.

- `rosenbrock`: (1 − x)² + 100 (y − x²)²; minimum (1, 1), f = 0. A long, curved, flat valley.
- `beale`: (1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)²; minimum (3, 0.5), f = 0.
  Steep walls around flat plateaus.
- `ill_conditioned_quadratic`: (x² + 10 y²) / 2; minimum (0, 0), f = 0. Curvature 10× larger
  along y, so gradient descent zig-zags across the valley.
- `saddle`: x² + y⁴/4 − y²/2; minima (0, ±1), f = −1/4 (`minimum` records (0, 1)). A saddle
  point at (0, 0) where plain gradient descent stalls.

`quadratic(condition_number, angle)` builds further convex quadratics.
References: Rosenbrock (1960), The Computer Journal 3(3); Beale (1958), "On an iterative method
for finding a local minimum of a function of more than one variable".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import ArgumentError, ArgumentTypeError

Bounds = tuple[tuple[float, float], tuple[float, float]]


@dataclasses.dataclass(frozen=True)
class Surface:
    """A 2-D loss surface: call it on a point of shape `(2,)` to get a scalar loss.

    Attributes:
        fn: `xy -> scalar`, pure and differentiable.
        name: short name for titles.
        formula: the formula in matplotlib mathtext, for titles.
        minimum: the (or one) global minimiser `(x*, y*)`.
        value_at_minimum: `f(x*, y*)`; plots show the gap `f − f*` on a log scale.
        bounds: `((x_lo, x_hi), (y_lo, y_hi))`, a window that shows the interesting part.
        start: a start point from which the surface's difficulty shows.
    """

    fn: Callable[[jax.Array], jax.Array]
    name: str
    formula: str
    minimum: tuple[float, float]
    value_at_minimum: float
    bounds: Bounds
    start: tuple[float, float]

    def __call__(self, xy: jax.Array) -> jax.Array:
        xy = jnp.asarray(xy)
        if xy.shape != (2,):
            raise ArgumentError(
                f"Surface {self.name!r} takes one point of shape (2,), got shape {xy.shape}. "
                "Use jax.vmap(surface) for a batch of points."
            )
        return self.fn(xy)


def _rosenbrock(xy: jax.Array) -> jax.Array:
    x, y = xy
    return (1.0 - x) ** 2 + 100.0 * (y - x**2) ** 2


def _beale(xy: jax.Array) -> jax.Array:
    x, y = xy
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _saddle(xy: jax.Array) -> jax.Array:
    x, y = xy
    return x**2 + y**4 / 4.0 - y**2 / 2.0


def quadratic(condition_number: float = 10.0, angle: float = 0.0) -> Surface:
    """The convex quadratic f(p) = ½ pᵀ R diag(1, κ) Rᵀ p, R a rotation by `angle` radians.

    Its minimum is p = 0 with f = 0; the Hessian's eigenvalues are 1 and κ =
    `condition_number`, so gradient descent converges for learning rates below 2/κ and
    zig-zags across the narrow direction when close to it. With `angle = 0` the narrow
    direction is the y axis, which per-coordinate methods (AdaGrad, RMSprop, Adam) rescale
    exactly; a rotation takes that advantage away.
    """
    for name, value in (("condition_number", condition_number), ("angle", angle)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise ArgumentTypeError(f"quadratic: {name} must be a real number, got "
                                    f"{type(value).__name__} {value!r}.")
    if not condition_number >= 1.0:
        raise ArgumentError(
            f"quadratic: condition_number must be >= 1 (ratio of the Hessian's eigenvalues), "
            f"got {condition_number}."
        )
    c, s = math.cos(angle), math.sin(angle)
    rotation = jnp.array([[c, -s], [s, c]])
    curvature = jnp.array([1.0, condition_number])

    def fn(xy: jax.Array) -> jax.Array:
        u = rotation.T @ xy
        return 0.5 * jnp.sum(curvature * u**2)

    return Surface(
        fn=fn,
        name=f"quadratic (κ = {condition_number:g})",
        formula=rf"$\frac{{1}}{{2}}(u^2 + {condition_number:g}\,v^2)$",
        minimum=(0.0, 0.0),
        value_at_minimum=0.0,
        bounds=((-2.5, 2.5), (-1.5, 1.5)),
        start=(-2.0, 1.0),
    )


rosenbrock = Surface(
    fn=_rosenbrock,
    name="Rosenbrock",
    formula=r"$(1-x)^2 + 100\,(y-x^2)^2$",
    minimum=(1.0, 1.0),
    value_at_minimum=0.0,
    bounds=((-1.5, 1.5), (-0.5, 1.5)),
    start=(-1.2, 1.0),
)

beale = Surface(
    fn=_beale,
    name="Beale",
    formula=r"$(1.5-x+xy)^2 + (2.25-x+xy^2)^2 + (2.625-x+xy^3)^2$",
    minimum=(3.0, 0.5),
    value_at_minimum=0.0,
    bounds=((-4.5, 4.5), (-4.5, 4.5)),
    start=(1.0, 1.5),
)

ill_conditioned_quadratic = quadratic(10.0)

saddle = Surface(
    fn=_saddle,
    name="saddle",
    formula=r"$x^2 + y^4/4 - y^2/2$",
    minimum=(0.0, 1.0),
    value_at_minimum=-0.25,
    bounds=((-2.0, 2.0), (-1.6, 1.6)),
    start=(-1.8, 1e-3),
)

ALL: dict[str, Surface] = {
    "rosenbrock": rosenbrock,
    "beale": beale,
    "ill_conditioned_quadratic": ill_conditioned_quadratic,
    "saddle": saddle,
}
