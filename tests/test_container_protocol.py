"""The container protocol: a user-written container (docs/custom-layers.md's, executed from the
page itself) is first-class in `summary`, `precision.mixed` and `map_layers`; masks reach every
child; side inputs are declared; a container's parts cannot disagree."""

import dataclasses
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _layer_zoo import build, constructors, input_for

import jnet
from jnet import layers as L
from jnet.layers import LayerError

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "custom-layers.md"


def page_container_namespace(blocks: int) -> dict:
    """Run the first `blocks` code blocks of docs/custom-layers.md's "A container" section, in
    order, in one namespace (the second uses the first's imports); return it."""
    section = PAGE.read_text().split("## A container", 1)[1].split("\n## ", 1)[0]
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S)[:blocks]:
        exec(compile(block, str(PAGE), "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def readme():
    return page_container_namespace(1)


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


def test_page_mean_of_keeps_its_arguments_through_rebuilds():
    """The page's second container: arguments that are not children (`scale`) survive a
    rebuild because they are part of the definition, and the maths matches NumPy."""
    ns = page_container_namespace(2)
    layer = ns["MeanOf"](L.Dense(3), L.Dense(3), scale=2.0)
    rebuilt = L.map_layers(lambda child: None, layer)
    _, params, state = rebuilt.init(jax.random.key(0), (4,))
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    y, _ = rebuilt.apply(params, state, x)
    ref = sum(x @ params[b]["w"] + params[b]["b"] for b in ("branch_0", "branch_1")) / 2
    np.testing.assert_allclose(y, 2.0 * ref, rtol=1e-5)
    assert rebuilt.config == {"scale": 2.0}
    rows = {r.path: r for r in jnet.summary(ns["model"]).rows}
    assert rows["mean_of_1/branch_1/dense_0"].out_shape == (8,)
    assert ns["model16"].apply(*ns["model16"].init(jax.random.key(0))[1:],
                               jnp.ones((2, 4)))[0].dtype == jnp.float32


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


def test_containers_are_made_by_container():
    """`Layer(children=...)` is refused: a container is one definition of its children."""
    with pytest.raises(LayerError, match=r"jnet.layers.container\(define, children\)") as err:
        L.Layer(lambda k, s: (s, {}, {}), lambda p, s, x, **kw: (x, s), kind="Bag",
                children=(("a", L.ReLU()),))
    assert isinstance(err.value, jnet.Error)


@pytest.mark.parametrize("field", ["apply_fn", "init_fn", "config", "head", "children"])
def test_a_container_copy_cannot_drift_from_its_definition(field):
    """Replacing what the definition makes (the old `precision.mixed` replaced apply_fn on a
    copy, which the next rebuild silently undid) is an error naming the fix."""
    model = L.serial(L.Dense(3), L.ReLU())
    value = {"apply_fn": lambda p, s, x, **kw: (x, s), "init_fn": lambda k, s: (s, {}, {}),
             "config": {"x": 1}, "head": L.ClassificationOutput().head,
             "children": (("dense_0", L.Dense(5)),)}[field]
    with pytest.raises(LayerError, match=rf"replaces its {field}.*Wrap it in a new container"):
        dataclasses.replace(model, **{field: value})
    assert dataclasses.replace(model, name="m").name == "m"  # the container's own name is free


def test_with_children_calls_the_definition_again():
    """A rebuilt container is its definition of the new children: new shapes flow through
    init, apply, child_shapes and the metadata derived from the children (head)."""
    model = L.serial(L.Input((4,)), L.Dense(3), name="m")
    rebuilt = model.with_children([L.Input((4,)), L.serial(L.Dense(7), L.ClassificationOutput())])
    assert rebuilt.name == "m" and [n for n, _ in rebuilt.children] == ["input_0", "dense_1"]
    assert rebuilt.head is not None and rebuilt.head.task == "classification"
    out_shape, params, _ = rebuilt.init(jax.random.key(0))
    assert out_shape == (7,) and params["dense_1"]["dense_0"]["w"].shape == (4, 7)
    assert rebuilt.child_shapes((4,)) == ((4,), (4,))
    y, _ = rebuilt.apply(params, {"input_0": {}, "dense_1": {"dense_0": {},
                                                             "classification_output_1": {}}},
                         jnp.ones((2, 4)))
    assert y.shape == (2, 7)


def test_child_shapes_are_read_off_init():
    model = L.serial(L.Dense(3), L.FanOut(2), L.parallel(L.Dense(2), L.ReLU()), L.FanInConcat())
    assert model.child_shapes((5,)) == ((5,), (3,), ((3,), (3,)), ((2,), (3,)))
    assert model.children[2][1].child_shapes(((3,), (3,))) == ((3,), (3,))
    assert L.Dense(2).child_shapes((5,)) == ()
    with pytest.raises(LayerError, match="never initialised the children \\['b'\\]"):
        lazy = L.container(lambda ch: L.Layer(
            lambda k, s: ch["a"].init(k, s), lambda p, s, x, **kw: (x, s), kind="Lazy"),
            {"a": L.Dense(2), "b": L.Dense(2)})
        lazy.child_shapes((3,))


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
        # numpy dtype kinds (dtype.kind, compute.kind) and inspect.Parameter kinds (p.kind)
        # are not layer kinds
        if re.search(r"\b(?!dtype\b|compute\b|p\b)\w+\.kind\s*(==|!=|\bin\b)", line)
    ]
    assert offenders == []


# ----------------------------------------------------------------------------------------
# Mapping the identity changes nothing: every layer of `jnet.layers.__all__` (derived at test
# time), containers nested in containers, user containers and `precision.mixed`.


def _zoo() -> dict:
    models = {name: build(fn) for name, fn in constructors().items()}
    seq = L.serial(L.Input((6, 4)), L.Dense(4), L.residual(L.serial(L.Dense(4), L.LayerNorm())),
                   L.FanOut(2), L.parallel(L.Dense(3), L.serial(L.Dropout(0.5), L.Dense(3))),
                   L.FanInSum(), L.Bidirectional(L.LSTM(3, return_sequences=True),
                                                 L.GRU(3, return_sequences=True)),
                   L.BatchNorm(), name="net")
    models.update({
        "nested": seq,
        "mixed(nested)": jnet.precision.mixed(seq),
        "mixed(Dense)": jnet.precision.mixed(L.Dense(3)),
        "mixed(keep none)": jnet.precision.mixed(seq, keep_float32=lambda layer: False),
        "mixed(mixed)": jnet.precision.mixed(jnet.precision.mixed(seq)),
        "docs SkipConcat": page_container_namespace(1)["model"],
    })
    return models


ZOO = _zoo()


def _arrays_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert u.shape == v.shape and u.dtype == v.dtype
        np.testing.assert_array_equal(np.asarray(u, np.float64), np.asarray(v, np.float64))


def _record(layer):
    """init, apply (evaluation and training), summary and metadata of `layer`."""
    in_shape, x = input_for(layer)
    key = jax.random.key(3)
    out_shape, params, state = layer.init(key, in_shape)
    y_eval, _ = layer.apply(params, state, x)
    y_train, new_state = layer.apply(params, state, x, key=key, train=True)
    return {
        "init": (out_shape, params, state), "eval": y_eval, "train": (y_train, new_state),
        "summary": str(jnet.summary(layer, in_shape)), "config": layer.config,
        "meta": (repr(layer), layer.kind, layer.name, layer.head, layer.input_shape,
                 layer.side_inputs, layer.keeps_float32, [n for n, _ in layer.children]),
    }


@pytest.mark.parametrize("name", sorted(ZOO))
def test_mapping_the_identity_changes_nothing(name):
    model = ZOO[name]
    before = _record(model)
    mapped = L.map_layers(lambda layer: None, model)
    after = _record(mapped)
    assert after["init"][0] == before["init"][0]  # the output shape
    _arrays_equal(after["init"][1:], before["init"][1:])
    for what in ("eval", "train"):
        _arrays_equal(after[what], before[what])
    assert after["summary"] == before["summary"]
    assert after["config"] == before["config"]
    assert after["meta"] == before["meta"]


def test_mixed_model_mapped_by_the_identity_keeps_its_output_dtype():
    """The drift this protocol removes: mapping a mixed model used to rebuild it from the
    plain serial's stale `rebuild`, dropping the float32 output cast and the config."""
    model = L.serial(L.Input((5,)), L.Dense(4), L.BatchNorm(), L.ReLU(), L.Dense(2))
    model16 = jnet.precision.mixed(model)
    mapped = L.map_layers(lambda layer: None, model16)
    _, params, state = mapped.init(jax.random.key(0))
    y16, _ = model16.apply(params, state, jnp.ones((3, 5)))
    y, _ = mapped.apply(params, state, jnp.ones((3, 5)))
    assert y.dtype == y16.dtype == jnp.float32
    assert mapped.config == model16.config == {"compute_dtype": "bfloat16",
                                               "output_dtype": "float32"}
    # The mixed model holds the original model as its child, so mapping reads it back.
    assert mapped.children[0][1].children[1][1].kind == "Dense"
    assert [layer for _, layer in mapped.children[0][1].children] == [
        layer for _, layer in model.children]


def test_mapping_a_mixed_model_keeps_the_policy_on_replaced_layers():
    """Replacing a layer inside a mixed model: the replacement computes in bfloat16 too."""
    model16 = jnet.precision.mixed(L.serial(L.Input((5,)), L.Dense(4), L.ReLU()))
    seen = {}

    def spy(layer):
        if layer.kind != "ReLU":
            return None

        def apply_fn(params, state, x, **kw):
            seen["dtype"] = x.dtype
            return x, state

        return L.Layer(layer.init_fn, apply_fn, kind="Spy")

    mapped = L.map_layers(spy, model16)
    _, params, state = mapped.init(jax.random.key(0))
    y, _ = mapped.apply(params, state, jnp.ones((3, 5)))
    assert seen["dtype"] == jnp.bfloat16 and y.dtype == jnp.float32
