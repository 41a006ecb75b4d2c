"""Tests of jnet.viz: surfaces, the pure descent computations, and the figures they draw.

References are independent of the code under test: NumPy formulas of each surface and each
activation's documented derivative, and closed forms of gradient descent on a quadratic.
"""

import importlib
import sys

import chex
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import jnet.viz as viz
from jnet import optim
from jnet.viz import surfaces

START = np.array([-2.0, 1.0])
KAPPA = 10.0  # ill_conditioned_quadratic's documented condition number


def data_lines(ax):
    """The labelled lines of an axes (zero lines and markers carry '_' labels)."""
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def gd_quadratic_losses(lr: float, steps: int) -> np.ndarray:
    """Closed form of GD on ½(x² + κy²): each coordinate shrinks by (1 − lr·curvature) a step."""
    k = np.arange(steps + 1)
    x = START[0] * (1 - lr) ** k
    y = START[1] * (1 - KAPPA * lr) ** k
    return 0.5 * (x**2 + KAPPA * y**2)


# ----------------------------------------------------------------------------- surfaces

NUMPY_SURFACES = {
    "rosenbrock": lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2,
    "beale": lambda x, y: (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2
    + (2.625 - x + x * y**3) ** 2,
    "ill_conditioned_quadratic": lambda x, y: 0.5 * (x**2 + KAPPA * y**2),
    "saddle": lambda x, y: x**2 + y**4 / 4 - y**2 / 2,
}


@pytest.mark.parametrize("name", sorted(NUMPY_SURFACES))
def test_surface_values_minimum_and_gradient(name):
    surface = surfaces.ALL[name]
    reference = NUMPY_SURFACES[name]
    points = np.random.default_rng(0).uniform(-2, 2, size=(16, 2))
    got = np.asarray(jax.vmap(surface)(jnp.asarray(points)))
    np.testing.assert_allclose(got, reference(points[:, 0], points[:, 1]), rtol=1e-5, atol=1e-5)
    # The documented minimum: the value is documented, the gradient vanishes, and nearby
    # points are higher.
    x_star, y_star = surface.minimum
    assert reference(x_star, y_star) == pytest.approx(surface.value_at_minimum, abs=1e-12)
    np.testing.assert_allclose(jax.grad(surface)(jnp.array(surface.minimum)), 0.0, atol=1e-5)
    around = np.array(surface.minimum) + 1e-2 * np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])
    assert (reference(around[:, 0], around[:, 1]) > surface.value_at_minimum).all()
    (x_lo, x_hi), (y_lo, y_hi) = surface.bounds
    assert x_lo < x_star < x_hi and y_lo < y_star < y_hi


def test_saddle_has_a_saddle_point_at_the_origin():
    hessian = np.asarray(jax.hessian(surfaces.saddle)(jnp.zeros(2)))
    np.testing.assert_allclose(jax.grad(surfaces.saddle)(jnp.zeros(2)), 0.0)
    eigenvalues = np.linalg.eigvalsh(hessian)
    assert eigenvalues[0] < 0 < eigenvalues[1]


def test_rotated_quadratic_has_the_requested_condition_number():
    surface = surfaces.quadratic(25.0, angle=0.7)
    eigenvalues = np.linalg.eigvalsh(np.asarray(jax.hessian(surface)(jnp.array([0.3, -0.2]))))
    np.testing.assert_allclose(eigenvalues, [1.0, 25.0], rtol=1e-5)
    with pytest.raises(ValueError, match="condition_number must be >= 1"):
        surfaces.quadratic(0.5)


def test_surface_rejects_a_batch_with_a_clear_error():
    with pytest.raises(ValueError, match=r"one point of shape \(2,\).*jax.vmap"):
        surfaces.rosenbrock(jnp.zeros((5, 2)))


# ------------------------------------------------------------------- pure computations


class TestDescentPath(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_gradient_descent_matches_the_closed_form(self):
        lr, steps = 0.15, 30

        @self.variant
        def run(start):
            return viz.descent_path(surfaces.ill_conditioned_quadratic, optim.sgd(lr), start, steps)

        result = run(jnp.asarray(START))
        assert result.path.shape == (steps + 1, 2) and result.losses.shape == (steps + 1,)
        k = np.arange(steps + 1)
        expected_path = np.stack([START[0] * (1 - lr) ** k, START[1] * (1 - KAPPA * lr) ** k], 1)
        np.testing.assert_allclose(result.path, expected_path, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(result.losses, gd_quadratic_losses(lr, steps), rtol=1e-4,
                                   atol=1e-7)


def test_descent_path_handles_pytree_parameters():
    # A least-squares fit with params {"w", "b"}: GD from zero, compared with a NumPy GD loop.
    x = np.linspace(-1, 1, 8)
    y = 3 * x - 1

    def loss(p):
        return jnp.mean((p["w"] * x + p["b"] - y) ** 2)

    result = viz.descent_path(loss, optim.sgd(0.2), {"w": 0.0, "b": 0.0}, 20)
    w = b = 0.0
    for _ in range(20):
        r = w * x + b - y
        w, b = w - 0.2 * np.mean(2 * r * x), b - 0.2 * np.mean(2 * r)
    assert result.path["w"].shape == (21,)
    np.testing.assert_allclose([result.path["w"][-1], result.path["b"][-1]], [w, b], rtol=1e-5)


def test_divergent_run_is_frozen_and_marked_nan():
    lr, steps, factor = 0.25, 60, 1e6  # lr > 2/κ: the y coordinate grows 1.5× per step
    result = viz.descent_path(surfaces.ill_conditioned_quadratic, optim.sgd(lr), START, steps,
                              divergence_factor=factor)
    reference = gd_quadratic_losses(lr, steps)
    first_bad = int(np.argmax(reference > factor * max(reference[0], 1.0)))
    assert 0 < first_bad < steps
    np.testing.assert_allclose(result.losses[:first_bad], reference[:first_bad], rtol=1e-4)
    assert np.isnan(result.losses[first_bad:]).all()
    assert np.isnan(result.path[first_bad:]).all()


def test_sweep_losses_is_one_vmap_matching_the_closed_form():
    rates = [0.01, 0.1, 0.19]
    curves = viz.sweep_losses(optim.sgd, rates, surfaces.ill_conditioned_quadratic, START, 40)
    assert curves.shape == (3, 41)
    for rate, curve in zip(rates, curves, strict=True):
        np.testing.assert_allclose(curve, gd_quadratic_losses(rate, 40), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        viz.sweep_losses(optim.sgd, [], surfaces.saddle, START, 5)


# ------------------------------------------------------------------------ activations

def _sig(x):
    return 1 / (1 + np.exp(-x))


# (function, documented derivative) in NumPy, from the formulas in jnet.activations' docs.
NUMPY_ACTIVATIONS = {
    "binary_step": (lambda x: (x >= 0).astype(float), lambda x: 0 * x),
    "linear": (lambda x: x, lambda x: np.ones_like(x)),
    "sigmoid": (_sig, lambda x: _sig(x) * (1 - _sig(x))),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "relu": (lambda x: np.maximum(x, 0), lambda x: (x > 0).astype(float)),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.01 * x), lambda x: np.where(x > 0, 1, 0.01)),
    "prelu": (lambda x: np.where(x > 0, x, 0.25 * x), lambda x: np.where(x > 0, 1, 0.25)),
    "elu": (lambda x: np.where(x > 0, x, np.expm1(x)), lambda x: np.where(x > 0, 1, np.exp(x))),
    "swish": (lambda x: x * _sig(x), lambda x: _sig(x) + x * _sig(x) * (1 - _sig(x))),
    # Shown on the two-class input [x, 0]: softmax's first output is σ(x).
    "softmax": (_sig, lambda x: _sig(x) * (1 - _sig(x))),
    "log_softmax": (lambda x: np.log(_sig(x)), lambda x: 1 - _sig(x)),
}


def test_every_seed_activation_and_its_derivative_match_the_documented_formulas():
    names = list(NUMPY_ACTIVATIONS)
    fig = viz.plot_activation(names, x_range=(-4.0, 4.0))
    f_ax, d_ax = fig.axes
    f_lines, d_lines = data_lines(f_ax), data_lines(d_ax)
    assert len(f_lines) == len(d_lines) == len(names)
    for name, f_line, d_line in zip(names, f_lines, d_lines, strict=True):
        x, y = (np.asarray(a, float) for a in f_line.get_data())
        _, dy = (np.asarray(a, float) for a in d_line.get_data())
        assert np.isfinite(y).all() and np.isfinite(dy).all(), name
        assert x.min() == -4.0 and x.max() == 4.0
        away_from_kinks = np.abs(x) > 1e-3
        f_ref, d_ref = NUMPY_ACTIVATIONS[name]
        np.testing.assert_allclose(y, f_ref(x), rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(dy[away_from_kinks], d_ref(x)[away_from_kinks], rtol=1e-4,
                                   atol=1e-5, err_msg=name)
    # The documented formula is in the legend.
    assert "1/(1+e^{-x})" in f_lines[names.index("sigmoid")].get_label()
    assert r"\alpha e^x" in d_lines[names.index("elu")].get_label()


def test_plot_activation_takes_functions_and_parameters():
    import functools

    from jnet import activations

    elu_half = functools.partial(activations.elu, alpha=0.5)
    fig = viz.plot_activation([elu_half, lambda x: x**2], x_range=(-2.0, 2.0), num=64)
    f_ax, d_ax = fig.axes
    labels = [line.get_label() for line in data_lines(f_ax)]
    assert labels[0].startswith("elu(alpha=0.5)")
    x, dy = (np.asarray(a, float) for a in data_lines(d_ax)[1].get_data())
    np.testing.assert_allclose(dy, 2 * x, rtol=1e-5, atol=1e-6)
    x, dy = (np.asarray(a, float) for a in data_lines(d_ax)[0].get_data())
    np.testing.assert_allclose(dy, np.where(x > 0, 1, 0.5 * np.exp(x)), rtol=1e-5)


def test_plot_activation_on_given_axes_and_without_derivative():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    assert viz.plot_activation("tanh", ax=ax) is fig
    assert len(data_lines(ax)) == 2  # function and derivative on the same axes
    assert data_lines(ax)[1].get_linestyle() == "--"
    alone = viz.plot_activation(["relu", "sigmoid"], derivative=False)
    assert len(alone.axes) == 1 and len(data_lines(alone.axes[0])) == 2


def test_plot_activation_errors_are_clear():
    with pytest.raises(ValueError, match=r"unknown activation 'rleu'.*Valid names"):
        viz.plot_activation("rleu")
    with pytest.raises(ValueError, match="empty list"):
        viz.plot_activation([])
    with pytest.raises(ValueError, match="low < high"):
        viz.plot_activation("relu", x_range=(1.0, -1.0))


# -------------------------------------------------------------------- optimizer paths

# Settings under which each rule reaches the minimum of the κ = 10 quadratic in 300 steps.
CONVERGING = {
    "GD": optim.sgd(0.15),
    "momentum": optim.momentum(0.05, 0.9),
    "Nesterov": optim.nesterov(0.05, 0.9),
    "AdaGrad": optim.adagrad(1.0),
    "AdaDelta": optim.adadelta(eps=1e-3),
    "RMSprop": optim.rmsprop(0.01),
    "Adam": optim.adam(0.1),
}


def test_optimizer_paths_reach_the_minimum_of_a_convex_quadratic():
    fig = viz.optimizer_paths(surfaces.ill_conditioned_quadratic, CONVERGING, START, steps=300)
    path_ax, loss_ax = fig.axes[:2]
    paths, curves = data_lines(path_ax), data_lines(loss_ax)
    assert [line.get_label() for line in paths] == list(CONVERGING)
    assert len(curves) == len(CONVERGING)
    for path, curve in zip(paths, curves, strict=True):
        xy = np.stack([np.asarray(a, float) for a in path.get_data()], axis=1)
        _, loss = (np.asarray(a, float) for a in curve.get_data())
        assert xy.shape == (301, 2) and np.isfinite(xy).all() and np.isfinite(loss).all()
        np.testing.assert_allclose(xy[0], START)
        assert np.linalg.norm(xy[-1]) < 1e-2, (path.get_label(), xy[-1])
        assert loss[-1] < 1e-3 * loss[0], path.get_label()
    assert loss_ax.get_yscale() == "log"


def test_optimizer_paths_marks_divergence_and_keeps_plotted_data_finite():
    fig = viz.optimizer_paths(surfaces.ill_conditioned_quadratic,
                              {"GD too fast": optim.sgd(0.25), "GD": optim.sgd(0.1)}, steps=80)
    paths = data_lines(fig.axes[0])
    assert "diverged at step" in paths[0].get_label() and "diverged" not in paths[1].get_label()
    for line in paths + data_lines(fig.axes[1]):
        assert np.isfinite(np.asarray(line.get_ydata(), float)).all()
    assert len(paths[0].get_xdata()) < 81 == len(paths[1].get_xdata())


def test_optimizer_paths_on_a_plain_function_needs_a_start():
    def bowl(xy):
        return jnp.sum(xy**2)

    with pytest.raises(ValueError, match="start"):
        viz.optimizer_paths(bowl, {"GD": optim.sgd(0.1)})
    fig = viz.optimizer_paths(bowl, {"GD": optim.sgd(0.1)}, start=(1.0, -1.0), steps=10)
    assert len(data_lines(fig.axes[0])) == 1


# ----------------------------------------------------------------- learning-rate sweep

def test_learning_rate_sweep_shows_small_good_and_divergent_rates():
    rates = [0.005, 0.05, 0.15, 0.25]
    fig = viz.learning_rate_sweep(optim.sgd, rates, surfaces.ill_conditioned_quadratic, START,
                                  steps=60)
    curve_ax, final_ax = fig.axes[:2]
    curves = data_lines(curve_ax)
    assert len(curves) == len(rates)
    labels = [line.get_label() for line in curves]
    assert "diverged" in labels[3] and "(best)" in labels[2]
    for rate, line in zip(rates[:3], curves[:3], strict=True):
        np.testing.assert_allclose(line.get_ydata(), gd_quadratic_losses(rate, 60), rtol=1e-4,
                                   atol=1e-7)
    for line in curves + data_lines(final_ax):
        assert np.isfinite(np.asarray(line.get_ydata(), float)).all()


# ------------------------------------------------------------------- packaging contract

def test_viz_never_touches_pyplot(monkeypatch):
    import matplotlib.pyplot as plt

    def no_show(*args, **kwargs):
        raise AssertionError("jnet.viz must not call plt.show()")

    monkeypatch.setattr(plt, "show", no_show)
    before = plt.get_fignums()
    viz.plot_activation("relu", num=16)
    viz.optimizer_paths(surfaces.saddle, {"GD": optim.sgd(0.1)}, steps=5, resolution=20)
    assert plt.get_fignums() == before


def test_import_without_matplotlib_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "jnet.viz" or m.startswith("jnet.viz.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r'pip install "jnet\[plot\]"'):
        importlib.import_module("jnet.viz")


def test_import_jnet_does_not_import_viz():
    import subprocess

    code = "import sys, jnet; print('jnet.viz' in sys.modules, 'matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert out.stdout.split() == ["False", "False"]
