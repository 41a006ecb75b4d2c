"""Upsampling of images by an integer factor per axis (Keras ``UpSampling2D``, PyTorch
``nn.Upsample``)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jnet.layers.base import (
    Layer,
    LayerError,
    check_float,
    check_in_shape_rank,
    check_rank,
    parameter_free,
)
from jnet.layers.windows import as_tuple

KIND = "UpSampling2D"


def UpSampling2D(
    size: int | Sequence[int] = 2,
    interpolation: str = "nearest",
    name: str | None = None,
) -> Layer:
    """Upsample images by integer factors (sh, sw): (N, H, W, C) -> (N, H·sh, W·sw, C).

    ``"nearest"``: each pixel repeated sh x sw times, ``y[n, i, j] = x[n, i // sh, j // sw]``.

    ``"bilinear"``: half-pixel centres (``align_corners=False``, PyTorch's default and
    Keras's / ``tf.image.resize``'s convention). Per axis, output index i reads the source
    coordinate ``s = max((i + 0.5) / sh − 0.5, 0)``, interpolating linearly between
    ``floor(s)`` and ``min(floor(s) + 1, H − 1)`` with weight ``s − floor(s)`` on the latter
    (so the borders repeat the edge pixels). ``align_corners=True`` (corner pixels mapped to
    corner pixels) has no jnet counterpart.

    No params. PyTorch: ``nn.Upsample(scale_factor=(sh, sw), mode="nearest" | "bilinear",
    align_corners=False)`` (= ``F.interpolate``) on NCHW.

    Args:
        size: an int or (sh, sw), factors >= 1.
        interpolation: ``"nearest"`` or ``"bilinear"``.
        name: the layer's name inside a container.

    Returns:
        The `Layer`.

    Raises:
        LayerError: bad factors or interpolation; non-image or non-float inputs.
    """
    factors = as_tuple(KIND, "size", size, 2)
    if interpolation not in ("nearest", "bilinear"):
        raise LayerError(KIND, f"interpolation must be 'nearest' or 'bilinear', got "
                               f"{interpolation!r}.")

    def out_shape(in_shape):
        check_in_shape_rank(KIND, in_shape, 3, "(H, W, C)")
        h, w, c = in_shape
        return h * factors[0], w * factors[1], c

    def upsample(x):
        check_rank(KIND, x, 4, "(N, H, W, C)")
        check_float(KIND, x)
        for axis, s in ((1, factors[0]), (2, factors[1])):
            x = jnp.repeat(x, s, axis=axis) if interpolation == "nearest" \
                else _linear(x, axis, s)
        return x

    return parameter_free(KIND, upsample, out_shape=out_shape, name=name,
                          config={"size": factors, "interpolation": interpolation})


def _linear(x: jax.Array, axis: int, s: int) -> jax.Array:
    """Half-pixel linear interpolation of `x` along `axis`, `s` times as many samples."""
    n = x.shape[axis]
    src = np.maximum((np.arange(n * s) + 0.5) / s - 0.5, 0.0)
    lo = np.floor(src).astype(np.int32)
    hi = np.minimum(lo + 1, n - 1)
    shape = [1] * x.ndim
    shape[axis] = n * s
    frac = jnp.asarray(src - lo, x.dtype).reshape(shape)
    return jnp.take(x, lo, axis=axis) * (1 - frac) + jnp.take(x, hi, axis=axis) * frac
