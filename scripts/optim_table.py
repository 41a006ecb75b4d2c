"""The optimizer table and the rules section of docs/optimizers.md, generated from
jnet.optim itself: each rule's signature and docstring (its equations, `Args:`, `Defaults:`,
`PyTorch:`, `Keras:` and `References:` sections) are the one source of those facts.

Each rule also runs with its default hyperparameters on two fixed 2-D problems; the table
gives the number of updates until the loss first drops below THRESHOLD.
`tests/test_optim_table.py` regenerates both and compares them with docs/optimizers.md, so
they cannot drift. The README links to that page instead of keeping a copy.

    python scripts/optim_table.py            # print the table
    python scripts/optim_table.py --write    # rewrite them, between their markers
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jnet import optim

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "optimizers.md"
BEGIN, END = "<!-- optim-table:begin -->", "<!-- optim-table:end -->"
DOCS_BEGIN, DOCS_END = "<!-- optim-rules:begin -->", "<!-- optim-rules:end -->"
MAX_STEPS = 20_000
THRESHOLD = 1e-3
SECTIONS = ("Args", "Returns", "Raises", "Defaults", "PyTorch", "Keras", "References")
REQUIRED = ("Args", "Defaults", "PyTorch", "Keras", "References")


def quadratic(x: jax.Array) -> jax.Array:
    """f(x) = ½(x₀² + 10 x₁²): convex, condition number 10, minimum 0 at the origin."""
    return 0.5 * (x[0] ** 2 + 10.0 * x[1] ** 2)


def rosenbrock(x: jax.Array) -> jax.Array:
    """f(x, y) = (1 - x)² + 100 (y - x²)²: a curved valley, minimum 0 at (1, 1)."""
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2


PROBLEMS = {"quadratic": (quadratic, (2.0, 1.0)), "rosenbrock": (rosenbrock, (-1.2, 1.0))}


def docstring(rule: str) -> tuple[list[str], dict[str, list[str]]]:
    """A rule's docstring split into its body (summary, equations, notes) and its sections,
    each a list of lines with the section's indentation removed.

    Raises:
        ValueError: a required section is missing, or `Defaults:` disagrees with the signature.
    """
    lines = inspect.getdoc(optim.RULES[rule]).splitlines()
    body: list[str] = []
    sections: dict[str, list[str]] = {}
    current = body
    for line in lines:
        header = line.rstrip(":")
        if line.endswith(":") and header in SECTIONS:
            current = sections.setdefault(header, [])
        else:
            current.append(line[4:] if current is not body else line)
    missing = [name for name in REQUIRED if not "".join(sections.get(name, [])).strip()]
    if missing:
        raise ValueError(f"jnet.optim.{rule}'s docstring lacks the section(s) {missing}")
    _check_defaults(rule, " ".join(sections["Defaults"]))
    return body, {name: [x for x in text if x.strip()] for name, text in sections.items()}


def _check_defaults(rule: str, text: str) -> None:
    """Every numeric default of the signature is stated, with its value, in `Defaults:`."""
    stated = {name: value.rstrip(".") for name, value in re.findall(r"\b(\w+)=(-?\d[\w.+-]*)",
                                                                     text)}
    for p in inspect.signature(optim.RULES[rule]).parameters.values():
        if isinstance(p.default, float) and (p.name not in stated
                                             or float(stated[p.name]) != p.default):
            raise ValueError(f"jnet.optim.{rule}: `Defaults:` must state {p.name}="
                                 f"{p.default:g} (the signature's), got {stated.get(p.name)}")


def call_signature(rule: str) -> str:
    """`adam(learning_rate=0.001, ..., *, amsgrad=False)`, annotations left out."""
    parts, star = [], False
    for p in inspect.signature(optim.RULES[rule]).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        # A function default (muon's routing) by name: its repr holds a memory address.
        shown = p.default.__name__ if inspect.isfunction(p.default) else repr(p.default)
        parts.append(f"{p.name}={shown}")
    return f"{rule}({', '.join(parts)})"


def defaults(rule: str) -> str:
    """The rule's numeric defaults, from its signature (flags and masks left out)."""
    params = inspect.signature(optim.RULES[rule]).parameters.values()
    return ", ".join(f"{p.name}={p.default:g}" for p in params if isinstance(p.default, float))


def losses(rule: str, problem: str, steps: int = MAX_STEPS) -> np.ndarray:
    """Loss before each of `steps` updates and after the last one, shape (steps + 1,)."""
    f, start = PROBLEMS[problem]
    opt = optim.RULES[rule]()
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
        _, sections = docstring(rule)
        lines.append(f"| `{rule}` | {defaults(rule)} | {sections['PyTorch'][0]} | "
                     f"{sections['Keras'][0]} | {steps[0]} | {steps[1]} |")
    return "\n".join(lines)


def _paragraphs(lines: list[str]) -> list[str]:
    """Markdown for docstring lines: indented blocks (equations, examples) fenced as text."""
    out: list[str] = []
    code = False
    for line in lines:
        indented = line.startswith("    ")
        if indented != code and (indented or line.strip()):
            while code and out and not out[-1]:
                out.pop()  # no blank lines at the end of a block
            out.extend(["```text"] if indented else ["```", ""])
            code = indented
        out.append(line[4:] if code else line)
    while code and out and not out[-1]:
        out.pop()
    return [line.rstrip() for line in out] + (["```"] if code else [])


def _args(lines: list[str]) -> list[str]:
    """`name: text` lines (continuations indented) as a Markdown list."""
    items: list[str] = []
    for line in lines:
        if line.startswith(" ") and items:
            items[-1] += " " + line.strip()
        else:
            name, _, text = line.partition(": ")
            items.append(f"- `{name}`: {text}")
    return items


def rule_section(rule: str) -> str:
    """The Markdown of one rule for docs/optimizers.md, from its signature and docstring."""
    body, sections = docstring(rule)
    pytorch, keras = sections["PyTorch"], sections["Keras"]
    lines = [f"### `{call_signature(rule)}`", "", f"{body[0]}", "", *_paragraphs(body[1:]),
             "", "Arguments:", "", *_args(sections["Args"]), "",
             f"**Defaults**: {' '.join(sections['Defaults'])}", "",
             f"**PyTorch** (`torch.optim.`): {pytorch[0]}. {' '.join(pytorch[1:])}".rstrip(), "",
             f"**Keras** (`keras.optimizers.`): {keras[0]}. {' '.join(keras[1:])}".rstrip(), "",
             f"**References**: {' '.join(sections['References'])}"]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def rules_markdown() -> str:
    """The rules section of docs/optimizers.md (between its markers)."""
    return "\n\n".join(rule_section(rule) for rule in optim.RULES)


def between(text: str, begin: str = BEGIN, end: str = END) -> str:
    """The text currently between two markers."""
    return text.split(begin, 1)[1].split(end, 1)[0].strip()


def replace_between(path: Path, begin: str, end: str, generated: str) -> None:
    head, rest = path.read_text().split(begin, 1)
    path.write_text(f"{head}{begin}\n{generated}\n{end}{rest.split(end, 1)[1]}")


def main(argv: list[str]) -> None:
    generated = table()
    if "--write" in argv:
        replace_between(DOCS, BEGIN, END, generated)
        replace_between(DOCS, DOCS_BEGIN, DOCS_END, rules_markdown())
    print(generated)


if __name__ == "__main__":
    main(sys.argv[1:])
