"""`linear_call`: a linear map with a hand-written transpose that every JAX transformation
supports (jit, vmap, jvp, grad to any order, `jax.checkpoint`, `lax.scan`, `eval_shape`).

A fast hand-written backward pass is usually a `jax.custom_vjp`, which rules out forward-mode
autodiff (`jax.jvp`, `jax.jacfwd`, `jax.hessian`) through it. The layers use `jax.custom_jvp`
instead, whose tangent is a `linear_call`: forward mode evaluates the tangent map, and reverse
mode, which transposes the tangent map, runs the hand-written transpose. JAX's own
`jax.custom_derivatives.linear_call` has no batching rule and cannot be differentiated in its
residuals, so `jax.vmap(jax.grad(f))` and `jax.hessian(f)` fail through it; this one has both:

- batching vmaps `fn` and `transpose` (the transposed map stays hand-written under vmap);
- the derivative in the residuals (second order) is plain autodiff of `fn`, correct if slower.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

_linear_p = Primitive("jnet_linear_call")
_linear_p.multiple_results = True


def linear_call(fn: Callable[[Any, Any], Any], transpose: Callable[[Any, Any], Any],
                residuals: Any, linear: Any) -> Any:
    """``fn(residuals, linear)``, linear in `linear`, with ``transpose(residuals, ct)`` its
    transpose: the cotangent of `linear` (same tree, shapes and dtypes) for the cotangent `ct`
    of the output. Both are pytree functions of JAX arrays; `fn` must also be differentiable
    in `residuals` by ordinary autodiff (used only for second-order derivatives)."""
    res, res_tree = jax.tree.flatten(residuals)
    lin, lin_tree = jax.tree.flatten(linear)
    out_shapes = jax.eval_shape(fn, residuals, linear)
    out_leaves, out_tree = jax.tree.flatten(out_shapes)
    n = len(res)

    def flat_fn(*args):
        return jax.tree.leaves(fn(res_tree.unflatten(args[:n]), lin_tree.unflatten(args[n:])))

    def flat_transpose(*args):
        cts = transpose(res_tree.unflatten(args[:n]), out_tree.unflatten(args[n:]))
        return lin_tree.flatten_up_to(cts)

    outs = _linear_p.bind(*res, *lin, fn=flat_fn, transpose=flat_transpose, num_res=n,
                          out_avals=tuple(map(_aval, out_leaves)),
                          lin_avals=tuple(map(_aval, lin)))
    return jax.tree.unflatten(out_tree, outs)


def _aval(x: Any) -> jax.core.ShapedArray:
    return jax.core.ShapedArray(jnp.shape(x), jnp.result_type(x))


def _impl(*args, fn, **_):
    return fn(*args)


def _abstract_eval(*_, out_avals, **__):
    return list(out_avals)


def _jvp(primals, tangents, *, fn, transpose, num_res, out_avals, lin_avals):
    params = dict(fn=fn, transpose=transpose, num_res=num_res, out_avals=out_avals,
                  lin_avals=lin_avals)
    out = _linear_p.bind(*primals, **params)
    res, lin = primals[:num_res], primals[num_res:]
    t_res, t_lin = tangents[:num_res], tangents[num_res:]
    terms = []
    if any(type(t) is not ad.Zero for t in t_lin):  # linear in `lin`: the map itself
        terms.append(_linear_p.bind(*res, *map(ad.instantiate_zeros, t_lin), **params))
    if any(type(t) is not ad.Zero for t in t_res):  # nonlinear in the residuals: autodiff
        terms.append(jax.jvp(lambda *r: fn(*r, *lin), tuple(res),
                             tuple(map(ad.instantiate_zeros, t_res)))[1])
    return out, [sum(ts[1:], ts[0]) for ts in zip(*terms, strict=True)]


def _transpose(cts, *args, fn, transpose, num_res, out_avals, lin_avals):
    res, lin = args[:num_res], args[num_res:]
    cts = [jnp.zeros(a.shape, a.dtype) if type(ct) is ad.Zero else ct
           for ct, a in zip(cts, out_avals, strict=True)]
    lin_cts = _linear_p.bind(*res, *cts, fn=transpose, transpose=fn, num_res=num_res,
                             out_avals=lin_avals, lin_avals=out_avals)
    return [None] * num_res + [ct if ad.is_undefined_primal(a) else None
                               for a, ct in zip(lin, lin_cts, strict=True)]


def _batch(args, dims, *, fn, transpose, num_res, out_avals, lin_avals):
    size = next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not None)
    moved = [a if d is None else jnp.moveaxis(a, d, 0) for a, d in zip(args, dims, strict=True)]
    res = moved[:num_res]
    # every linear input batched, so that the transposed map's outputs all are too
    lin = [a if d is not None else jnp.broadcast_to(a, (size, *jnp.shape(a)))
           for a, d in zip(moved[num_res:], dims[num_res:], strict=True)]
    res_axes = tuple(None if d is None else 0 for d in dims[:num_res])
    batched = lambda avals: tuple(  # noqa: E731
        jax.core.ShapedArray((size, *a.shape), a.dtype) for a in avals)
    outs = _linear_p.bind(
        *res, *lin, num_res=num_res,
        fn=jax.vmap(fn, in_axes=(*res_axes, *(0,) * len(lin_avals))),
        transpose=jax.vmap(transpose, in_axes=(*res_axes, *(0,) * len(out_avals))),
        out_avals=batched(out_avals), lin_avals=batched(lin_avals))
    return outs, [0] * len(outs)


_linear_p.def_impl(_impl)
_linear_p.def_abstract_eval(_abstract_eval)
ad.primitive_jvps[_linear_p] = _jvp
ad.primitive_transposes[_linear_p] = _transpose
batching.primitive_batchers[_linear_p] = _batch
mlir.register_lowering(_linear_p, mlir.lower_fun(_impl, multiple_results=True))
