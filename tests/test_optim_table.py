"""Every optimizer's defaults descend on a convex quadratic and on Rosenbrock, and the README's
optimizer table is exactly what `scripts/optim_table.py` generates from the code."""

from __future__ import annotations

import importlib.util
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
    # Down after 100 steps, further down at the end, and at most half the start.
    assert history[100] < history[0]
    assert history[-1] < history[100]
    assert history[-1] < 0.5 * history[0]


def test_readme_table_matches_the_code(histories, monkeypatch):
    monkeypatch.setattr(optim_table, "losses", lambda rule, problem: histories[rule, problem])
    readme = optim_table.README.read_text()
    assert optim_table.BEGIN in readme and optim_table.END in readme, (
        "README.md lost its optimizer-table markers")
    assert optim_table.readme_table(readme) == optim_table.table(), (
        "README optimizer table is stale: run `python scripts/optim_table.py --write`")
