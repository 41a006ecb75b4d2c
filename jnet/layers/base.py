"""The `Layer` type and the checks every layer shares.

A layer is two pure functions (the stax idea, kept):

    out_shape, params, state = layer.init(key, in_shape)
    y, state = layer.apply(params, state, x, *, key=None, train=False, mask=None)

`in_shape` / `out_shape` are per-example shapes (no batch axis); `x` and `y` carry a leading
batch axis. `params` are trainable arrays, `state` non-trainable ones (BatchNorm running
statistics); both are pytrees, `{}` when a layer has none. `mask` is the one side input every
layer accepts: a boolean (N, T) array, True on the real steps of a padded sequence batch;
containers pass it to every child and layers with no use for it ignore it.

`Layer` is a frozen dataclass holding those two functions plus the metadata that containers,
summaries and the training loop read: a CamelCase `kind` ("Conv2D"), an optional user `name`,
the fixed `input_shape` of an `Input`, the `head` of an output layer. It owns no arrays.

A container holds its `children` as data and is made by `container(define, children)`: one
function `define(children) -> Layer` gives its init, apply and metadata, rebuilding it around
new children (`with_children`, `map_layers`) calls `define` again, and the input shape routed to
each child (`child_shapes`) is read off its own init. So a container's parts cannot disagree:
a copy that swaps its `apply_fn` or its children is refused.

This module also holds what every layer and container shares: `LayerError`, the input and
argument checks, the container toolkit (`container`, `init_child`, `apply_child`,
`check_children`, `split_key`, `map_layers`), `parameter_free` (the factory of layers without
params) and `abstract_init`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import ArgumentTypeError
from jnet.layers.checks import LayerError as LayerError
from jnet.layers.checks import as_shape as as_shape
from jnet.layers.checks import check_float as check_float
from jnet.layers.checks import check_in_shape_rank as check_in_shape_rank
from jnet.layers.checks import check_last_dim as check_last_dim
from jnet.layers.checks import check_mask as check_mask
from jnet.layers.checks import check_positive_int as check_positive_int
from jnet.layers.checks import check_rank as check_rank
from jnet.layers.checks import is_int as is_int
from jnet.layers.checks import is_number as is_number
from jnet.layers.checks import require_key as require_key
from jnet.layers.checks import snake_case as snake_case
from jnet.typing import PyTree as PyTree
from jnet.typing import Shape as Shape

InitFn = Callable[[jax.Array, Any], tuple[Any, PyTree, PyTree]]
ApplyFn = Callable[..., tuple[Any, PyTree]]


class Head(NamedTuple):
    """What an output layer adds to a model: its loss and its prediction link.

    A model ending in an output layer returns raw outputs (logits for classification) from
    `apply`; training calls `loss(outputs, targets) -> per-example loss` and `jnet.predict`
    returns `link(outputs)` (probabilities for classification, values for regression).
    """

    task: str  # "classification" or "regression"
    loss: Callable[[jax.Array, jax.Array], jax.Array]
    link: Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True, eq=False)
class Layer:
    """A layer: a pure `init` / `apply` pair plus the metadata containers read.

    Attributes:
        init_fn: ``(key, in_shape) -> (out_shape, params, state)``.
        apply_fn: ``(params, state, x, *, key, train, mask, **side_inputs) -> (y, state)``.
        kind: the CamelCase type name shown in errors and summaries, e.g. ``"Conv2D"``. A
            display name only: nothing in jnet decides anything by it.
        name: the user's name for this layer inside a container (default: ``slug_index``).
        input_shape: per-example input shape fixed by an `Input` layer, else None.
        children: ``(name, layer)`` pairs of a container, in order. Their params and state
            live under those names in the container's params and state.
        definition: for a container, the ``define(children) -> Layer`` that `container` made
            it with, from `children` (a dict name -> layer). Everything but `name` and
            `children` is what `definition` returns, and `with_children` calls it again, so
            a container is always the same function of its children (the container protocol;
            whatever walks a model asks it, never switches on `kind`).
        head: the loss / prediction link of an output layer (or of a model ending in one).
        config: the constructor arguments, for `repr`.
        slug: the snake_case stem of default child names (``"conv2d"`` -> ``"conv2d_3"``).
        keeps_float32: compute in float32 under mixed precision (normalisation layers, whose
            statistics need float32's mantissa).
        side_inputs: names of the extra keyword inputs `apply` takes besides ``key``, ``train``
            and ``mask`` (``("initial_state",)`` for the recurrent layers).
    """

    init_fn: InitFn
    apply_fn: ApplyFn
    kind: str
    name: str | None = None
    input_shape: Any = None
    children: tuple[tuple[str, Layer], ...] = ()
    definition: Callable[[dict[str, Layer]], Layer] | None = None
    head: Head | None = None
    config: dict = dataclasses.field(default_factory=dict)
    slug: str = ""
    keeps_float32: bool = False
    side_inputs: tuple[str, ...] = ()
    # (children, what `definition` made of them), set by `container`: a copy whose parts are
    # not these (a replaced apply_fn, children swapped without `definition`) is refused.
    _made: tuple[tuple[tuple[str, Layer], ...], Layer] | None = dataclasses.field(
        default=None, repr=False)
    # in_shape -> the (params, state) `init` makes for it, as {path: shape}; None where init
    # rejects that shape. Filled by `apply`'s params check; a fresh one per copy of the layer.
    _expected: dict = dataclasses.field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.name is not None and (not isinstance(self.name, str) or not self.name
                                      or "/" in self.name):
            raise LayerError(
                self.kind,
                f"name must be a non-empty str without '/' (it keys the params and the "
                f"checkpoint paths, where '/' separates levels), got {self.name!r}. Pass e.g. "
                "name='encoder_1'.",
            )
        if not self.slug:
            object.__setattr__(self, "slug", snake_case(self.kind))
        if self.children or self.definition is not None or self._made is not None:
            _check_made(self)

    def init(self, key: jax.Array, in_shape: Any = None) -> tuple[Any, PyTree, PyTree]:
        """Create parameters and state for per-example inputs of shape `in_shape`.

        `in_shape` may be omitted when the layer (or the model's first layer) is an `Input`.
        Cheap under `jax.eval_shape`: shape inference allocates nothing.

        Returns:
            ``(out_shape, params, state)``: the per-example output shape and two pytrees.

        Raises:
            LayerError: no shape to work with, a shape the layer cannot take, or a `key` that
                is not a PRNG key.
        """
        if key is None or isinstance(key, (bool, int, float, str)):
            raise LayerError(
                self.kind,
                f"init needs a PRNG key as key, got {key!r}. Pass one, e.g. "
                "`layer.init(jax.random.key(0), in_shape)`.",
            )
        if in_shape is None:
            if self.input_shape is None:
                raise LayerError(
                    self.kind,
                    "init needs the per-example input shape, got none. Pass it, e.g. "
                    "`layer.init(key, (28, 28, 1))`, or start the model with `Input(shape)`.",
                )
            in_shape = self.input_shape
        in_shape = as_shape(in_shape, self.kind)
        if any(d < 0 for d in jax.tree.leaves(in_shape)):
            raise LayerError(
                self.kind,
                f"in_shape must hold non-negative sizes, got {in_shape}. Pass the per-example "
                "shape without the batch axis, e.g. (28, 28, 1).",
            )
        if self.input_shape is not None and in_shape != as_shape(self.input_shape):
            raise LayerError(
                self.kind,
                f"init got in_shape {in_shape} but the model's Input fixes "
                f"{as_shape(self.input_shape)}. Drop the in_shape argument or change the Input.",
            )
        return self.init_fn(key, in_shape)

    def apply(
        self,
        params: PyTree,
        state: PyTree,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
        mask: jax.Array | None = None,
        **side_inputs: Any,
    ) -> tuple[Any, PyTree]:
        """Run the layer on a batch `x` (leading batch axis); returns ``(y, new_state)``.

        Args:
            params, state: as made by `init`.
            x: the batch, ``(N, *in_shape)``.
            key: PRNG key for random layers (dropout) in training.
            train: training behaviour (batch statistics, dropout) instead of evaluation: a
                Python (or NumPy) bool, static under `jax.jit`.
            mask: boolean (N, T), True on real time steps of a padded sequence batch.
                Containers pass it to every child; layers with no use for it ignore it.
            side_inputs: extra keyword inputs the layer declares in `side_inputs`, e.g.
                ``initial_state=`` of `LSTM` / `GRU`.

        Raises:
            LayerError: a side input the layer does not take, a `train` that is not a bool
                (or is traced by `jax.jit`), inputs it cannot use, or params / state that do
                not match the layer's own configuration (made by another model, or for inputs
                of another size).
        """
        unknown = sorted(set(side_inputs) - set(self.side_inputs))
        if unknown:
            takes = ", ".join(("key", "train", "mask", *self.side_inputs))
            raise LayerError(
                self.kind,
                f"apply got the keyword(s) {unknown}, which this layer does not take; it takes "
                f"{takes}. Pass side inputs to the layer that uses them.",
            )
        train = _static_train(self.kind, train)
        mismatch = _trees_mismatch(self, params, state, x)
        try:
            out = self.apply_fn(params, state, x, key=key, train=train, mask=mask,
                                **side_inputs)
        except LayerError:
            raise  # the layer's own check says it best
        except Exception as e:
            if mismatch:  # a raw KeyError / shape error caused by the foreign params
                raise LayerError(self.kind, mismatch) from e
            raise
        if mismatch:  # never hand back outputs computed from params of another layer
            raise LayerError(self.kind, mismatch)
        return out

    def named(self, name: str) -> Layer:
        """This layer under another name inside a container."""
        return dataclasses.replace(self, name=name)

    def with_children(self, children: Sequence[Layer]) -> Layer:
        """The same container around `children` (one per current child, in order): its
        `definition` called again on them, under the same child names and container name.

        Raises:
            LayerError: a leaf, or not one new child per current child.
        """
        if not self.children:
            raise LayerError(self.kind, "with_children: this layer has no children.")
        if len(children) != len(self.children):
            raise LayerError(
                self.kind,
                f"with_children: expected {len(self.children)} children, got {len(children)}.",
            )
        assert self.definition is not None  # guaranteed by __post_init__
        pairs = tuple((name, new) for (name, _), new in zip(self.children, children,
                                                             strict=True))
        return container(self.definition, pairs, name=self.name)

    def child_shapes(self, in_shape: Any) -> tuple[Any, ...]:
        """The per-example input shape this container's `init` hands each child, in order
        (``()`` for a leaf). Read off `init` itself, run abstractly on stand-ins that record
        their shape, so it cannot disagree with the shapes `init` really threads.

        Raises:
            LayerError: the container rejects `in_shape`, or its init never initialises a
                child.
        """
        return _routed_shapes(self, in_shape)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        named = f", name={self.name!r}" if self.name else ""
        return f"{self.kind}({args}{named})"


def _routed_shapes(layer: Layer, in_shape: Any) -> tuple[Any, ...]:
    """`Layer.child_shapes`: the container's init, run abstractly on stand-ins of its children
    that record the shape they are initialised with."""
    seen: dict[int, Any] = {}

    def stand_in(i: int, child: Layer) -> Layer:
        def init_fn(key, shape):
            seen.setdefault(i, shape)
            return child.init(key, shape)

        # A leaf with the child's metadata: `definition` may read its head or input_shape.
        return dataclasses.replace(child, init_fn=init_fn, children=(), definition=None,
                                   _made=None)

    if not layer.children:
        return ()
    stand_ins = [stand_in(i, child) for i, (_, child) in enumerate(layer.children)]
    abstract_init(layer.with_children(stand_ins), abstract_key(), in_shape)
    missing = [name for i, (name, _) in enumerate(layer.children) if i not in seen]
    if missing:
        raise LayerError(
            layer.kind,
            f"its init never initialised the children {missing}, so their params and "
            "shapes are unknown. Call `init_child(name, layer, key, shape)` for every child.",
        )
    return tuple(seen[i] for i in range(len(layer.children)))


# What a container's `definition` decides; a copy of the container may change none of them.
_DERIVED = ("init_fn", "apply_fn", "kind", "input_shape", "head", "config", "slug",
            "keeps_float32", "side_inputs")


def _check_made(layer: Layer) -> None:
    """Raise unless `layer` is exactly what its `definition` made of its `children`."""
    if layer.definition is None or layer._made is None:
        raise LayerError(
            layer.kind,
            "a container is made by `jnet.layers.container(define, children)`, which derives "
            "its init, apply and metadata from one definition of its children, so rebuilding "
            "it cannot drift; got children= (or definition=) on Layer(...) directly. See "
            "'A container' in docs/custom-layers.md.",
        )
    children, body = layer._made
    changed = [f for f in _DERIVED if getattr(layer, f) is not getattr(body, f)]
    changed += ["children"] if layer.children is not children else []
    if changed:
        raise LayerError(
            layer.kind,
            f"this copy of a container replaces its {', '.join(changed)}, which its definition "
            "makes from its children, so rebuilding it (map_layers, precision.mixed) would "
            "silently undo the change. Wrap it in a new container (jnet.layers.container) "
            "instead, or rebuild it around new children with `with_children`.",
        )


def _static_train(kind: str, train: Any) -> bool:
    """`train` as a Python bool; a `LayerError` for anything else, a traced value included
    (it picks the code path, so it must be known when `jax.jit` traces)."""
    if isinstance(train, jax.core.Tracer):
        raise LayerError(
            kind,
            f"train must be a Python bool known at trace time (it picks the code path: "
            f"dropout, batch statistics), got a traced value {train}. Mark it static, e.g. "
            "`jax.jit(step, static_argnames='train')`, or close over it.",
        )
    if isinstance(train, (bool, np.bool_)) or (
            getattr(train, "dtype", None) == jnp.bool_ and jnp.ndim(train) == 0):
        return bool(train)
    raise LayerError(
        kind,
        f"train must be True or False, got {train!r}. Pass train=True for training "
        "behaviour (dropout, batch statistics), train=False for evaluation.",
    )


def _trees_mismatch(layer: Layer, params: PyTree, state: PyTree, x: Any) -> str:
    """What differs between (params, state) and those `layer.init` makes for inputs like `x`
    ("" when they match or cannot be compared).

    Only leaves are checked, on a single batch array: containers check their children's
    names themselves (`check_children`) and each child checks its own part; a layer fed a
    tuple (a recurrent cell's ``(carry, x_t)``) has no in_shape to read off `x`. Shapes
    are static, so under `jax.jit` this runs once, at tracing; the expected trees are
    cached per input shape.
    """
    if layer.children or not hasattr(x, "shape") or len(x.shape) < 1:
        return ""
    in_shape = tuple(int(d) for d in x.shape[1:])
    cache = layer._expected
    if in_shape not in cache:
        try:
            _, want_params, want_state = abstract_init(layer, abstract_key(), in_shape)
            cache[in_shape] = (_shapes(want_params), _shapes(want_state))
        except Exception:  # init rejects this shape: apply reports the input itself
            cache[in_shape] = None
    expected = cache[in_shape]
    if expected is None:
        return ""
    problems = [_tree_diff(what, _shapes(tree), want)
                for what, tree, want in (("params", params, expected[0]),
                                         ("state", state, expected[1]))]
    problems = [p for p in problems if p]
    if not problems:
        return ""
    args = ", ".join(f"{k}={v!r}" for k, v in layer.config.items())
    call = f"{layer.kind}({args})" if args else layer.kind
    return (f"{'; '.join(problems)} (what {call} makes for inputs of shape "
            f"{('N', *in_shape)}). They were made by another model or for inputs of another "
            "size: pass the params and state from this model's init (or a checkpoint of this "
            "model), or fix the layer before this one.")


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """``{"['w']": (3, 10), ...}``: every leaf's key path and shape; None leaves count as absent."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): tuple(leaf.shape if hasattr(leaf, "shape")
                                              else np.shape(leaf)) for path, leaf in leaves}


def _tree_diff(what: str, got: dict, want: dict) -> str:
    """One sentence on how the leaves `got` differ from `want` ("" when they agree)."""
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    shapes = [f"{what}{k} has shape {got[k]}, expected {want[k]}"
              for k in want if k in got and got[k] != want[k]]
    parts = ([f"{what} lack {', '.join(missing)}"] if missing else []) + (
        [f"{what} hold unexpected {', '.join(extra)}"] if extra else []) + shapes
    return "; ".join(parts)


def map_layers(fn: Callable[[Layer], Layer | None], layer: Layer) -> Layer:
    """Rebuild `layer` with `fn` applied top-down through the container protocol.

    `fn(layer)` returns a replacement (which is not descended into) or None to keep going:
    a container is then rebuilt around its mapped children (`Layer.with_children`: its
    definition called again, child names kept) and a leaf is kept as it is. So
    ``map_layers(lambda layer: None, model)`` is `model` again: same init, apply, summary and
    config, `jnet.precision.mixed` models included.

    Returns:
        The rebuilt layer.

    Raises:
        jnet.ArgumentTypeError: `layer` is not a Layer, `fn` is not callable or returns
            something other than a Layer or None.
    """
    if not isinstance(layer, Layer):
        raise ArgumentTypeError(
            f"layer must be a Layer (e.g. a `serial` model), got "
            f"{type(layer).__name__} {layer!r}. Call it as map_layers(fn, model).",
            where="jnet.layers.map_layers",
        )
    if not callable(fn):
        raise ArgumentTypeError(
            f"fn must be a function layer -> Layer or None, got {type(fn).__name__} "
            f"{fn!r}. Call it as map_layers(fn, model).",
            where="jnet.layers.map_layers",
        )
    replaced = fn(layer)
    if replaced is not None:
        if not isinstance(replaced, Layer):
            raise ArgumentTypeError(
                f"fn must return a Layer (the replacement) or None (keep going), but "
                f"for {layer!r} it returned {type(replaced).__name__} {replaced!r}.",
                where="jnet.layers.map_layers",
            )
        return replaced
    if not layer.children:
        return layer
    return layer.with_children([map_layers(fn, child) for _, child in layer.children])


def abstract_init(layer: Layer, key: Any, in_shape: Any) -> tuple[Any, PyTree, PyTree]:
    """`layer.init` under `jax.eval_shape`: the output shape (Python ints) plus params / state
    as `jax.ShapeDtypeStruct` trees; allocates nothing."""
    out = {}

    def init(k):
        # Shapes are Python ints, not arrays, so they leave the trace through this closure.
        out["shape"], params, state = layer.init(k, in_shape)
        return params, state

    params, state = jax.eval_shape(init, key)
    return out["shape"], params, state


def output_shape(layer: Layer, in_shape: Any) -> Any:
    """The per-example output shape of `layer` for `in_shape`, computed abstractly."""
    return abstract_init(layer, abstract_key(), in_shape)[0]


def abstract_key() -> Any:
    """A PRNG key as a `jax.ShapeDtypeStruct`: enough for `abstract_init`, allocates nothing."""
    return jax.eval_shape(lambda: jax.random.key(0))


# ----------------------------------------------------------------------------------------
# The container toolkit: what `serial`, `parallel`, `residual`, `Bidirectional` and users'
# own containers share.


def container(define: Callable[[dict[str, Layer]], Layer],
              children: Mapping[str, Layer] | Iterable[tuple[str, Layer]], *,
              name: str | None = None) -> Layer:
    """A container: the layer `define` makes of `children`, holding them as data.

    `define(children)` gets the children as a dict name -> layer and returns a plain `Layer`
    (no children) whose init / apply run them (with `init_child` / `apply_child`, params and
    state keyed by child name) and whose metadata (`kind`, `config`, `head`, ...) are the
    container's. Rebuilding (`Layer.with_children`, `map_layers`, `jnet.precision.mixed`)
    calls `define` again on the new children and `Layer.child_shapes` is read off its init,
    so there is one definition and nothing to keep in step by hand.

    Args:
        define: ``children -> Layer``, the one definition of the container.
        children: ``{name: layer}`` or ``(name, layer)`` pairs, in order; names are unique,
            non-empty and without '/'.
        name: the container's own name inside its parent.

    Returns:
        The container: what `define` returned, with `children`, `definition` and `name` set.

    Raises:
        LayerError: a child that is not a Layer, a bad or repeated child name, or a `define`
            that does not return a plain Layer.
    """
    pairs = tuple(children.items() if isinstance(children, Mapping) else children)
    names = [child for child, _ in pairs]
    for child, layer in pairs:
        if not isinstance(child, str) or not child or "/" in child or names.count(child) > 1:
            raise LayerError("Container", f"child names must be unique non-empty strs without "
                             f"'/', got {names}. Give each child its own name.")
        if not isinstance(layer, Layer):
            raise LayerError("Container", f"child {child!r} is a {type(layer).__name__}, not a "
                             "Layer. Call the constructor, e.g. `L.ReLU()` rather than `L.ReLU`.")
    body = define(dict(pairs))
    if not isinstance(body, Layer) or body.children:
        raise LayerError("Container", f"define must return a Layer without children (the "
                         f"container's own init / apply), got {body!r}.")
    return dataclasses.replace(body, name=name, children=pairs, definition=define,
                               _made=(pairs, body))


def split_key(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    """`n` independent keys from `key` (n Nones for None: evaluation needs no randomness)."""
    return [None] * n if key is None else list(jax.random.split(key, n))


def init_child(name: str, layer: Layer, key: jax.Array, in_shape: Any) -> tuple[Any, Any, Any]:
    """``layer.init`` with any `LayerError` located at child `name`."""
    try:
        return layer.init(key, in_shape)
    except LayerError as e:
        raise e.within(name) from None


def apply_child(name: str, layer: Layer, params: PyTree, state: PyTree, x: Any, *,
                key: jax.Array | None = None, train: bool = False,
                mask: jax.Array | None = None, **side_inputs: Any) -> tuple[Any, PyTree]:
    """``layer.apply`` on the child's part (``params[name]``, ``state[name]``) of a
    container's trees, with any `LayerError` located at child `name`."""
    try:
        return layer.apply(params[name], state[name], x, key=key, train=train, mask=mask,
                           **side_inputs)
    except LayerError as e:
        raise e.within(name) from None


def check_children(kind: str, what: str, tree: Any, names: Sequence[str]) -> None:
    """Raise unless `tree` (params or state) is a dict holding exactly the children `names`."""
    if not isinstance(tree, dict):
        raise LayerError(
            kind,
            f"expected {what} as a dict keyed by child name {list(names)}, got "
            f"{type(tree).__name__}. Pass the {what} returned by this model's init.",
        )
    missing = [n for n in names if n not in tree]
    extra = [k for k in tree if k not in names]
    if missing or extra:
        raise LayerError(
            kind,
            f"{what} do not match the model: missing {missing}, unexpected {extra}. "
            f"They were made by a different model; re-run init or load a matching checkpoint.",
        )


def parameter_free(
    kind: str,
    fn: Callable[..., Any],
    *,
    out_shape: Callable[[Any], Any] | None = None,
    name: str | None = None,
    config: dict | None = None,
    slug: str = "",
    float_only: bool = False,
    with_context: bool = False,
) -> Layer:
    """A layer without params or state computing ``fn(x)`` (stax's ``elementwise``).

    Args:
        kind: the display name, ``"ReLU"``.
        fn: ``fn(x) -> y``; with ``with_context=True``, ``fn(x, key=, train=, mask=)``.
        out_shape: ``in_shape -> out_shape`` (default: the shape is kept); it may raise a
            `LayerError` for shapes the layer cannot take.
        float_only: reject non-floating inputs with a clear error.
        name, config, slug: as for `Layer`.
    """

    def init_fn(key, in_shape):
        return (in_shape if out_shape is None else out_shape(in_shape)), {}, {}

    def apply_fn(params, state, x, *, key=None, train=False, mask=None):
        if float_only:
            check_float(kind, x)
        y = fn(x, key=key, train=train, mask=mask) if with_context else fn(x)
        return y, state

    return Layer(init_fn, apply_fn, kind=kind, name=name, config=config or {}, slug=slug)
