"""Every optimizer's defaults descend on a convex quadratic and on Rosenbrock, and the
optimizer table of docs/optimizers.md is what `scripts/optim_table.py` generates from the code
(every cell exactly, except that step counts may differ by float32 rounding across
machines)."""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import numpy as np
import pytest

from jnet import optim

_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "optim_table.py"
_spec = importlib.util.spec_from_file_location("optim_table", _SCRIPT)
optim_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(optim_table)


@pytest.fixture(scope="module")
def histories():
    return {(rule, problem): optim_table.losses(rule, problem)
            for rule in optim.RULES for problem in optim_table.PROBLEMS}


@pytest.mark.parametrize("problem", sorted(optim_table.PROBLEMS))
@pytest.mark.parametrize("rule", optim.RULES)
def test_default_hyperparameters_descend(histories, rule, problem):
    history = histories[rule, problem]
    assert np.all(np.isfinite(history))
    # Down after 100 steps, further down at the end (unless already at the float32 floor, as
    # Rprop on the quadratic), and at most half the start.
    assert history[100] < history[0]
    assert history[-1] < history[100] or history[-1] < 1e-10
    assert history[-1] < 0.5 * history[0]


# A step count is where a float32 trajectory first crosses the threshold: another XLA version or
# CPU (different fusion, FMA, vector width) rounds differently and may cross a step or two
# earlier or later, by more for sign-based Lion. A stale table (changed defaults, equations or
# problems) moves counts by far more than this, and every other cell is compared exactly.
STEP_RTOL, STEP_ATOL = 0.01, 2


def _cells(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()]


def _step_count(cell: str) -> int:
    """'3799' -> 3799; '> 20,000' (not reached) -> 20001, the first count past the budget."""
    return int(cell[1:].replace(",", "")) + 1 if cell.startswith(">") else int(cell)


def tables_agree(committed: str, generated: str) -> list[str]:
    """The differences between two optimizer tables: every cell exactly equal, except the two
    step-count columns, which may differ by STEP_RTOL relative (at least STEP_ATOL steps)."""
    a, b = _cells(committed), _cells(generated)
    if len(a) != len(b) or a[:2] != b[:2]:
        return [f"header or row count differs:\n{committed}\n--- generated ---\n{generated}"]
    problems = []
    for row_a, row_b in zip(a[2:], b[2:], strict=True):
        if len(row_a) != len(row_b) or row_a[:-2] != row_b[:-2]:
            problems.append(f"row differs:\n  committed: {row_a}\n  generated: {row_b}")
            continue
        for got, want in zip(row_a[-2:], row_b[-2:], strict=True):
            n, m = _step_count(got), _step_count(want)
            if abs(n - m) > max(STEP_ATOL, STEP_RTOL * m):
                problems.append(f"{row_a[0]}: the docs say {got} steps, the code gives {want}")
    return problems


def test_table_comparison_catches_stale_tables():
    table = optim_table.between(optim_table.DOCS.read_text())
    assert tables_agree(table, table) == []
    sgd = next(line for line in table.splitlines() if line.startswith("| `sgd`"))
    cells = sgd.split("|")
    steps = int(cells[-3])
    for stale in (sgd.replace("learning_rate=0.001", "learning_rate=0.01"),
                  "|".join([*cells[:-3], f" {round(steps * 1.05)} ", *cells[-2:]]),
                  "|".join([*cells[:-3], " > 20,000 ", *cells[-2:]])):
        assert len(tables_agree(table.replace(sgd, stale), table)) == 1, stale
    # One or two steps either way is a rounding difference, not a stale table.
    nudged = "|".join([*cells[:-3], f" {steps + 2} ", *cells[-2:]])
    assert tables_agree(table.replace(sgd, nudged), table) == []


def test_docs_table_matches_the_code(histories, monkeypatch):
    monkeypatch.setattr(optim_table, "losses", lambda rule, problem: histories[rule, problem])
    docs = optim_table.DOCS.read_text()
    assert optim_table.BEGIN in docs and optim_table.END in docs, (
        "docs/optimizers.md lost its optimizer-table markers")
    problems = tables_agree(optim_table.between(docs), optim_table.table())
    assert not problems, ("docs/optimizers.md optimizer table is stale: run "
                          "`python scripts/optim_table.py --write`\n" + "\n".join(problems))


def test_docs_rules_section_matches_the_docstrings():
    docs = optim_table.DOCS.read_text()
    assert optim_table.DOCS_BEGIN in docs and optim_table.DOCS_END in docs
    assert optim_table.between(docs, optim_table.DOCS_BEGIN, optim_table.DOCS_END) == \
        optim_table.rules_markdown(), "docs/optimizers.md is stale: run " \
        "`python scripts/optim_table.py --write`"


@pytest.mark.parametrize("rule", optim.RULES)
def test_every_rule_documents_its_fixed_sections(rule):
    body, sections = optim_table.docstring(rule)
    assert body[0].strip() and any(line.startswith("    ") for line in body), "equations"
    for name in ("Args", "Defaults", "PyTorch", "Keras", "References"):
        assert sections[name], name
    documented = {line.partition(":")[0] for line in sections["Args"] if not line[0].isspace()}
    names = {n for entry in documented for n in entry.split(", ")}
    assert names == set(inspect.signature(optim.RULES[rule]).parameters), "Args"


def test_defaults_section_must_agree_with_the_signature(monkeypatch):
    def fake(learning_rate=1e-3, b1=0.9):
        """Fake.

            θ ← θ

        Args:
            learning_rate: α.
            b1: β1.

        Defaults:
            learning_rate=1e-2, b1=0.9.

        PyTorch:
            none

        Keras:
            none

        References:
            none
        """

    monkeypatch.setattr(optim, "RULES", {"fake": fake})
    with pytest.raises(ValueError, match=r"learning_rate=0\.001"):
        optim_table.docstring("fake")


def test_every_optimizer_state_has_a_docstring():
    # (jnet.optim.adam is the function; the modules are imported by name.)
    modules = [importlib.import_module(f"jnet.optim.{name}")
               for name in ("adam", "adaptive", "base", "lion", "sgd", "adafactor", "muon",
                            "radam", "rprop", "sam", "schedule_free")]
    states = [obj for module in modules for obj in vars(module).values()
              if isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")
              and obj.__module__ == module.__name__]
    assert len(states) >= 10
    for cls in states:
        assert cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("), cls.__name__
