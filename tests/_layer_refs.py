"""Independent NumPy references for the core layers, written as naive loops from the definitions,
plus small helpers shared by the layer tests. Nothing here imports jnet's maths."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """TF-style SAME: out = ceil(n / s), odd extra pad at the end."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def pad_nhwc(x: np.ndarray, pads, value: float) -> np.ndarray:
    (t, b), (l, r) = pads
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def conv2d_ref(x, w, b, strides, pads, dilation) -> np.ndarray:
    """y[n,i,j,f] = b[f] + sum_{u,v,c} xpad[n, i*sh + u*dh, j*sw + v*dw, c] w[u,v,c,f]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    xp = pad_nhwc(x, pads, 0.0)
    kh, kw, _, f = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    ho = (xp.shape[1] - ((kh - 1) * dh + 1)) // sh + 1
    wo = (xp.shape[2] - ((kw - 1) * dw + 1)) // sw + 1
    y = np.zeros((x.shape[0], ho, wo, f))
    for i in range(ho):
        for j in range(wo):
            for u in range(kh):
                for v in range(kw):
                    y[:, i, j, :] += xp[:, i * sh + u * dh, j * sw + v * dw, :] @ w[u, v]
    return y + (0.0 if b is None else np.asarray(b))


def pool_ref(x, window, strides, pads, mode: str) -> np.ndarray:
    """Max / mean over windows. mode: "max", "avg_real" (divide by real count), "avg_all"."""
    x = np.asarray(x, np.float64)
    real = pad_nhwc(np.ones_like(x), pads, 0.0)
    xp = pad_nhwc(x, pads, -np.inf if mode == "max" else 0.0)
    (ph, pw), (sh, sw) = window, strides
    ho, wo = (xp.shape[1] - ph) // sh + 1, (xp.shape[2] - pw) // sw + 1
    y = np.zeros((x.shape[0], ho, wo, x.shape[3]))
    for i in range(ho):
        for j in range(wo):
            win = xp[:, i * sh:i * sh + ph, j * sw:j * sw + pw, :]
            if mode == "max":
                y[:, i, j] = win.max(axis=(1, 2))
            elif mode == "avg_all":
                y[:, i, j] = win.sum(axis=(1, 2)) / (ph * pw)
            else:
                count = real[:, i * sh:i * sh + ph, j * sw:j * sw + pw, :].sum(axis=(1, 2))
                y[:, i, j] = win.sum(axis=(1, 2)) / count
    return y


def max_pool_grad_ref(x, window, strides, pads, g) -> np.ndarray:
    """d(sum(g * maxpool(x)))/dx, routing each window's gradient to its first maximum
    (row-major), the PyTorch / XLA convention."""
    x = np.asarray(x, np.float64)
    (t, _), (l, _) = pads
    xp = pad_nhwc(x, pads, -np.inf)
    (ph, pw), (sh, sw) = window, strides
    dxp = np.zeros_like(xp)
    for n in range(g.shape[0]):
        for i in range(g.shape[1]):
            for j in range(g.shape[2]):
                for c in range(g.shape[3]):
                    win = xp[n, i * sh:i * sh + ph, j * sw:j * sw + pw, c]
                    u, v = np.unravel_index(np.argmax(win), win.shape)  # first max
                    dxp[n, i * sh + u, j * sw + v, c] += g[n, i, j, c]
    return dxp[:, t:t + x.shape[1], l:l + x.shape[2], :]


def batchnorm_ref(x, gamma, beta, mean, var, eps):
    """y = gamma (x - mean) / sqrt(var + eps) + beta, channels last."""
    x = np.asarray(x, np.float64)
    return np.asarray(gamma) * (x - mean) / np.sqrt(np.asarray(var) + eps) + np.asarray(beta)


def abstract_init(layer, key, in_shape):
    """(out_shape, params, state) with params/state as ShapeDtypeStructs, via jax.eval_shape."""
    box = {}

    def f(k):
        out, params, state = layer.init(k, in_shape)
        box["out"] = out
        return params, state

    params, state = jax.eval_shape(f, key)
    return box["out"], params, state


def shapes_of(tree):
    return jax.tree.map(lambda a: (tuple(a.shape), jnp.dtype(a.dtype)), tree)


def to_f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def randn(seed: int, shape, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def numel(shape) -> int:
    return math.prod(shape)
