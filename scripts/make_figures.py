"""Regenerate the figures under docs/figures (shown in the README) with jnet.viz.

    python scripts/make_figures.py                 # writes docs/figures/*.png
    python scripts/make_figures.py --out /tmp/figs

Needs the plotting extra: pip install "jnet[plot]". Runs in well under a minute on a CPU.
"""

from __future__ import annotations

import argparse
import pathlib

import jax.numpy as jnp
from matplotlib.figure import Figure

import jnet.viz as viz
from jnet import optim

SEED_ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu", "swish"]
STEPS = 500


def activations() -> Figure:
    """The hidden-layer activations and their derivatives side by side."""
    fig = viz.plot_activation(SEED_ACTIVATIONS, x_range=(-5.0, 5.0))
    fig.set_size_inches(11.0, 4.2)
    return fig


def rosenbrock_paths() -> Figure:
    """Every seed rule from Rosenbrock's classic start (−1.2, 1) into its curved valley."""
    rules = {
        "GD (lr 2e-3)": optim.sgd(2e-3),
        "momentum (lr 1e-3, γ 0.9)": optim.momentum(1e-3, 0.9),
        "Nesterov (lr 1e-3, γ 0.9)": optim.nesterov(1e-3, 0.9),
        "AdaGrad (lr 1)": optim.adagrad(1.0),
        "AdaDelta (defaults)": optim.adadelta(),
        "RMSprop (lr 0.01)": optim.rmsprop(0.01),
        "Adam (lr 0.1)": optim.adam(0.1),
    }
    return viz.optimizer_paths(viz.surfaces.rosenbrock, rules, steps=STEPS, resolution=150)


def saddle_paths() -> Figure:
    """Plain GD stalls at the saddle point; momentum and adaptive steps escape it."""
    rules = {
        "GD (lr 2e-3)": optim.sgd(2e-3),
        "momentum (lr 2e-3, γ 0.9)": optim.momentum(2e-3, 0.9),
        "RMSprop (lr 0.01)": optim.rmsprop(0.01),
        "Adam (lr 0.05)": optim.adam(0.05),
    }
    return viz.optimizer_paths(viz.surfaces.saddle, rules, steps=300, resolution=150)


def learning_rate_sweep() -> Figure:
    """GD on the κ = 10 quadratic: too small crawls, 2/κ = 0.2 is the edge of divergence."""
    return viz.learning_rate_sweep(
        optim.sgd,
        [0.003, 0.01, 0.03, 0.1, 0.15, 0.19, 0.21],
        viz.surfaces.ill_conditioned_quadratic,
        jnp.asarray(viz.surfaces.ill_conditioned_quadratic.start),
        steps=100,
    )


FIGURES = {
    "activations.png": activations,
    "optimizer_paths_rosenbrock.png": rosenbrock_paths,
    "optimizer_paths_saddle.png": saddle_paths,
    "learning_rate_sweep.png": learning_rate_sweep,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parents[1] / "docs" / "figures")
    parser.add_argument("--dpi", type=int, default=80)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for filename, make in FIGURES.items():
        path = args.out / filename
        make().savefig(path, dpi=args.dpi)
        print(f"{path}  {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
