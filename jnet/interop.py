"""PyTorch weights into jnet params: converters for `state_dict()` entries.

torch is never imported: pass ``module.state_dict()`` itself (tensors are detached and copied
to the host, also ones that require grad, live on a GPU or are bfloat16) or the state dict as
NumPy arrays (anything `np.asarray` takes). Every function
takes an optional `prefix`, so one call picks a submodule out of a whole model's state dict
(``prefix="encoder.lstm."``). Dtypes are kept: a float64 (``module.double()``) state dict gives
float64 params, a float32 one float32 params; cast with ``jax.tree.map`` to change them. Every
problem (a missing key, a wrong shape or dtype) is a `jnet.ArgumentError` naming the entry
(a `state_dict` that is not a mapping, e.g. the module itself: `jnet.ArgumentTypeError`).

=================  ======================================  ===================================
PyTorch            jnet                                    conversion
=================  ======================================  ===================================
nn.Linear          Dense {"w": (in, out), "b"}             weight.T
nn.Conv2d          Conv2D {"w": (kh, kw, I, O), "b"}       OIHW -> HWIO: transpose(2, 3, 1, 0)
nn.Conv1d          Conv1D {"w": (k, I, O), "b"}            OIW -> WIO: transpose(2, 1, 0)
nn.ConvTranspose2d ConvTranspose2D {"w": (kh, kw, I, O),   IOHW -> HWIO: transpose(2, 3, 0, 1)
                   "b"}
nn.BatchNorm2d     BatchNorm {"scale", "bias"},            weight, bias; running_mean,
                   state {"mean", "var"}                   running_var copied as stored
nn.LSTM            LSTM {"w_ih": (F, 4H), "w_hh": (H, 4H), weight_ih_l0.T, weight_hh_l0.T,
                   "b": (4H,)}                             b = bias_ih_l0 + bias_hh_l0
nn.GRU             GRU {"w_ih": (F, 3H), "w_hh": (H, 3H),  weight_ih_l0.T, weight_hh_l0.T,
                   "b_ih", "b_hh"} (reset_after=True)      both biases kept
nn.LayerNorm       LayerNorm {"scale", "bias"}             weight, bias
nn.Embedding       Embedding {"embedding": (num, F)}       weight
nn.Multihead-      MultiHeadAttention {"w_qkv": (E, 3E),   in_proj_weight.T, in_proj_bias,
Attention          "b_qkv", "w_out": (E, E), "b_out"}      out_proj.weight.T, out_proj.bias
nn.RMSNorm         RMSNorm {"scale"}                       weight
nn.GroupNorm,      GroupNorm / InstanceNorm {"scale",      weight, bias
nn.InstanceNorm2d  "bias"}
nn.Transformer-    TransformerEncoderLayer /               self_attn, linear1, linear2, norm1,
EncoderLayer       TransformerDecoderLayer                 norm2 converted as above
nn.Conv3d          Conv3D {"w": (kd, kh, kw, I, O), "b"}   transpose(2, 3, 4, 1, 0)
depthwise +        SeparableConv2D {"depthwise": (kh, kw,  reshape (C, M, kh, kw) ->
pointwise Conv2d   C, M), "pointwise", "b"}                (kh, kw, C, M); pointwise.T
=================  ======================================  ===================================

Gate orders need no permutation: jnet packs LSTM gates as (i, f, g, o) and GRU gates as
(r, z, n), PyTorch's orders. PyTorch's GRU is the reset-after GRU, so its weights load only into
``GRU(reset_after=True)`` (both biases are kept: b_hn sits inside r ⊙ (·) and cannot be merged).
For ``bidirectional=True`` modules, `direction="backward"` reads the ``*_reverse`` weights and
`bidirectional_from_torch` builds the params of a jnet `Bidirectional` layer.

BatchNorm's running variance: PyTorch stores the *unbiased* batch variance (× n/(n−1)) in
``running_var`` and normalises with it as stored in eval mode. jnet's `BatchNorm` does the same
(``unbiased_running_var=True``, its default), so the statistics copy unchanged and eval outputs
match; continuing training in jnet also updates them the same way. Only with a jnet BatchNorm
built with ``unbiased_running_var=False`` do the stored values mean something else: the running
average then lags PyTorch's by the factor (n−1)/n per update, and eval outputs still match
for the copied values. ``num_batches_tracked`` is not needed (jnet uses a fixed momentum).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax.numpy as jnp
import numpy as np

from jnet.errors import ArgumentError, ArgumentTypeError

F = TypeVar("F", bound=Callable[..., Any])

__all__ = [
    "batchnorm_from_torch",
    "bidirectional_from_torch",
    "conv1d_from_torch",
    "conv2d_from_torch",
    "conv3d_from_torch",
    "conv_transpose2d_from_torch",
    "dense_from_torch",
    "embedding_from_torch",
    "groupnorm_from_torch",
    "gru_from_torch",
    "instancenorm_from_torch",
    "layernorm_from_torch",
    "lstm_from_torch",
    "multihead_attention_from_torch",
    "rmsnorm_from_torch",
    "separable_conv2d_from_torch",
    "transformer_encoder_layer_from_torch",
]


def _converter(fn: F) -> F:
    """Check the ``(state_dict, prefix)`` every converter takes before it reads an entry.

    Raises:
        ArgumentTypeError: `state_dict` is not a mapping (e.g. the module itself), or `prefix`
            is not a string.
    """

    @functools.wraps(fn)
    def checked(state_dict: Any, prefix: Any = "", *args: Any, **kwargs: Any) -> Any:
        _check_state_dict(state_dict, fn.__name__)
        if not isinstance(prefix, str):
            raise ArgumentTypeError(
                f"{fn.__name__}: prefix must be a string such as 'encoder.' (the module's key "
                f"prefix in the state dict), got {type(prefix).__name__} {prefix!r}."
            )
        return fn(state_dict, prefix, *args, **kwargs)

    return checked  # type: ignore[return-value]


def _check_state_dict(state_dict: Any, what: str) -> None:
    if not isinstance(state_dict, Mapping):
        raise ArgumentTypeError(
            f"{what}: state_dict must be a mapping of names to arrays, got "
            f"{type(state_dict).__name__}. Pass `module.state_dict()`, not the module."
        )


def _get(state_dict: Mapping[str, Any], key: str, what: str, optional: bool = False):
    _check_state_dict(state_dict, what)  # also for converters without `_converter`
    if key not in state_dict:
        if optional:
            return None
        near = sorted(k for k in state_dict if k.split(".")[-1] == key.split(".")[-1])
        hint = f" Keys with that name: {near[:5]}; pass the right prefix=." if near else ""
        raise ArgumentError(
            f"{what}: the state dict has no {key!r}.{hint} It has {len(state_dict)} keys, e.g. "
            f"{sorted(state_dict)[:6]}."
        )
    array = _as_numpy(state_dict[key], key, what)
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise ArgumentError(f"{what}: expected floating-point {key!r}, got dtype {array.dtype}. "
                            "Pass the module's state dict as float arrays.")
    return array  # the dtype is kept: a float64 module gives float64 params


def _as_numpy(value: Any, key: str, what: str) -> np.ndarray:
    """A state-dict entry as a NumPy array; torch tensors (detected without importing torch)
    are detached and copied to the host, bfloat16 ones kept bfloat16 (`jnp.bfloat16`).

    Raises:
        ArgumentError: something NumPy cannot read as an array.
    """
    if type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach"):
        try:
            tensor = value.detach().cpu()
            if str(tensor.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: via float32, exact
                return tensor.float().numpy().astype(jnp.bfloat16)
            return tensor.numpy()
        except (RuntimeError, TypeError, NotImplementedError) as e:
            raise ArgumentError(
                f"{what}: cannot read {key!r} ({type(value).__name__} of dtype {value.dtype} on "
                f"{getattr(value, 'device', '?')}) as an array: {e}. Pass "
                "`{k: v.detach().cpu().float().numpy() for k, v in sd.items()}`."
            ) from None
    try:
        return np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ArgumentError(
            f"{what}: cannot read {key!r} ({type(value).__name__}) as an array: {e}. Pass the "
            "state dict's entries as NumPy arrays or torch tensors."
        ) from None


def _check_shape(what: str, name: str, array: np.ndarray, shape: tuple) -> None:
    if array.shape != shape:
        raise ArgumentError(f"{what}: expected {name} of shape {shape}, got {array.shape}.")


def _weight_and_bias(state_dict: Mapping[str, Any], prefix: str, what: str, layout: str,
                     axes: tuple[int, ...], out_axis: int, hint: str = "") -> dict:
    """``{"w": weight transposed by `axes`, "b": bias}`` of a Linear / Conv-like module whose
    weight has the PyTorch `layout` (e.g. ``"(O, I, kh, kw)"``) and whose bias has as many
    entries as the weight's axis `out_axis`; no ``"b"`` for a module built with ``bias=False``."""
    w = _get(state_dict, prefix + "weight", what)
    if w.ndim != len(axes):
        raise ArgumentError(f"{what}: expected a {len(axes)}-D {layout} weight, got "
                            f"{w.shape}.{hint}")
    params = {"w": np.ascontiguousarray(w.transpose(axes))}
    b = _get(state_dict, prefix + "bias", what, optional=True)
    if b is not None:
        _check_shape(what, "bias", b, (w.shape[out_axis],))
        params["b"] = b
    return params


@_converter
def dense_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.Linear`` -> `Dense` params: ``{"w": weight.T, "b": bias}``.

    A Linear built with ``bias=False`` gives ``{"w"}`` only: use ``Dense(..., use_bias=False)``.
    """
    return _weight_and_bias(state_dict, prefix, "dense_from_torch", "(out, in)", (1, 0), 0)


@_converter
def conv2d_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.Conv2d`` -> `Conv2D` params: OIHW weight to HWIO, ``{"w": (kh, kw, I, O), "b"}``.

    Both compute cross-correlation, so no kernel flip. Strides, padding and dilation are
    constructor arguments on both sides (PyTorch's ``padding=p`` is jnet's ``padding=p``);
    inputs go from NCHW to NHWC with ``x.transpose(0, 2, 3, 1)``. Grouped convolutions
    (``groups=G``, weight (O, I / G, kh, kw)) convert the same way into
    ``Conv2D(..., feature_group_count=G)``.
    """
    return _weight_and_bias(state_dict, prefix, "conv2d_from_torch", "OIHW", (2, 3, 1, 0), 0)


@_converter
def batchnorm_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> tuple[dict, dict]:
    """``nn.BatchNorm2d`` (or 1d) -> `BatchNorm` ``(params, state)``.

    params ``{"scale": weight, "bias": bias}`` (absent with ``affine=False``: build
    ``BatchNorm(scale=False, center=False)``), state ``{"mean": running_mean, "var":
    running_var}``, copied as stored (see the module docstring on the unbiased variance).
    Momentum: PyTorch's ``momentum=0.1`` is jnet's ``BatchNorm(momentum=0.9)``; eps matches.
    """
    what = "batchnorm_from_torch"
    mean = _get(state_dict, prefix + "running_mean", what)
    var = _get(state_dict, prefix + "running_var", what)
    _check_shape(what, "running_var", var, mean.shape)
    params = {}
    for torch_name, jnet_name in (("weight", "scale"), ("bias", "bias")):
        value = _get(state_dict, prefix + torch_name, what, optional=True)
        if value is not None:
            _check_shape(what, torch_name, value, mean.shape)
            params[jnet_name] = value
    return params, {"mean": mean, "var": var}


def _rnn_weights(state_dict, prefix, layer, direction, gates, what):
    if direction not in ("forward", "backward"):
        raise ArgumentError(
            f"{what}: direction must be 'forward' or 'backward', got {direction!r}.")
    suffix = f"_l{layer}" + ("_reverse" if direction == "backward" else "")
    if prefix + "weight_hr" + suffix in state_dict:
        raise ArgumentError(
            f"{what}: the module has a projection (proj_size > 0, 'weight_hr{suffix}'), "
            "which jnet's LSTM does not implement."
        )
    w_ih = _get(state_dict, f"{prefix}weight_ih{suffix}", what)
    w_hh = _get(state_dict, f"{prefix}weight_hh{suffix}", what)
    hidden = w_hh.shape[-1]
    _check_shape(what, "weight_hh" + suffix, w_hh, (gates * hidden, hidden))
    _check_shape(what, "weight_ih" + suffix, w_ih, (gates * hidden, w_ih.shape[-1]))
    zeros = np.zeros(gates * hidden, w_ih.dtype)  # bias=False modules have no biases
    b_ih = _get(state_dict, f"{prefix}bias_ih{suffix}", what, optional=True)
    b_hh = _get(state_dict, f"{prefix}bias_hh{suffix}", what, optional=True)
    return (w_ih.T.copy(), w_hh.T.copy(), zeros if b_ih is None else b_ih,
            zeros if b_hh is None else b_hh)


@_converter
def lstm_from_torch(state_dict: Mapping[str, Any], prefix: str = "", layer: int = 0,
                    direction: str = "forward") -> dict:
    """``nn.LSTM`` layer `layer` -> `LSTM` params ``{"w_ih", "w_hh", "b"}``.

    ``w_ih = weight_ih_l{layer}.T`` (F, 4H), ``w_hh = weight_hh_l{layer}.T`` (H, 4H),
    ``b = bias_ih_l{layer} + bias_hh_l{layer}`` (the two biases only ever appear summed).
    Gate order (i, f, g, o) on both sides. A stacked ``num_layers=k`` module is k jnet LSTMs
    with ``return_sequences=True`` (all but the last), one call per layer. PyTorch's
    ``batch_first=True`` matches jnet's (N, T, F).
    """
    w_ih, w_hh, b_ih, b_hh = _rnn_weights(state_dict, prefix, layer, direction, 4,
                                          "lstm_from_torch")
    return {"w_ih": w_ih, "w_hh": w_hh, "b": b_ih + b_hh}


@_converter
def gru_from_torch(state_dict: Mapping[str, Any], prefix: str = "", layer: int = 0,
                   direction: str = "forward") -> dict:
    """``nn.GRU`` layer `layer` -> `GRU(reset_after=True)` params
    ``{"w_ih": (F, 3H), "w_hh": (H, 3H), "b_ih": (3H,), "b_hh": (3H,)}``, gates (r, z, n)."""
    w_ih, w_hh, b_ih, b_hh = _rnn_weights(state_dict, prefix, layer, direction, 3,
                                          "gru_from_torch")
    return {"w_ih": w_ih, "w_hh": w_hh, "b_ih": b_ih, "b_hh": b_hh}


def bidirectional_from_torch(state_dict: Mapping[str, Any], kind: str, prefix: str = "",
                             layer: int = 0) -> dict:
    """A ``bidirectional=True`` ``nn.LSTM`` / ``nn.GRU`` layer -> `Bidirectional` params
    ``{"forward": ..., "backward": ...}``; `kind` is ``"LSTM"`` or ``"GRU"``."""
    convert = {"LSTM": lstm_from_torch, "GRU": gru_from_torch}.get(kind)
    if convert is None:
        raise ArgumentError(
            f"bidirectional_from_torch: kind must be 'LSTM' or 'GRU', got {kind!r}.")
    return {d: convert(state_dict, prefix, layer, d) for d in ("forward", "backward")}


@_converter
def conv1d_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.Conv1d`` -> `Conv1D` params: (O, I, k) weight to WIO, ``{"w": (k, I, O), "b"}``.

    As `conv2d_from_torch` with one spatial axis: no kernel flip, the constructor arguments
    carry over (``groups=G`` is ``feature_group_count=G``), inputs go from (N, C, L) to
    (N, L, C) with ``x.transpose(0, 2, 1)``.

    Args:
        state_dict: the module's (or a model's) ``state_dict()`` as arrays.
        prefix: the module's key prefix inside a model's state dict, e.g. ``"features.0."``.

    Returns:
        The params dict, NumPy arrays in the state dict's dtype (no ``"b"`` for ``bias=False``).

    Raises:
        ArgumentError: no ``weight`` under `prefix`; a weight that is not 3-D, or a bias not of its
            O entries.
    """
    return _weight_and_bias(state_dict, prefix, "conv1d_from_torch", "(O, I, k)", (2, 1, 0), 0,
                            " Pass an nn.Conv1d's state dict (for nn.Conv2d use "
                            "conv2d_from_torch).")


@_converter
def conv_transpose2d_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.ConvTranspose2d`` -> `ConvTranspose2D` params: ``{"w": (kh, kw, I, O), "b"}``.

    PyTorch stores a transposed convolution's weight input channels first, (I, O, kh, kw):
    ``w = weight.transpose(2, 3, 0, 1)``, no flip. ``ConvTranspose2d(I, O, k, stride=s,
    padding=p, output_padding=op, dilation=d)`` is ``ConvTranspose2D(O, k, s, padding=p,
    output_padding=op, dilation=d)`` (see `ConvTranspose2D` for how "SAME" maps).
    ``groups > 1`` has no jnet counterpart: a grouped module's weight is (I, O / G, kh, kw),
    and its bias (O entries) gives it away (an `ArgumentError`); without a bias the params
    hold O / G filters and do not fit ``ConvTranspose2D(O, ...)``.

    Args:
        state_dict: the module's (or a model's) ``state_dict()`` as arrays.
        prefix: the module's key prefix inside a model's state dict, e.g. ``"decoder.up1."``.

    Returns:
        The params dict, NumPy arrays in the state dict's dtype (no ``"b"`` for ``bias=False``).

    Raises:
        ArgumentError: no ``weight`` under `prefix`; a weight that is not 4-D, or a bias not of its
            O entries.
    """
    what = "conv_transpose2d_from_torch"
    w = _get(state_dict, prefix + "weight", what)
    b = _get(state_dict, prefix + "bias", what, optional=True)
    if w.ndim == 4 and b is not None and b.ndim == 1 and b.shape[0] != w.shape[1] \
            and b.shape[0] % w.shape[1] == 0:
        raise ArgumentError(
            f"{what}: the weight {w.shape} has {w.shape[1]} output channels per group but the "
            f"bias {b.shape[0]}: a grouped ConvTranspose2d (groups={b.shape[0] // w.shape[1]}), "
            "which jnet's ConvTranspose2D does not implement. Use groups=1, or split the "
            "module into one ConvTranspose2D per group."
        )
    return _weight_and_bias(state_dict, prefix, what, "(I, O, kh, kw)", (2, 3, 0, 1), 1,
                            " Pass an nn.ConvTranspose2d's state dict.")


# ----------------------------------------------------------------------------------------
# Sequence layers: LayerNorm, Embedding, MultiheadAttention.


@_converter
def layernorm_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.LayerNorm(C)`` -> `LayerNorm` params ``{"scale": weight (C,), "bias": bias (C,)}``.

    eps (1e-5) and the biased variance match. A module built with ``bias=False`` gives
    ``{"scale"}``: use ``LayerNorm(center=False)``. One with ``elementwise_affine=False`` has an
    empty state dict and needs no conversion: ``LayerNorm(scale=False, center=False)``, params
    ``{}``. jnet normalises the last axis only, so ``normalized_shape`` must be one int.

    Args:
        state_dict: the module's (or a model's) ``state_dict()`` as arrays.
        prefix: the module's key prefix inside a model's state dict, e.g. ``"encoder.norm1."``.

    Returns:
        The params dict, NumPy arrays in the state dict's dtype.

    Raises:
        ArgumentError: no ``weight`` under `prefix`; a weight or bias that is not one vector of C
            values.
    """
    what = "layernorm_from_torch"
    weight = _get(state_dict, prefix + "weight", what)
    if weight.ndim != 1:
        raise ArgumentError(
            f"{what}: expected a 1-D weight (C,) (LayerNorm over the last axis), got "
            f"{weight.shape}. jnet's LayerNorm normalises the last axis only: build the "
            "PyTorch module with normalized_shape=C."
        )
    params = {"scale": weight}
    bias = _get(state_dict, prefix + "bias", what, optional=True)
    if bias is not None:
        _check_shape(what, "bias", bias, weight.shape)
        params["bias"] = bias
    return params


@_converter
def embedding_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.Embedding(num_embeddings, features)`` -> `Embedding` params
    ``{"embedding": weight (num_embeddings, features)}``, copied as stored.

    PyTorch's ``padding_idx`` keeps that row's gradient at zero; jnet has no such row (padding
    is said with ``mask=``), so the row is copied like any other and trains if used.

    Args:
        state_dict: the module's (or a model's) ``state_dict()`` as arrays.
        prefix: the module's key prefix inside a model's state dict, e.g. ``"embed."``.

    Returns:
        The params dict, a NumPy array in the state dict's dtype.

    Raises:
        ArgumentError: no ``weight`` under `prefix`; a weight that is not 2-D.
    """
    weight = _get(state_dict, prefix + "weight", "embedding_from_torch")
    if weight.ndim != 2:
        raise ArgumentError(
            f"embedding_from_torch: expected a 2-D weight (num_embeddings, features), got "
            f"{weight.shape}."
        )
    return {"embedding": weight}


@_converter
def multihead_attention_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.MultiheadAttention(E, num_heads, batch_first=True)`` -> `MultiHeadAttention` params.

    ``{"w_qkv": in_proj_weight.T (E, 3E), "b_qkv": in_proj_bias (3E,), "w_out":
    out_proj.weight.T (E, E), "b_out": out_proj.bias (E,)}``. Both sides pack the fused
    projection as (q | k | v) with heads contiguous inside each, so no permutation is needed.
    The state dict does not hold the number of heads: build ``MultiHeadAttention(num_heads)``
    with the module's. ``bias=False`` gives no ``b_qkv`` / ``b_out``: use
    ``MultiHeadAttention(num_heads, use_bias=False)``. jnet's layer is self-attention
    (query = key = value = x): call the PyTorch module as ``mha(x, x, x,
    key_padding_mask=~mask)``; jnet's ``mask`` is True on real steps, PyTorch's
    ``key_padding_mask`` True on padded ones.

    Args:
        state_dict: the module's (or a model's) ``state_dict()`` as arrays.
        prefix: the module's key prefix inside a model's state dict, e.g. ``"layers.0.attn."``.

    Returns:
        The params dict, NumPy arrays in the state dict's dtype.

    Raises:
        ArgumentError: no ``in_proj_weight`` / ``out_proj.weight`` under `prefix`; separate q/k/v
            projections (``kdim`` / ``vdim`` != E), ``add_bias_kv=True``,
            or shapes that do not fit one embedding size E.
    """
    what = "multihead_attention_from_torch"
    for key, why in (("q_proj_weight", "separate q/k/v projections (kdim or vdim != embed_dim)"),
                     ("bias_k", "add_bias_kv=True")):
        if prefix + key in state_dict:
            raise ArgumentError(
                f"{what}: the module has {why} ({key!r}), which jnet's self-attention "
                "MultiHeadAttention does not implement. Build it with kdim = vdim = embed_dim "
                "and add_bias_kv=False."
            )
    w_in = _get(state_dict, prefix + "in_proj_weight", what)
    e = w_in.shape[-1]
    _check_shape(what, "in_proj_weight", w_in, (3 * e, e))
    w_out = _get(state_dict, prefix + "out_proj.weight", what)
    _check_shape(what, "out_proj.weight", w_out, (e, e))
    params = {"w_qkv": w_in.T.copy(), "w_out": w_out.T.copy()}
    b_in = _get(state_dict, prefix + "in_proj_bias", what, optional=True)
    b_out = _get(state_dict, prefix + "out_proj.bias", what, optional=True)
    if (b_in is None) != (b_out is None):
        raise ArgumentError(
            f"{what}: expected both in_proj_bias and out_proj.bias (bias=True) or neither "
            f"(bias=False), got only {'in_proj_bias' if b_out is None else 'out_proj.bias'}."
        )
    if b_in is not None:
        _check_shape(what, "in_proj_bias", b_in, (3 * e,))
        _check_shape(what, "out_proj.bias", b_out, (e,))
        params.update(b_qkv=b_in, b_out=b_out)
    return params


# ----------------------------------------------------------------------------------------
# Transformer-era blocks: RMSNorm, GroupNorm, InstanceNorm, grouped attention, encoder layers,
# separable convolutions, Conv3d.


def _affine(state_dict: Mapping[str, Any], prefix: str, what: str, bias: bool) -> dict:
    """``{"scale": weight (C,), "bias": bias (C,)}`` of a normalisation module (the bias only
    when `bias` and present)."""
    weight = _get(state_dict, prefix + "weight", what)
    if weight.ndim != 1:
        raise ArgumentError(f"{what}: expected a 1-D weight (C,), got {weight.shape}. jnet "
                            "normalises with one scale per channel / feature.")
    params = {"scale": weight}
    b = _get(state_dict, prefix + "bias", what, optional=True) if bias else None
    if b is not None:
        _check_shape(what, "bias", b, weight.shape)
        params["bias"] = b
    return params


def rmsnorm_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.RMSNorm(C, eps=eps)`` -> `RMSNorm(eps)` params ``{"scale": weight (C,)}``.

    Pass eps explicitly on both sides: PyTorch's default ``eps=None`` is the dtype's machine
    epsilon, jnet's default 1e-6. ``elementwise_affine=False`` has nothing to convert:
    ``RMSNorm(scale=False)``.

    Raises:
        ArgumentError: no ``weight`` under `prefix`, or a weight that is not one vector.
    """
    return _affine(state_dict, prefix, "rmsnorm_from_torch", bias=False)


def groupnorm_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.GroupNorm(G, C)`` -> `GroupNorm(G)` params ``{"scale": weight, "bias": bias}``.

    The grouping of channels agrees (consecutive blocks of C / G), so no permutation; inputs
    go from NCHW to NHWC. ``affine=False`` has nothing to convert:
    ``GroupNorm(G, scale=False, center=False)``.

    Raises:
        ArgumentError: no ``weight`` under `prefix`, or weight / bias not one vector of C.
    """
    return _affine(state_dict, prefix, "groupnorm_from_torch", bias=True)


def instancenorm_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.InstanceNorm2d(C, affine=True)`` (or 1d / 3d) -> `InstanceNorm` params
    ``{"scale": weight, "bias": bias}``.

    Raises:
        ArgumentError: running statistics in the state dict (``track_running_stats=True``,
            which jnet's InstanceNorm does not keep), no ``weight`` (``affine=False`` needs
            no conversion: ``InstanceNorm(scale=False, center=False)``), or bad shapes.
    """
    what = "instancenorm_from_torch"
    if prefix + "running_mean" in state_dict:
        raise ArgumentError(
            f"{what}: the module keeps running statistics (track_running_stats=True); jnet's "
            "InstanceNorm always normalises with each example's own statistics. Build the "
            "PyTorch module with track_running_stats=False, or use BatchNorm semantics.")
    return _affine(state_dict, prefix, what, bias=True)


def transformer_encoder_layer_from_torch(state_dict: Mapping[str, Any],
                                         prefix: str = "") -> dict:
    """``nn.TransformerEncoderLayer(E, H, F, batch_first=True)`` -> `TransformerEncoderLayer`
    params (and `TransformerDecoderLayer`'s, for a PyTorch encoder layer run with a causal
    mask).

    ``{"self_attn": multihead_attention_from_torch(prefix + "self_attn."), "linear1":
    dense_from_torch(prefix + "linear1."), "linear2": ..., "norm1":
    layernorm_from_torch(prefix + "norm1."), "norm2": ...}``. Build the jnet block with the
    module's ``num_heads``, ``dim_feedforward``, ``activation``, ``norm_first`` and
    ``layer_norm_eps`` (the state dict holds none of them). For a stack
    (``nn.TransformerEncoder``) call it once per layer with ``prefix="layers.{i}."``.

    Raises:
        ArgumentError: a missing or misshapen entry (named), or a feed-forward network that
            does not fit E.
    """
    what = "transformer_encoder_layer_from_torch"
    params = {"self_attn": multihead_attention_from_torch(state_dict, prefix + "self_attn."),
              "linear1": dense_from_torch(state_dict, prefix + "linear1."),
              "linear2": dense_from_torch(state_dict, prefix + "linear2."),
              "norm1": layernorm_from_torch(state_dict, prefix + "norm1."),
              "norm2": layernorm_from_torch(state_dict, prefix + "norm2.")}
    e = params["self_attn"]["w_out"].shape[0]
    f = params["linear1"]["w"].shape[1]
    _check_shape(what, "linear1.weight.T", params["linear1"]["w"], (e, f))
    _check_shape(what, "linear2.weight.T", params["linear2"]["w"], (f, e))
    return params


def conv3d_from_torch(state_dict: Mapping[str, Any], prefix: str = "") -> dict:
    """``nn.Conv3d`` -> `Conv3D` params: (O, I, kd, kh, kw) weight to DHWIO,
    ``{"w": (kd, kh, kw, I, O), "b"}``; no kernel flip, inputs (N, C, D, H, W) ->
    (N, D, H, W, C) with ``x.permute(0, 2, 3, 4, 1)``, ``groups=G`` is
    ``feature_group_count=G``.

    Raises:
        ArgumentError: no ``weight`` under `prefix`, a weight that is not 5-D, or a bias not
            of its O entries.
    """
    return _weight_and_bias(state_dict, prefix, "conv3d_from_torch", "(O, I, kd, kh, kw)",
                            (2, 3, 4, 1, 0), 0)


def separable_conv2d_from_torch(state_dict: Mapping[str, Any], depth_multiplier: int = 1,
                                depthwise: str = "depthwise.",
                                pointwise: str = "pointwise.") -> dict:
    """A depthwise ``nn.Conv2d(C, C·M, k, groups=C)`` followed by a pointwise
    ``nn.Conv2d(C·M, F, 1)`` -> `SeparableConv2D(F, k, depth_multiplier=M)` params
    ``{"depthwise": (kh, kw, C, M), "pointwise": (1, 1, C·M, F), "b": (F,)}``.

    PyTorch's depthwise output channel c·M + m reads input channel c, as jnet's (and
    Keras's) depthwise kernel ``[:, :, c, m]``. A depthwise bias b_d, which Keras's layer does
    not have, passes linearly through the pointwise step and is folded into the bias:
    ``b = b_p + b_d @ W_p``.

    Args:
        state_dict: the model's ``state_dict()`` as arrays.
        depth_multiplier: M (the state dict does not say how C·M splits).
        depthwise, pointwise: the two modules' key prefixes (default ``"depthwise."``,
            ``"pointwise."``; e.g. ``"block.0."`` and ``"block.1."`` in a Sequential).

    Returns:
        The params dict (no ``"b"`` when neither convolution has a bias).

    Raises:
        ArgumentError: missing weights, or shapes that are not a depthwise / 1 x 1 pair
            with C·M divisible by M.
    """
    what = "separable_conv2d_from_torch"
    dw = _get(state_dict, depthwise + "weight", what)
    pw = _get(state_dict, pointwise + "weight", what)
    m = depth_multiplier
    if dw.ndim != 4 or dw.shape[1] != 1 or dw.shape[0] % m or pw.ndim != 4 \
            or pw.shape[1:] != (dw.shape[0], 1, 1):
        raise ArgumentError(
            f"{what}: expected a depthwise weight (C·M, 1, kh, kw) with M = "
            f"depth_multiplier = {m} dividing C·M, and a pointwise weight (F, C·M, 1, 1), got "
            f"{dw.shape} and {pw.shape}.")
    cm, kh, kw = dw.shape[0], dw.shape[2], dw.shape[3]
    w_p = pw[:, :, 0, 0].T  # (C·M, F)
    params = {"depthwise": np.ascontiguousarray(
                  dw.reshape(cm // m, m, kh, kw).transpose(2, 3, 0, 1)),
              "pointwise": np.ascontiguousarray(w_p[None, None])}
    b_d = _get(state_dict, depthwise + "bias", what, optional=True)
    b_p = _get(state_dict, pointwise + "bias", what, optional=True)
    if b_d is not None or b_p is not None:
        params["b"] = (np.zeros(pw.shape[0], pw.dtype) if b_p is None else b_p) + (
            0.0 if b_d is None else b_d @ w_p)
    return params
