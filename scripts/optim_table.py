"""The README's optimizer table, generated from jnet.optim itself.

Each rule runs with its default hyperparameters (read from its signature) on two fixed 2-D
problems; the table gives the number of updates until the loss first drops below THRESHOLD.
`tests/test_optim_table.py` regenerates the table and compares it with the README, so the two
cannot drift.

    python scripts/optim_table.py            # print the table
    python scripts/optim_table.py --write    # replace it in README.md between the markers
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jnet import optim

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- optim-table:begin -->", "<!-- optim-table:end -->"
MAX_STEPS = 20_000
THRESHOLD = 1e-3


def quadratic(x: jax.Array) -> jax.Array:
    """f(x) = ½(x₀² + 10 x₁²): convex, condition number 10, minimum 0 at the origin."""
    return 0.5 * (x[0] ** 2 + 10.0 * x[1] ** 2)


def rosenbrock(x: jax.Array) -> jax.Array:
    """f(x, y) = (1 - x)² + 100 (y - x²)²: a curved valley, minimum 0 at (1, 1)."""
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2


PROBLEMS = {"quadratic": (quadratic, (2.0, 1.0)), "rosenbrock": (rosenbrock, (-1.2, 1.0))}

PYTORCH = {
    "sgd": "`SGD(lr)`",
    "momentum": "`SGD(lr, momentum)` + `pytorch_placement=True`",
    "nesterov": "`SGD(lr, momentum, nesterov=True)`",
    "adagrad": "`Adagrad(lr, initial_accumulator_value, eps=eps)`",
    "adadelta": "`Adadelta(lr, rho, eps)`",
    "rmsprop": "`RMSprop(lr, alpha=decay, eps, momentum, centered)` + `pytorch_placement=True`",
    "adam": "`Adam(lr, betas=(b1, b2), eps, amsgrad)`",
    "adamw": "`AdamW(lr, betas, eps, weight_decay)`",
    "nadam": "`NAdam(lr, betas, eps, momentum_decay)`",
    "adamax": "`Adamax(lr, betas, eps)` (ε inside the max)",
    "lion": "none (lion-pytorch `Lion(lr, betas, weight_decay)`)",
}
KERAS = {
    "sgd": "`SGD(learning_rate)`",
    "momentum": "`SGD(learning_rate, momentum)`",
    "nesterov": "`SGD(learning_rate, momentum, nesterov=True)`",
    "adagrad": "`Adagrad(...)` = `adagrad(1e-3, 0.1, 1e-7, eps_in_sqrt=True)`",
    "adadelta": "`Adadelta(learning_rate, rho, epsilon)`",
    "rmsprop": "`RMSprop(...)` = `rmsprop(1e-3, 0.9, 1e-7, eps_in_sqrt=True)`",
    "adam": "`Adam(learning_rate, beta_1, beta_2, epsilon, amsgrad)` (ε differs)",
    "adamw": "`AdamW(learning_rate, weight_decay, ...)`",
    "nadam": "`Nadam(...)` = `nadam(1e-3, eps=1e-7, momentum_decay=1.0)`",
    "adamax": "`Adamax(learning_rate, beta_1, beta_2, epsilon)`",
    "lion": "`Lion(learning_rate, beta_1, beta_2)`",
}


def defaults(rule: str) -> str:
    """The rule's numeric defaults, from its signature (flags and masks left out)."""
    params = inspect.signature(getattr(optim, rule)).parameters.values()
    return ", ".join(f"{p.name}={p.default:g}" for p in params if isinstance(p.default, float))


def losses(rule: str, problem: str, steps: int = MAX_STEPS) -> np.ndarray:
    """Loss before each of `steps` updates and after the last one, shape (steps + 1,)."""
    f, start = PROBLEMS[problem]
    opt = getattr(optim, rule)()
    x0 = jnp.asarray(start, jnp.float32)

    @jax.jit
    def run(x):
        def body(carry, _):
            x, state = carry
            loss, grad = jax.value_and_grad(f)(x)
            return opt.update(grad, state, x), loss

        (x, _), history = jax.lax.scan(body, (x, opt.init(x)), None, length=steps)
        return jnp.append(history, f(x))

    return np.asarray(run(x0))


def steps_to_threshold(history: np.ndarray) -> str:
    below = np.flatnonzero(history < THRESHOLD)
    return str(int(below[0])) if below.size else f"> {len(history) - 1:,}"


def table() -> str:
    lines = [
        f"| rule | defaults | PyTorch (`torch.optim.`) | Keras (`keras.optimizers.`) | steps "
        f"to f < {THRESHOLD:g}: quadratic | Rosenbrock |",
        "|---|---|---|---|---|---|",
    ]
    for rule in optim.RULES:
        steps = [steps_to_threshold(losses(rule, problem)) for problem in PROBLEMS]
        lines.append(f"| `{rule}` | {defaults(rule)} | {PYTORCH[rule]} | {KERAS[rule]} | "
                     f"{steps[0]} | {steps[1]} |")
    return "\n".join(lines)


def readme_table(text: str) -> str:
    """The table currently between the markers of README text."""
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def main(argv: list[str]) -> None:
    generated = table()
    if "--write" in argv:
        head, rest = README.read_text().split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        README.write_text(f"{head}{BEGIN}\n{generated}\n{END}{tail}")
    print(generated)


if __name__ == "__main__":
    main(sys.argv[1:])
