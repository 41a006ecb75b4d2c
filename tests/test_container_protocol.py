"""The container protocol: a user-written container (the one in docs/custom-layers.md, executed
from that page) is first-class in `summary`, `precision.mixed` and `map_layers`; masks reach every
child; side inputs are declared."""

import dataclasses
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
from jnet import layers as L
from jnet.layers import LayerError

README = pathlib.Path(__file__).resolve().parents[1] / "docs" / "custom-layers.md"


def readme_container_namespace() -> dict:
    """Run the page's "Another container" code block; return its namespace."""
    text = README.read_text()
    section = text.split("## Another container", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def readme():
    return readme_container_namespace()


def test_readme_container_has_real_shapes_in_summary(readme):
    s = jnet.summary(readme["model"])
    rows = {r.path: r for r in s.rows}
    assert rows["skip_concat_1"].out_shape == (8, 8, 7)  # 3 input + 4 conv channels
    assert rows["skip_concat_1/inner"].out_shape == (8, 8, 4)
    assert rows["skip_concat_1/inner/conv2d_0"].out_shape == (8, 8, 4)
    assert rows["skip_concat_1/inner/conv2d_0"].params == 3 * 3 * 3 * 4 + 4
    assert rows["skip_concat_1/inner/batch_norm_1"].state == 8
    assert "?" not in str(s)
    assert s.output_shape == (10,)


def test_readme_container_keeps_batchnorm_float32_under_mixed(readme):
    """Record the dtype every leaf computes in: BatchNorm inside the user container sees
    float32, its neighbours bfloat16."""
    model = readme["model"]
    seen = {}

    def spy(layer):
        if layer.children:
            return None

        def apply_fn(params, state, x, **kw):
            seen[layer.kind] = x.dtype
            return layer.apply_fn(params, state, x, **kw)

        return dataclasses.replace(layer, apply_fn=apply_fn)

    mixed = jnet.precision.mixed(L.map_layers(spy, model))
    _, params, state = mixed.init(jax.random.key(0))
    y, new_state = mixed.apply(params, state, jnp.ones((2, 8, 8, 3)), train=True)
    assert seen["BatchNorm"] == jnp.float32
    assert seen["Conv2D"] == jnp.bfloat16 and seen["ReLU"] == jnp.bfloat16
    assert y.dtype == jnp.float32
    bn_state = new_state["skip_concat_1"]["inner"]["batch_norm_1"]
    assert bn_state["mean"].dtype == jnp.float32


def test_readme_container_trains_like_its_hand_written_maths(readme):
    """The container's output equals concat(x, f(x)) computed from the child directly."""
    inner = readme["SkipConcat"](L.Dense(3)).children[0][1]
    layer = readme["SkipConcat"](inner)
    _, params, state = layer.init(jax.random.key(1), (5,))
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    y, _ = layer.apply(params, state, x)
    w, b = params["inner"]["w"], params["inner"]["b"]
    np.testing.assert_allclose(y, np.concatenate([x, x @ w + b], -1), rtol=1e-6)


def test_map_layers_rebuilds_every_container():
    model = L.serial(L.Dense(3), L.residual(L.serial(L.Dense(3), L.ReLU())),
                     L.Bidirectional(L.LSTM(2)), name="m")
    kinds = []
    L.map_layers(lambda layer: kinds.append(layer.kind), model)
    assert kinds == ["Serial", "Dense", "Residual", "Serial", "Dense", "ReLU", "Bidirectional",
                     "LSTM", "LSTM"]
    renamed = L.map_layers(lambda layer: None, model)
    assert renamed.name == "m" and [n for n, _ in renamed.children] == [
        n for n, _ in model.children]


def test_mask_reaches_every_child_of_every_container():
    got = []

    def Probe(name=None):
        return L.parameter_free("Probe", lambda x, *, mask, **_: (got.append(mask), x)[1],
                                name=name, with_context=True)

    model = L.serial(Probe(), L.residual(Probe()), L.FanOut(2), L.parallel(Probe(), Probe()),
                     L.FanInSum())
    _, params, state = model.init(jax.random.key(0), (4, 3))
    mask = jnp.array([[True, True, False, False]])
    model.apply(params, state, jnp.ones((1, 4, 3)), mask=mask)
    assert len(got) == 4 and all(m is mask for m in got)


def test_containers_must_declare_their_protocol():
    with pytest.raises(LayerError, match="child_shapes= / rebuild="):
        L.Layer(lambda k, s: (s, {}, {}), lambda p, s, x, **kw: (x, s), kind="Bag",
                children=(("a", L.ReLU()),))


def test_side_inputs_are_declared():
    layer = L.Dense(2)
    _, params, state = layer.init(jax.random.key(0), (3,))
    with pytest.raises(LayerError, match=r"initial_state.*does not take") as err:
        layer.apply(params, state, jnp.ones((1, 3)), initial_state=jnp.zeros((1, 2)))
    assert isinstance(err.value, jnet.Error)
    assert L.LSTM(2).side_inputs == ("initial_state",)


def test_no_module_switches_on_kind_strings():
    """`kind` is a display name: no code in jnet compares it to a literal."""
    root = pathlib.Path(jnet.__file__).parent
    offenders = [
        f"{path.relative_to(root)}:{i}"
        for path in root.rglob("*.py")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\.kind\s*(==|!=|\bin\b)", line)
    ]
    assert offenders == []
