"""Per-example reshapes: `Flatten` and `Reshape`. The batch axis is never touched."""

from __future__ import annotations

import math
from collections.abc import Sequence

from jnet.layers.base import Layer, LayerError, Shape, as_shape, parameter_free


def Flatten(name: str | None = None) -> Layer:
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...), in row-major (C) order.

    With NHWC images the flattened order is (H, W, C); PyTorch flattens NCHW as (C, H, W), so a
    Dense layer after Flatten needs its rows permuted when weights are ported.
    """

    return parameter_free("Flatten", lambda x: x.reshape(x.shape[0], -1),
                          out_shape=lambda in_shape: (math.prod(in_shape),), name=name)


def Reshape(shape: int | Sequence[int], name: str | None = None) -> Layer:
    """Reshape each example to `shape` (row-major); one entry may be -1 (inferred).

    (N, *in_shape) -> (N, *shape). A LayerError says so when the sizes cannot match.
    """
    target = as_shape(shape)
    if sum(d == -1 for d in target) > 1 or any(d < 1 and d != -1 for d in target):
        raise LayerError(
            "Reshape",
            f"shape may hold positive ints and at most one -1, got {target}.",
        )

    def out_shape(in_shape: Shape) -> Shape:
        size, known = math.prod(in_shape), math.prod(d for d in target if d != -1)
        if (-1 in target and size % known) or (-1 not in target and size != known):
            raise LayerError(
                "Reshape",
                f"cannot reshape examples of shape {tuple(in_shape)} ({size} values) to {target}"
                f" ({known} values{' times a whole number' if -1 in target else ''}). Change the "
                "target shape so the number of values per example is kept.",
            )
        return tuple(size // known if d == -1 else d for d in target)

    return parameter_free("Reshape", lambda x: x.reshape(x.shape[0], *out_shape(x.shape[1:])),
                          out_shape=out_shape, config={"shape": target}, name=name)
