"""The layer table of docs/layers.md is what `scripts/layer_table.py` generates from
`jnet.layers` (every constructor, its signature, docstring summary and params), and the summary
printed on that page is what `jnet.summary` prints."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import jnet
from jnet import layers as L

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("layer_table", ROOT / "scripts" / "layer_table.py")
layer_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(layer_table)


def test_docs_layer_table_matches_the_code():
    page = layer_table.DOCS.read_text()
    assert layer_table.BEGIN in page and layer_table.END in page, "layers.md lost its markers"
    assert layer_table.between(page) == layer_table.table(), (
        "docs/layers.md's layer table is stale: run `python scripts/layer_table.py --write`")


def test_every_exported_constructor_has_a_row():
    rows = layer_table.table().splitlines()[2:]
    documented = {re.match(r"\| \w+ \| `(\w+)\(", row).group(1) for row in rows}
    exported = {n for n in L.__all__ if n[0].isupper()} - {"Layer", "LayerError", "Head",
                                                                "DecodingLayer"}
    assert documented == exported


def test_a_new_layer_is_picked_up_without_editing_the_generator(monkeypatch):
    def Scale(factor: float = 2.0, *, learn: bool = False, name: str | None = None) -> L.Layer:
        """Multiply by `factor`: ``y = factor · x``, (N, ...) -> same.

        Params: ``{"factor": ()}`` when ``learn=True``.
        """
        return L.parameter_free("Scale", lambda x: factor * x, name=name)

    Scale.__module__ = "jnet.layers.scaling"  # a family the generator has never seen
    monkeypatch.setattr(L, "Scale", Scale, raising=False)
    monkeypatch.setattr(L, "__all__", [*L.__all__, "Scale"])
    last = layer_table.table().splitlines()[-1]
    assert last == ('| scaling | `Scale(factor=2.0, *, learn=False)` | Multiply by `factor`: '
                    '`y = factor · x`, (N, ...) -> same. | `{"factor": ()}` |')


def test_a_changed_signature_makes_the_page_stale(monkeypatch):
    page = layer_table.between(layer_table.DOCS.read_text())
    dense = L.Dense

    def Dense(units, w_init="glorot_uniform", b_init="zeros", use_bias=False, name=None):
        return dense(units, w_init, b_init, use_bias, name)

    Dense.__doc__, Dense.__module__ = dense.__doc__, dense.__module__
    Dense.__annotations__ = {"return": "Layer"}
    monkeypatch.setattr(L, "Dense", Dense)
    assert page != layer_table.table()


def test_the_printed_summary_is_what_jnet_summary_prints():
    page = layer_table.DOCS.read_text().split("## Model summary", 1)[1]
    code = re.search(r"```python\n(.*?)```", page, re.S).group(1)
    printed = re.search(r"```text\n(.*?)\n```", page, re.S).group(1)
    namespace: dict = {"L": L, "jnet": jnet, "print": lambda *a: None}
    exec(compile(code, "docs/layers.md", "exec"), namespace)
    assert str(jnet.summary(namespace["model"])) == printed
