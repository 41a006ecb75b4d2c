"""Pictures that explain: activations and their gradients, optimizers moving downhill.

    import jnet.viz as viz
    fig = viz.plot_activation(["sigmoid", "tanh", "relu"])          # f and f' (by jax.grad)
    fig = viz.optimizer_paths(viz.surfaces.rosenbrock,
                              {"GD": jnet.optim.sgd(1e-3), "Adam": jnet.optim.adam(0.1)},
                              steps=200)                            # paths + loss per step
    fig = viz.learning_rate_sweep(jnet.optim.sgd, [0.01, 0.1, 0.19, 0.21],
                                  viz.surfaces.ill_conditioned_quadratic, jnp.array([-2., 1.]))
    fig.savefig("picture.png")

Each function returns a matplotlib `Figure` and never calls `plt.show()`. The numbers behind the
pictures come from pure, jit-able functions (`descent_path`, `sweep_losses`: one `lax.scan`,
one `jax.vmap`) and the test surfaces live in `jnet.viz.surfaces`.

matplotlib is an optional dependency: `pip install "jnet[plot]"`. This package is never
imported by `import jnet`.
"""

try:
    import matplotlib  # noqa: F401
except ImportError as error:
    raise ImportError(
        'jnet.viz draws with matplotlib, which is not installed. Install the plotting extra: '
        'pip install "jnet[plot]"  (or: pip install matplotlib).'
    ) from error

from jnet.viz import surfaces
from jnet.viz.descent import Descent, descent_path, sweep_losses
from jnet.viz.plots import FORMULAS, learning_rate_sweep, optimizer_paths, plot_activation

__all__ = [
    "FORMULAS",
    "Descent",
    "descent_path",
    "learning_rate_sweep",
    "optimizer_paths",
    "plot_activation",
    "surfaces",
    "sweep_losses",
]
