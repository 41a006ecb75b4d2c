"""The `Layer` type and the checks every layer shares.

A layer is two pure functions (the stax idea, kept):

    out_shape, params, state = layer.init(key, in_shape)
    y, state = layer.apply(params, state, x, *, key=None, train=False)

`in_shape` / `out_shape` are per-example shapes (no batch axis); `x` and `y` carry a leading
batch axis. `params` are trainable arrays, `state` non-trainable ones (BatchNorm running
statistics); both are pytrees, `{}` when a layer has none.

`Layer` is a frozen dataclass holding those two functions plus the metadata that containers,
summaries and the training loop read: a CamelCase `kind` ("Conv2D"), an optional user `name`,
the fixed `input_shape` of an `Input`, the `children` of a container and the `head` of an
output layer. It owns no arrays.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jnet.errors import Error

Shape = tuple[int, ...]
PyTree = Any
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
        init_fn: `(key, in_shape) -> (out_shape, params, state)`.
        apply_fn: `(params, state, x, *, key, train) -> (y, state)`.
        kind: the CamelCase type name shown in errors and summaries, e.g. ``"Conv2D"``.
        name: the user's name for this layer inside a container (default: ``slug_index``).
        input_shape: per-example input shape fixed by an `Input` layer, else None.
        children: ``(name, layer)`` pairs of a container, in order (for summaries).
        head: the loss / prediction link of an output layer (or of a model ending in one).
        config: the constructor arguments, for `repr` and summaries.
        slug: the snake_case stem of default child names (``"conv2d"`` -> ``"conv2d_3"``).
    """

    init_fn: InitFn
    apply_fn: ApplyFn
    kind: str
    name: str | None = None
    input_shape: Any = None
    children: tuple[tuple[str, Layer], ...] = ()
    head: Head | None = None
    config: dict = dataclasses.field(default_factory=dict)
    slug: str = ""

    def __post_init__(self):
        if not self.slug:
            object.__setattr__(self, "slug", snake_case(self.kind))

    def init(self, key: jax.Array, in_shape: Any = None) -> tuple[Any, PyTree, PyTree]:
        """Create parameters and state for per-example inputs of shape `in_shape`.

        `in_shape` may be omitted when the layer (or the model's first layer) is an `Input`.
        Cheap under `jax.eval_shape`: shape inference allocates nothing.
        """
        if in_shape is None:
            if self.input_shape is None:
                raise LayerError(
                    self.kind,
                    "init needs the per-example input shape, got none. Pass it, e.g. "
                    "`layer.init(key, (28, 28, 1))`, or start the model with `Input(shape)`.",
                )
            in_shape = self.input_shape
        elif self.input_shape is not None and _as_shape(in_shape) != _as_shape(self.input_shape):
            raise LayerError(
                self.kind,
                f"init got in_shape {_as_shape(in_shape)} but the model's Input fixes "
                f"{_as_shape(self.input_shape)}. Drop the in_shape argument or change the Input.",
            )
        return self.init_fn(key, _as_shape(in_shape))

    def apply(
        self,
        params: PyTree,
        state: PyTree,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, PyTree]:
        """Run the layer on a batch `x` (leading batch axis); returns `(y, new_state)`."""
        return self.apply_fn(params, state, x, key=key, train=train)

    def named(self, name: str) -> Layer:
        """This layer under another name inside a container."""
        return dataclasses.replace(self, name=name)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        named = f", name={self.name!r}" if self.name else ""
        return f"{self.kind}({args}{named})"


def snake_case(kind: str) -> str:
    """CamelCase kind -> snake_case slug, acronyms whole: MaxPool2D -> max_pool2d, ReLU -> relu."""
    return re.sub(r"(?<=[a-z])(?=[A-Z][a-z])", "_", kind).lower()


def _as_shape(shape: Any) -> Any:
    """Normalise a shape (or a tuple of shapes, for multi-input layers) to tuples of ints."""
    if isinstance(shape, int):
        return (shape,)
    shape = tuple(shape)
    if all(isinstance(d, int) for d in shape):
        return shape
    return tuple(_as_shape(s) for s in shape)


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
