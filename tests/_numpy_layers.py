"""`numpy_apply(layer, params, state, x, train)`: what a core layer's `apply` must return,
computed in float64 NumPy from the equations in its docstring, reading only the constructor's
arguments (`layer.config`). The jit / no-jit contract tests compare both variants with it, so a
wrong `apply` fails them even when jit and no-jit agree with each other."""

from __future__ import annotations

import itertools

import numpy as np
from _layer_refs import pool_ref, same_pads


def _pads(padding, sizes, kernel, strides, dilation):
    """Per-axis (lo, hi) padding for "VALID", "SAME", an int, per-axis ints or pairs."""
    if padding == "VALID":
        return [(0, 0)] * len(sizes)
    if padding == "SAME":
        return [same_pads(n, (k - 1) * d + 1, s)
                for n, k, s, d in zip(sizes, kernel, strides, dilation, strict=True)]
    if isinstance(padding, int):
        return [(padding, padding)] * len(sizes)
    return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def conv_ref(x, w, b, strides, pads, dilation, groups=1):
    """y[n, o, f] = b[f] + Σ_{u, c} x_pad[n, o·s + u·d, g(f)·C/G + c] w[u, c, f] over any
    number of spatial axes (o, u multi-indices), channels last, G feature groups."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    xp = np.pad(x, [(0, 0), *pads, (0, 0)])
    kernel, cin, f = w.shape[:-2], w.shape[-2], w.shape[-1]
    out = [(n - ((k - 1) * d + 1)) // s + 1
           for n, k, s, d in zip(xp.shape[1:-1], kernel, strides, dilation, strict=True)]
    y = np.zeros((x.shape[0], *out, f))
    per_group = f // groups
    for o in itertools.product(*map(range, out)):
        for u in itertools.product(*map(range, kernel)):
            at = tuple(oi * s + ui * d for oi, ui, s, d in zip(o, u, strides, dilation,
                                                               strict=True))
            for g in range(groups):
                fs = slice(g * per_group, (g + 1) * per_group)
                y[(slice(None), *o, fs)] += xp[(slice(None), *at, slice(g * cin, (g + 1) * cin))] \
                    @ w[(*u, slice(None), fs)]
    return y + (0.0 if b is None else np.asarray(b))


def conv_transpose_ref(x, w, b, strides, crops, dilation, output_padding):
    """full[n, i·s + u·d, f] += x[n, i, c] w[u, c, f], then per axis the rows
    lo ... len(full) - hi + op - 1 (zero rows past the end where that runs over); + b."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    (h, wd), (kh, kw) = x.shape[1:3], w.shape[:2]
    (sh, sw), (dh, dw) = strides, dilation
    full = np.zeros((x.shape[0], (h - 1) * sh + (kh - 1) * dh + 1,
                     (wd - 1) * sw + (kw - 1) * dw + 1, w.shape[-1]))
    for i, j, u, v in itertools.product(range(h), range(wd), range(kh), range(kw)):
        full[:, i * sh + u * dh, j * sw + v * dw] += x[:, i, j] @ w[u, v]
    sizes = [n - lo - hi + op for n, (lo, hi), op in zip(full.shape[1:3], crops, output_padding,
                                                         strict=True)]
    full = np.pad(full, [(0, 0), *((0, max(lo + m - n, 0)) for n, (lo, _), m in
                                   zip(full.shape[1:3], crops, sizes, strict=True)), (0, 0)])
    (top, _), (left, _) = crops
    y = full[:, top:top + sizes[0], left:left + sizes[1]]
    return y + (0.0 if b is None else np.asarray(b))


def _transpose_crops(padding, kernel, strides, dilation):
    """ConvTranspose2D's crops; "SAME": k_eff - s in all, the odd one at the end (negative:
    that many zero rows added at the end)."""
    if padding == "SAME":
        crops = []
        for k, s, d in zip(kernel, strides, dilation, strict=True):
            total = (k - 1) * d + 1 - s
            crops.append((max(total, 0) // 2, total - max(total, 0) // 2))
        return crops
    return _pads(padding, kernel, kernel, strides, dilation)


def batchnorm_ref(params, state, x, train, cfg):
    """Training: batch mean and biased variance normalise, running stats move by momentum
    (variance unbiased); evaluation: running stats, state unchanged."""
    x = np.asarray(x, np.float64)
    gamma = np.asarray(params.get("scale", 1.0))
    beta = np.asarray(params.get("bias", 0.0))
    if not train:
        y = gamma * (x - state["mean"]) / np.sqrt(np.asarray(state["var"]) + cfg["eps"]) + beta
        return y, state
    axes = tuple(range(x.ndim - 1))
    mu, var = x.mean(axes), x.var(axes)
    n = x.size // x.shape[-1]
    m = cfg["momentum"]
    new = {"mean": m * np.asarray(state["mean"]) + (1 - m) * mu,
           "var": m * np.asarray(state["var"]) + (1 - m) * var * n / (n - 1)}
    return gamma * (x - mu) / np.sqrt(var + cfg["eps"]) + beta, new


def dropout_ref(y_got, x, train, rate):
    """Evaluation: x. Training: every entry is 0 or x / (1 - rate); which ones were dropped is
    read from the output under test (the Bernoulli draw is the PRNG's, not an equation), and
    the dropped fraction must be plausible for `rate`."""
    x = np.asarray(x, np.float64)
    if not train:
        return x
    kept = np.asarray(y_got) != 0
    assert abs(1 - kept.mean() - rate) < 0.25, f"dropped {1 - kept.mean():.2f}, rate {rate}"
    return np.where(kept, x / (1 - rate), 0.0)


def _pool(x, cfg, mode):
    """2-D pooling over NHWC, or 1-D over (N, L, C) as (N, 1, L, C)."""
    x = np.asarray(x, np.float64)
    window, strides = tuple(cfg["window"]), tuple(cfg["strides"])
    pads = _pads(cfg["padding"], x.shape[1:-1], window, strides, (1,) * len(window))
    if x.ndim == 3:
        return pool_ref(x[:, None], (1, *window), (1, *strides), [(0, 0), *pads], mode)[:, 0]
    return pool_ref(x, window, strides, pads, mode)


def numpy_apply(layer, params, state, x, train, y_got=None):
    """(y, new state) of `layer` on `x`, from its equations. `y_got` (the output under test) is
    used only by Dropout, to know which entries the PRNG dropped."""
    cfg, kind = layer.config, layer.kind
    x = np.asarray(x, np.float64)
    if kind == "Input":
        return x, state
    if kind == "Dense":
        return x @ np.asarray(params["w"]) + np.asarray(params.get("b", 0.0)), state
    if kind in ("Conv1D", "Conv2D"):
        pads = _pads(cfg["padding"], x.shape[1:-1], cfg["kernel_size"], cfg["strides"],
                     cfg["dilation"])
        return conv_ref(x, params["w"], params.get("b"), cfg["strides"], pads, cfg["dilation"],
                        cfg.get("feature_group_count", 1)), state
    if kind == "ConvTranspose2D":
        crops = _transpose_crops(cfg["padding"], cfg["kernel_size"], cfg["strides"],
                                 cfg["dilation"])
        return conv_transpose_ref(x, params["w"], params.get("b"), cfg["strides"], crops,
                                  cfg["dilation"], cfg["output_padding"]), state
    if kind in ("MaxPool1D", "MaxPool2D"):
        return _pool(x, cfg, "max"), state
    if kind in ("AvgPool1D", "AvgPool2D"):
        return _pool(x, cfg, "avg_all" if cfg["count_include_pad"] else "avg_real"), state
    if kind in ("GlobalAvgPool1D", "GlobalAvgPool2D"):
        return x.mean(axis=tuple(range(1, x.ndim - 1))), state
    if kind == "GlobalMaxPool1D":
        return x.max(axis=1), state
    if kind == "BatchNorm":
        return batchnorm_ref(params, state, x, train, cfg)
    if kind == "Dropout":
        return dropout_ref(y_got, x, train, cfg["rate"]), state
    if kind in ("Flatten", "Reshape"):
        shape = (-1,) if kind == "Flatten" else tuple(cfg["shape"])
        return x.reshape(x.shape[0], *shape), state
    raise NotImplementedError(f"no NumPy reference for {kind}: add one to tests/_numpy_layers.py")
