"""Every code block of docs/transformers.md runs as written, top to bottom in one namespace,
and prints what its comments say."""

import contextlib
import io
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "transformers.md"


@pytest.mark.slow
def test_transformers_page_runs():
    pytest.importorskip("torch")  # the "From PyTorch" block makes its weights with torch
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for i, block in enumerate(blocks):
            exec(compile(block, f"{PAGE.name} block {i}", "exec"), namespace)
    printed = out.getvalue().split()
    assert printed[:3] == ["(16,", "64)", "(8,"] and printed.count("True") == 4
