"""Every ```python block of README.md and docs/*.md runs as written.

A page's blocks run in order in one namespace, in a temporary working directory (so the
checkpoints a page writes land there), with matplotlib drawing off screen. A block that cannot
run on one machine (a multi-process launch, say) is opted out by an HTML comment on the line
right before its fence, which must give the reason:

    <!-- docs: no-run (a launch line for 4 hosts) -->
    ```python
    ...

Keep opt-outs rare: `test_opt_outs_are_rare_and_justified` counts them. A page whose examples
continue from a model and data it does not build itself includes the file that builds them,
docs/snippets/setup.py, in a collapsed block at its top (the snippet is expanded as mkdocs
does, so readers see the same code):

    ??? example "Setup: the model and data of this page's examples"

        ```python
        --8<-- "docs/snippets/setup.py"
        ```
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import matplotlib
import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,}|~{3,})(?P<info>[^\n`]*)$")
SNIPPET = re.compile(r'^(?P<indent>[ \t]*)--8<--\s+"(?P<path>[^"]+)"\s*$', re.M)
NO_RUN = re.compile(r"<!--\s*docs:\s*no-run\s*\((?P<reason>[^)]+)\)\s*-->")
MAX_OPT_OUTS = 4
# Pages whose examples train for long enough to be marked slow (seconds on 2 shared cores).
SLOW_PAGES = {"populations.md", "distributed.md"}


def code_blocks(text: str) -> list[tuple[int, str, str, str | None]]:
    """Every fenced block of a Markdown text: (first line number, language, code, the reason
    of its no-run marker or None). The language is the info string's first word without a
    leading dot or brace (```python title="x.py"``` and ```{.python}``` are both python)."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        start = FENCE.match(lines[i])
        if not start:
            i += 1
            continue
        ticks, indent = start["ticks"], start["indent"]
        language = (start["info"].strip().lstrip("{").split() or [""])[0].lstrip(".")
        reason = NO_RUN.search(lines[i - 1]) if i else None
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(ticks)
                                      and lines[j].strip().strip(ticks[0]) == ""):
            j += 1
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line
                         for line in lines[i + 1:j])
        blocks.append((i + 2, language, textwrap.dedent(body),
                       reason["reason"] if reason else None))
        i = j + 1
    return blocks


def _snippet(spec: str) -> str:
    """The file `path` (relative to the repository root), or with `path:name` the lines
    between its `--8<-- [start:name]` and `--8<-- [end:name]` markers."""
    path, _, section = spec.partition(":")
    text = (ROOT / path).read_text()
    if section:
        text = text.split(f"--8<-- [start:{section}]", 1)[1].split("\n", 1)[1]
        text = text.split(f"--8<-- [end:{section}]", 1)[0].rsplit("\n", 1)[0]
    return text.rstrip()


def expand_snippets(text: str) -> str:
    """`--8<-- "path"` lines replaced by the file, as pymdownx.snippets does when mkdocs
    builds the page (the page's own line numbers shift by the lines included)."""
    return SNIPPET.sub(lambda m: textwrap.indent(_snippet(m["path"]), m["indent"]), text)


def python_blocks(page: Path) -> list[tuple[int, str, str | None]]:
    return [(line, code, reason)
            for line, language, code, reason in code_blocks(expand_snippets(page.read_text()))
            if language in ("python", "py")]


def _param(page: Path):
    marks = [pytest.mark.slow] if page.name in SLOW_PAGES else []
    return pytest.param(page, id=str(page.relative_to(ROOT)), marks=marks)


@pytest.mark.parametrize("page", [_param(p) for p in PAGES if python_blocks(p)])
def test_page_examples_run(page, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for line, code, reason in python_blocks(page):
        if reason is not None:
            continue
        # Blank lines first, so a traceback's line numbers are the page's own.
        source = "\n" * (line - 1) + code
        exec(compile(source, str(page), "exec"), namespace)


def test_readme_links_resolve():
    """The README is not part of the mkdocs build, whose strict mode checks the guides' links:
    check its relative links and their #anchors here."""
    readme = (ROOT / "README.md").read_text()
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)\)", readme):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        if not (ROOT / path).exists():
            problems.append(target)
        elif anchor:
            headings = re.findall(r"^#+ (.+)$", (ROOT / path).read_text(), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
                     for h in headings}
            problems += [target] if anchor not in slugs else []
    assert not problems, problems


def test_opt_outs_are_rare_and_justified():
    opted_out = [(p.name, line, reason) for p in PAGES for line, _, reason in python_blocks(p)
                 if reason is not None]
    assert len(opted_out) <= MAX_OPT_OUTS, opted_out
    assert all(len(reason.split()) >= 3 for _, _, reason in opted_out), opted_out


def test_block_extraction():
    text = textwrap.dedent('''\
        Intro.

        ```python title="a.py"
        x = 1
        ```

        - a list item:

          ```python
          y = x + 1
          ```

        <!-- docs: no-run (needs four hosts at once) -->
        ```python
        launch()
        ```

        ````text
        ```python
        not code
        ```
        ````
        ''')
    blocks = code_blocks(text)
    assert [(b[1], b[2], b[3]) for b in blocks] == [
        ("python", "x = 1", None), ("python", "y = x + 1", None),
        ("python", "launch()", "needs four hosts at once"),
        ("text", "```python\nnot code\n```", None)]
    assert [b[0] for b in blocks] == [4, 10, 15, 19]
