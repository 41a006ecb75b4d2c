"""What every converter shares: the `(state_dict, prefix)` check, reading an entry as a NumPy
array, shape checks, and the weight / bias transpose of the linear and convolution modules."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import jax.numpy as jnp
import numpy as np

from jnet.errors import ArgumentError, ArgumentTypeError

F = TypeVar("F", bound=Callable[..., Any])


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
        near = sorted(str(k) for k in state_dict
                      if str(k).split(".")[-1] == key.split(".")[-1])
        hint = f" Keys with that name: {near[:5]}; pass the right prefix=." if near else ""
        raise ArgumentError(
            f"{what}: the state dict has no {key!r}.{hint} It has {len(state_dict)} keys, e.g. "
            f"{sorted(map(str, state_dict))[:6]}."
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


def _affine(state_dict: Mapping[str, Any], prefix: str, what: str, bias: bool = True,
            axis_note: str = "",
            fix: str = "jnet normalises with one scale per channel / feature.") -> dict:
    """``{"scale": weight (C,), "bias": bias (C,)}`` of a normalisation module (LayerNorm,
    RMSNorm, GroupNorm, InstanceNorm); the bias only when `bias` and present.

    Raises:
        ArgumentError: no ``weight`` under `prefix`; a weight that is not 1-D (the message
            adds `axis_note` after "(C,)" and ends with `fix`), or a bias not of its shape.
    """
    weight = _get(state_dict, prefix + "weight", what)
    if weight.ndim != 1:
        raise ArgumentError(f"{what}: expected a 1-D weight (C,){axis_note}, got "
                            f"{weight.shape}. {fix}")
    params = {"scale": weight}
    b = _get(state_dict, prefix + "bias", what, optional=True) if bias else None
    if b is not None:
        _check_shape(what, "bias", b, weight.shape)
        params["bias"] = b
    return params
