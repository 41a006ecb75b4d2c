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
the fixed `input_shape` of an `Input`, the `head` of an output layer, and for a container the
three parts of the container protocol: its `children`, the input shape it routes to each
(`child_shapes`) and how to `rebuild` it around transformed children. It owns no arrays.

This module also holds what every layer and container shares: `LayerError`, the input checks,
the container toolkit (`init_child`, `apply_child`, `check_children`, `split_key`),
`parameter_free` (the factory of layers without params) and `abstract_init`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnet.errors import ArgumentTypeError, Error
from jnet.typing import PyTree, Shape

InitFn = Callable[[jax.Array, Any], tuple[Any, PyTree, PyTree]]
ApplyFn = Callable[..., tuple[Any, PyTree]]


class LayerError(Error, ValueError):
    """A layer was given something it cannot use (a `jnet.Error` and a `ValueError`).

    The message names the layer by its path inside the model (``"block_2/conv2d_1"``) and its
    type, says what was expected, what was given, and how to fix it. Containers prepend their
    child's name as the error travels up, so the user sees where in the model it happened.
    """

    def __init__(self, kind: str, message: str, path: Sequence[str] = (), *,
                 where: str | None = None):
        super().__init__(message, where=where)
        self.kind = kind
        self.path = tuple(path)

    def _text(self) -> str:
        at = f" '{'/'.join(self.path)}'" if self.path else ""
        return f"{self.kind} layer{at}: {self.message}"

    def within(self, name: str) -> LayerError:
        """The same error, seen from the container that named this layer `name`."""
        return LayerError(self.kind, self.message, (name, *self.path), where=self.where)


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
        child_shapes: for a container, ``in_shape -> (one per-example input shape per child)``:
            the shape the container routes to each child (`summary` reads it).
        rebuild: for a container, ``(new children, in order) -> Layer``: the same container
            around transformed children (`jnet.precision.mixed` uses it). Together with
            `children` and `child_shapes` this is the whole container protocol: whatever walks
            a model asks the container, never switches on its kind.
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
    child_shapes: Callable[[Any], tuple[Any, ...]] | None = None
    rebuild: Callable[[tuple[Layer, ...]], Layer] | None = None
    head: Head | None = None
    config: dict = dataclasses.field(default_factory=dict)
    slug: str = ""
    keeps_float32: bool = False
    side_inputs: tuple[str, ...] = ()
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
        if self.children and (self.child_shapes is None or self.rebuild is None):
            raise LayerError(
                self.kind,
                "a container must say how it routes shapes to its children and how to rebuild "
                "itself around new ones, got children but no child_shapes= / rebuild=. Pass "
                "both to Layer(...) (see 'Writing your own container' in the README).",
            )

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
            train: training behaviour (batch statistics, dropout) instead of evaluation.
            mask: boolean (N, T), True on real time steps of a padded sequence batch.
                Containers pass it to every child; layers with no use for it ignore it.
            side_inputs: extra keyword inputs the layer declares in `side_inputs`, e.g.
                ``initial_state=`` of `LSTM` / `GRU`.

        Raises:
            LayerError: a side input the layer does not take, a `train` that is not a bool,
                inputs it cannot use, or params / state that do not match the layer's own
                configuration (made by another model, or for inputs of another size).
        """
        unknown = sorted(set(side_inputs) - set(self.side_inputs))
        if unknown:
            takes = ", ".join(("key", "train", "mask", *self.side_inputs))
            raise LayerError(
                self.kind,
                f"apply got the keyword(s) {unknown}, which this layer does not take; it takes "
                f"{takes}. Pass side inputs to the layer that uses them.",
            )
        if not _is_bool(train):
            raise LayerError(
                self.kind,
                f"train must be True or False, got {train!r}. Pass train=True for training "
                "behaviour (dropout, batch statistics), train=False for evaluation.",
            )
        mismatch = self._trees_mismatch(params, state, x)
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

    def _trees_mismatch(self, params: PyTree, state: PyTree, x: Any) -> str:
        """What differs between (params, state) and those `init` makes for inputs like `x`
        ("" when they match or cannot be compared).

        Only leaves are checked, on a single batch array: containers check their children's
        names themselves (`check_children`) and each child checks its own part; a layer fed a
        tuple (a recurrent cell's ``(carry, x_t)``) has no in_shape to read off `x`. Shapes
        are static, so under `jax.jit` this runs once, at tracing; the expected trees are
        cached per input shape.
        """
        if self.children or not hasattr(x, "shape") or len(x.shape) < 1:
            return ""
        in_shape = tuple(int(d) for d in x.shape[1:])
        if in_shape not in self._expected:
            try:
                _, want_params, want_state = abstract_init(self, abstract_key(), in_shape)
                self._expected[in_shape] = (_shapes(want_params), _shapes(want_state))
            except Exception:  # init rejects this shape: apply reports the input itself
                self._expected[in_shape] = None
        expected = self._expected[in_shape]
        if expected is None:
            return ""
        problems = [_tree_diff(what, _shapes(tree), want)
                    for what, tree, want in (("params", params, expected[0]),
                                             ("state", state, expected[1]))]
        problems = [p for p in problems if p]
        if not problems:
            return ""
        return (f"{'; '.join(problems)} (what {self.kind}{self._config_text()} makes for "
                f"inputs of shape {('N', *in_shape)}). They were made by another model or "
                "for inputs of another size: pass the params and state from this model's "
                "init (or a checkpoint of this model), or fix the layer before this one.")

    def _config_text(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"({args})" if args else ""

    def named(self, name: str) -> Layer:
        """This layer under another name inside a container."""
        return dataclasses.replace(self, name=name)

    def with_children(self, children: Sequence[Layer]) -> Layer:
        """The same container around `children` (one per current child, same names kept)."""
        if not self.children:
            raise LayerError(self.kind, "with_children: this layer has no children.")
        if len(children) != len(self.children):
            raise LayerError(
                self.kind,
                f"with_children: expected {len(self.children)} children, got {len(children)}.",
            )
        named = tuple(new.named(name) for (name, _), new in zip(self.children, children,
                                                                 strict=True))
        assert self.rebuild is not None  # guaranteed by __post_init__
        return dataclasses.replace(self.rebuild(named), name=self.name)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        named = f", name={self.name!r}" if self.name else ""
        return f"{self.kind}({args}{named})"


def _is_bool(value: Any) -> bool:
    """A Python or NumPy bool, or a scalar boolean array (a traced `train` flag included)."""
    if isinstance(value, (bool, np.bool_)):
        return True
    return getattr(value, "dtype", None) == jnp.bool_ and jnp.ndim(value) == 0


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
    a container is then rebuilt around its mapped children and a leaf is kept as it is.
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


def snake_case(kind: str) -> str:
    """CamelCase kind -> snake_case slug, acronyms whole: MaxPool2D -> max_pool2d, ReLU -> relu."""
    return re.sub(r"(?<=[a-z])(?=[A-Z][a-z])", "_", kind).lower()


def as_shape(shape: Any, kind: str = "Layer", what: str = "in_shape") -> Any:
    """Normalise a shape (or a tuple of shapes, for multi-input layers) to tuples of ints.

    Raises:
        LayerError: anything else (a str, a float size, None), named as `what` of `kind`.
    """
    if _is_size(shape):
        return (int(shape),)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)):
        raise LayerError(
            kind,
            f"{what} must be a shape, a tuple of int sizes such as (28, 28, 1) (no batch axis), "
            f"or a tuple of such shapes, got {type(shape).__name__} {shape!r}.",
        )
    shape = tuple(shape)
    if all(_is_size(d) for d in shape):
        return tuple(int(d) for d in shape)
    return tuple(as_shape(s, kind, what) for s in shape)


def _is_size(d: Any) -> bool:
    """An int size (NumPy ints included; bools are not sizes)."""
    return isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_))


# ----------------------------------------------------------------------------------------
# Checks shared by layers. They run on static shapes and dtypes, so under `jax.jit` they cost
# nothing after tracing.


def check_rank(kind: str, x: Any, rank: int, layout: str, fix: str = "") -> None:
    """Raise unless the batch `x` has `rank` dims (batch axis included), e.g. 4 for NHWC."""
    shape = jnp.shape(x)
    if len(shape) != rank:
        raise LayerError(
            kind,
            f"expected a batch of rank {rank} {layout}, got shape {tuple(shape)} "
            f"(rank {len(shape)}). {fix}".rstrip(),
        )


def check_in_shape_rank(kind: str, in_shape: Shape, rank: int, layout: str, fix: str = "") -> None:
    """Raise unless the per-example `in_shape` has `rank` dims, e.g. 3 for (H, W, C)."""
    if len(in_shape) != rank:
        raise LayerError(
            kind,
            f"expected per-example inputs of rank {rank} {layout}, got in_shape "
            f"{tuple(in_shape)}. {fix}".rstrip(),
        )


def check_float(kind: str, x: Any) -> None:
    """Raise unless `x` is a floating-point array."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise LayerError(
            kind,
            f"expected a floating-point input, got dtype {dtype}. "
            "Cast the data first, e.g. `x.astype(jnp.float32)`.",
        )


def check_last_dim(kind: str, x: Any, expected: int, what: str = "features") -> None:
    """Raise unless the last axis of `x` has `expected` entries (the size params were made for)."""
    got = jnp.shape(x)[-1] if jnp.ndim(x) else None
    if got != expected:
        raise LayerError(
            kind,
            f"expected inputs with {expected} {what} on the last axis (the size its params were "
            f"initialised for), got shape {tuple(jnp.shape(x))}. Re-run init with the right "
            "in_shape, or fix the layer before this one.",
        )


def check_mask(kind: str, mask: Any, n: int, t: int) -> jax.Array | None:
    """`mask` as a boolean (N, T) array (None stays None); a `LayerError` for any other shape
    or dtype. Shapes and dtypes are static, so under `jax.jit` this costs nothing."""
    if mask is None:
        return None
    shape, dtype = jnp.shape(mask), jnp.result_type(mask)
    if shape != (n, t) or dtype != jnp.bool_:
        fix = ("Cast it with `mask.astype(bool)`." if shape == (n, t) else
               "Build it with `jnet.data.mask_from_lengths(lengths, T)`.")
        raise LayerError(
            kind,
            f"expected mask= as a boolean array of shape (N, T) = {(n, t)}, True on real steps, "
            f"got shape {shape} dtype {dtype}. {fix}",
        )
    return jnp.asarray(mask)


def require_key(kind: str, key: jax.Array | None) -> jax.Array:
    """Return `key`, or raise the error every random layer gives in training without one."""
    if key is None:
        raise LayerError(
            kind,
            "needs a PRNG key when train=True, got key=None. Pass one, e.g. "
            "`model.apply(params, state, x, key=jax.random.key(0), train=True)`, "
            "or call with train=False for evaluation.",
        )
    return key
