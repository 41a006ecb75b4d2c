"""The layer table of docs/layers.md, generated from `jnet.layers` itself.

Every constructor in `jnet.layers.__all__` (a function whose name starts with a capital letter
and that returns a `Layer`) gets one row: its call signature (annotations and `name=` left out),
the first paragraph of its docstring, and the `Params` it documents. Rows are grouped by the
module the constructor lives in (`jnet/layers/<family>.py`), so a new layer needs no edit here:
export it from `jnet.layers` and rerun the script. `tests/test_layer_table.py` regenerates the
table and compares it with the page, so it cannot drift.

    python scripts/layer_table.py            # print the table
    python scripts/layer_table.py --write    # rewrite docs/layers.md between its markers
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from jnet import layers

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "layers.md"
BEGIN, END = "<!-- layer-table:begin -->", "<!-- layer-table:end -->"
# Families in reading order; a family not listed (a new module) follows them, alphabetically.
FAMILIES = ("input", "dense", "conv", "conv_extra", "upsampling", "pooling", "norm", "dropout",
            "reshape", "activations", "heads", "embedding", "attention", "transformer",
            "recurrent", "combinators")
# `Params: ``{...}``` or `Params ``{...}``` anywhere in a docstring: the documented params.
PARAMS = re.compile(r"Params:?\s+``(\{.*?\})``", re.S)


def constructors() -> list[str]:
    """The layer constructors exported by `jnet.layers`, by family, then alphabetically."""
    names = [n for n in layers.__all__ if n[0].isupper() and inspect.isfunction(getattr(layers, n))
             and _returns_layer(getattr(layers, n))]

    def rank(name: str) -> tuple[int, str, str]:
        fam = family(name)
        return (FAMILIES.index(fam) if fam in FAMILIES else len(FAMILIES), fam, name.lower())

    return sorted(names, key=rank)


def _returns_layer(fn: object) -> bool:
    """Annotated `-> Layer` or `-> DecodingLayer` (a class, or a string such as "Layer" /
    "L.Layer")."""
    annotation = inspect.signature(fn).return_annotation
    return annotation in (layers.Layer, layers.DecodingLayer) or \
        str(annotation).rsplit(".", 1)[-1] in ("Layer", "DecodingLayer")


def family(name: str) -> str:
    """The module a constructor lives in: `jnet.layers.conv` -> "conv"."""
    return str(getattr(layers, name).__module__).rsplit(".", 1)[-1]


def call_signature(name: str) -> str:
    """`Dense(units, w_init="glorot_uniform", ...)`: annotations and `name=` left out."""
    parts, star = [], False
    for p in inspect.signature(getattr(layers, name)).parameters.values():
        if p.name == "name":
            continue
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        default = "" if p.default is p.empty else "=" + repr(p.default).replace("'", '"')
        parts.append(prefix + p.name + default)
    return f"{name}({', '.join(parts)})"


def _markdown(text: str) -> str:
    """Docstring markup (``code``) as Markdown, on one line, safe inside a table cell."""
    return " ".join(text.replace("``", "`").split()).replace("|", "\\|")


def summary(name: str) -> str:
    """The first paragraph of the constructor's docstring."""
    doc = inspect.getdoc(getattr(layers, name)) or ""
    return _markdown(doc.split("\n\n", 1)[0])


def params(name: str) -> str:
    """The params the docstring documents (`Params: ``{...}```), or – for none."""
    found = PARAMS.search(inspect.getdoc(getattr(layers, name)) or "")
    return f"`{_markdown(found.group(1)).strip('`')}`" if found else "–"


def table() -> str:
    lines = ["| family | layer | what it computes | params |", "|---|---|---|---|"]
    for name in constructors():
        cells = (family(name), f"`{call_signature(name)}`", summary(name), params(name))
        lines.append(f"| {' | '.join(cells)} |")
    return "\n".join(lines)


def between(text: str) -> str:
    """The text currently between the markers."""
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def write(path: Path = DOCS) -> None:
    head, rest = path.read_text().split(BEGIN, 1)
    path.write_text(f"{head}{BEGIN}\n{table()}\n{END}{rest.split(END, 1)[1]}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        print(table())
