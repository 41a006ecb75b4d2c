"""Floors: the benchmark's models and optimizer rules written directly with `jax.numpy` / `lax`,
as a JAX expert would (no jnet import). Params are lists of dicts of arrays, in the order of the
jnet model's children, so jnet's initial weights convert by listing them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

Step = Callable[[Any, Any, jax.Array], tuple[Any, jax.Array]]



def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def dense(p, x):
    return x @ p["w"] + p["b"]


def conv(p, x):
    y = lax.conv_general_dilated(x, p["w"], (1, 1), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["b"]


def max_pool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def batch_norm(p, s, x, momentum=0.9, eps=1e-5):
    """Training-mode batch norm; running var stores the unbiased variance (as jnet, PyTorch)."""
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
    n = x.size // x.shape[-1]
    s = lax.stop_gradient({"mean": momentum * s["mean"] + (1 - momentum) * mean,
                           "var": momentum * s["var"] + (1 - momentum) * var * n / (n - 1)})
    return (x - mean) * lax.rsqrt(var + eps) * p["scale"] + p["bias"], s


def floor_mlp(params, state, x, key, dtype=jnp.float32):
    h = x.astype(dtype)
    for p in params[:-1]:
        h = jax.nn.relu(dense(_cast(p, dtype), h))
    return dense(_cast(params[-1], dtype), h).astype(jnp.float32), state


def floor_cnn(params, state, x, key, dtype=jnp.float32):
    c1, c2, d1, d2 = (_cast(p, dtype) for p in params)
    h = max_pool(jax.nn.relu(conv(c1, x.astype(dtype))))
    h = max_pool(jax.nn.relu(conv(c2, h)))
    h = jax.nn.relu(dense(d1, h.reshape(h.shape[0], -1)))
    return dense(d2, h).astype(jnp.float32), state


def cnn_bn_dropout(dropout_key_index: int, n_keys: int):
    """CNN + BatchNorm + Dropout(0.5). The dropout key is the one jnet's `serial` hands its
    Dropout child (split of the step key, by position), so both draw the same mask."""

    def floor(params, state, x, key):
        c1, b1, c2, b2, d1, d2 = params
        h, s1 = batch_norm(b1, state[0], conv(c1, x))
        h = max_pool(jax.nn.relu(h))
        h, s2 = batch_norm(b2, state[1], conv(c2, h))
        h = max_pool(jax.nn.relu(h))
        h = jax.nn.relu(dense(d1, h.reshape(h.shape[0], -1)))
        keep = jax.random.bernoulli(jax.random.split(key, n_keys)[dropout_key_index], 0.5,
                                    h.shape)
        h = jnp.where(keep, h / 0.5, 0.0)
        return dense(d2, h), [s1, s2]

    return floor


def lstm_cell(p, carry, xp):
    h, c = carry
    i, f, g, o = jnp.split(xp + h @ p["w_hh"], 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def gru_cell(p, h, xp):
    r_x, z_x, n_x = jnp.split(xp, 3, axis=-1)
    r_h, z_h, n_h = jnp.split(h @ p["w_hh"] + p["b_hh"], 3, axis=-1)
    r, z = jax.nn.sigmoid(r_x + r_h), jax.nn.sigmoid(z_x + z_h)
    n = jnp.tanh(n_x + r * n_h)
    return (1.0 - z) * n + z * h


def recurrent(cell: str):
    """Recurrent layer + Dense head; the input projection of all steps is one matmul."""

    def floor(params, state, x, key):
        rnn, head = params
        bias = rnn["b"] if cell == "lstm" else rnn["b_ih"]
        xp = jnp.swapaxes(x, 0, 1) @ rnn["w_ih"] + bias  # (T, N, gates*H)
        h0 = jnp.zeros((x.shape[0], rnn["w_hh"].shape[0]), x.dtype)
        if cell == "lstm":
            (h, _), _ = lax.scan(lambda c, xt: (lstm_cell(rnn, c, xt), None), (h0, h0), xp)
        else:
            h, _ = lax.scan(lambda c, xt: (gru_cell(rnn, c, xt), None), h0, xp)
        return dense(head, h), state

    return floor


def _cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype), tree)


# Optimizer rules, written from their equations with jnet's hyperparameters (see OPTIMIZERS).
# Each is (init(params) -> state, update(grads, state, params) -> (params, state)).


def _tmap(f, *trees):
    return jax.tree.map(f, *trees)


def floor_sgd(lr):
    return (lambda params: None,
            lambda g, s, p: (_tmap(lambda p, g: p - lr * g, p, g), None))


def floor_momentum(lr, gamma, nesterov=False):
    def update(g, v, p):
        v = _tmap(lambda v, g: gamma * v + lr * g, v, g)
        if nesterov:  # look-ahead form: φ_t = φ_{t-1} - α g_t - γ V_t
            return _tmap(lambda p, g, v: p - lr * g - gamma * v, p, g, v), v
        return _tmap(lambda p, v: p - v, p, v), v

    return (lambda params: _tmap(jnp.zeros_like, params), update)


def floor_adagrad(lr, eps, initial):
    def update(g, s, p):
        s = _tmap(lambda s, g: s + g * g, s, g)
        return _tmap(lambda p, g, s: p - lr * g / (jnp.sqrt(s) + eps), p, g, s), s

    return (lambda params: _tmap(lambda a: jnp.full_like(a, initial), params), update)


def floor_adadelta(rho, eps):
    def update(g, s, p):
        eg, ed = s
        eg = _tmap(lambda e, g: rho * e + (1 - rho) * g * g, eg, g)
        d = _tmap(lambda e2, e1, g: -jnp.sqrt(e2 + eps) / jnp.sqrt(e1 + eps) * g, ed, eg, g)
        ed = _tmap(lambda e, d: rho * e + (1 - rho) * d * d, ed, d)
        return _tmap(jnp.add, p, d), (eg, ed)

    return (lambda params: (_tmap(jnp.zeros_like, params), _tmap(jnp.zeros_like, params)),
            update)


def floor_rmsprop(lr, rho, eps):
    def update(g, v, p):
        v = _tmap(lambda v, g: rho * v + (1 - rho) * g * g, v, g)
        return _tmap(lambda p, g, v: p - lr * g / (jnp.sqrt(v) + eps), p, g, v), v

    return (lambda params: _tmap(jnp.zeros_like, params), update)


def floor_adam(lr, b1=0.9, b2=0.999, eps=1e-8):
    def update(g, s, p):
        m, v, t = s
        t = t + 1
        m = _tmap(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = _tmap(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        c1, c2 = 1 - b1 ** t, 1 - b2 ** t
        p = _tmap(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), p, m, v)
        return p, (m, v, t)

    return (lambda params: (_tmap(jnp.zeros_like, params), _tmap(jnp.zeros_like, params),
                            jnp.zeros((), jnp.int32)), update)


def floor_adamw(lr, wd, b1=0.9, b2=0.999, eps=1e-8):
    init, adam_update = floor_adam(lr, b1, b2, eps)

    def update(g, s, p):  # decoupled decay: the Adam step plus lr * wd * p_{t-1}
        new_p, s = adam_update(g, s, p)
        return _tmap(lambda q, p: q - lr * wd * p, new_p, p), s

    return init, update


def floor_nadam(lr, b1=0.9, b2=0.999, eps=1e-8, psi=4e-3):
    def update(g, s, p):
        m, v, prod, t = s
        t = t + 1
        mu_t = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod = prod * mu_t
        m = _tmap(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = _tmap(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        c2 = 1 - b2 ** t
        p = _tmap(lambda p, g, m, v: p - lr * ((1 - mu_t) / (1 - prod) * g
                                               + mu_next / (1 - prod * mu_next) * m)
                  / (jnp.sqrt(v / c2) + eps), p, g, m, v)
        return p, (m, v, prod, t)

    return (lambda params: (_tmap(jnp.zeros_like, params), _tmap(jnp.zeros_like, params),
                            jnp.ones(()), jnp.zeros(())), update)


def floor_adamax(lr, b1=0.9, b2=0.999, eps=1e-8):
    def update(g, s, p):
        m, u, t = s
        t = t + 1
        m = _tmap(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        u = _tmap(lambda u, g: jnp.maximum(b2 * u, jnp.abs(g)), u, g)
        return _tmap(lambda p, m, u: p - lr * m / ((1 - b1 ** t) * (u + eps)), p, m, u), (m, u, t)

    return (lambda params: (_tmap(jnp.zeros_like, params), _tmap(jnp.zeros_like, params),
                            jnp.zeros((), jnp.int32)), update)


def floor_lion(lr, b1=0.9, b2=0.99):
    def update(g, m, p):
        p = _tmap(lambda p, m, g: p - lr * jnp.sign(b1 * m + (1 - b1) * g), p, m, g)
        return p, _tmap(lambda m, g: b2 * m + (1 - b2) * g, m, g)

    return (lambda params: _tmap(jnp.zeros_like, params), update)


def _moments(b1, b2, m, v, g):
    m = _tmap(lambda m, g: b1 * m + (1 - b1) * g, m, g)
    return m, _tmap(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)


def _adam_init(params):
    return (_tmap(jnp.zeros_like, params), _tmap(jnp.zeros_like, params), jnp.zeros(()))


def _adam_advance(b1, b2, s, g):
    """Adam's moments and step count one update on, and the bias corrections 1 - β^t."""
    m, v, t = s
    t = t + 1
    m, v = _moments(b1, b2, m, v, g)
    return m, v, t, 1 - b1 ** t, 1 - b2 ** t


def floor_radam(lr, b1=0.9, b2=0.999, eps=1e-8):
    def update(g, s, p):
        m, v, t, c1, c2 = _adam_advance(b1, b2, s, g)
        rho_inf = 2 / (1 - b2) - 1
        rho = rho_inf - 2 * t * b2 ** t / c2
        r = jnp.sqrt(jnp.maximum(rho - 4, 0) * (rho - 2) * rho_inf
                     / ((rho_inf - 4) * (rho_inf - 2) * rho))
        def step(p, m, v):
            adaptive = r * jnp.sqrt(c2) / (jnp.sqrt(v) + eps)
            return p - lr * jnp.where(rho > 5, adaptive, 1.0) * m / c1

        p = _tmap(step, p, m, v)
        return p, (m, v, t)

    return _adam_init, update


def _rms(x):
    return jnp.sqrt(jnp.mean(x * x))


def floor_adafactor(lr, decay=-0.8, eps2=1e-3, d=1.0):
    """Factored second moment of each (m, n) matrix (the workload's arrays are all 2-D)."""
    eps1 = float(jnp.finfo(jnp.float32).eps)

    def init(params):
        return ([jnp.zeros((x.shape[0], 1)) for x in params],
                [jnp.zeros((1, x.shape[1])) for x in params], jnp.zeros(()))

    def update(g, s, p):
        rows, cols, t = s
        t = t + 1
        w = t ** decay
        out, new_rows, new_cols = [], [], []
        for gi, ri, ci, pi in zip(g, rows, cols, p, strict=True):
            ri = ri + w * (jnp.mean(gi * gi, axis=1, keepdims=True) - ri)
            ci = ci + w * (jnp.mean(gi * gi, axis=0, keepdims=True) - ci)
            u = gi * lax.rsqrt(jnp.maximum(ri @ ci / jnp.maximum(jnp.mean(ri), eps1), eps1 ** 2))
            a = jnp.maximum(eps2, _rms(pi)) * jnp.minimum(lr, 1 / jnp.sqrt(t))
            out.append(pi - a / jnp.maximum(1.0, _rms(u) / d) * u)
            new_rows.append(ri)
            new_cols.append(ci)
        return out, (new_rows, new_cols, t)

    return init, update


def floor_lamb(lr, b1=0.9, b2=0.999, eps=1e-6):
    def update(g, s, p):
        m, v, t, c1, c2 = _adam_advance(b1, b2, s, g)

        def step(p, m, v):
            r = (m / c1) / (jnp.sqrt(v / c2) + eps)
            pn, rn = jnp.linalg.norm(p), jnp.linalg.norm(r)
            return p - lr * jnp.where((pn > 0) & (rn > 0), pn / rn, 1.0) * r

        return _tmap(step, p, m, v), (m, v, t)

    return _adam_init, update


def floor_lars(lr, coefficient=1e-3, gamma=0.9):
    def update(g, v, p):
        def trusted(p, g):
            pn, gn = jnp.linalg.norm(p), jnp.linalg.norm(g)
            return jnp.where((pn > 0) & (gn > 0), coefficient * pn / gn, 1.0) * g

        v = _tmap(lambda v, p, g: gamma * v + lr * trusted(p, g), v, p, g)
        return _tmap(jnp.subtract, p, v), v

    return (lambda params: _tmap(jnp.zeros_like, params), update)


def floor_rprop(step0, minus=0.5, plus=1.2, low=1e-6, high=50.0):
    def update(g, s, p):
        prev, size = s
        agree = _tmap(jnp.multiply, g, prev)
        size = _tmap(lambda z, a: jnp.clip(z * jnp.where(a > 0, plus, jnp.where(a < 0, minus, 1.0)),
                                           low, high), size, agree)
        g = _tmap(lambda g, a: jnp.where(a < 0, 0.0, g), g, agree)
        return _tmap(lambda p, g, z: p - jnp.sign(g) * z, p, g, size), (g, size)

    return (lambda params: (_tmap(jnp.zeros_like, params),
                            _tmap(lambda x: jnp.full_like(x, step0), params)), update)


MUON_ABC = (3.4445, -4.7750, 2.0315)


def floor_newton_schulz(x, abc=MUON_ABC, steps=5, eps=1e-7):
    """The quintic Newton-Schulz orthogonalization of one matrix (Muon's)."""
    a, b, c = abc
    tall = x.shape[0] > x.shape[1]
    x = x.T if tall else x
    x = x / jnp.maximum(jnp.linalg.norm(x), eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def floor_muon(lr, mu=0.95, wd=0.1, abc=MUON_ABC, steps=5, eps=1e-7):
    def update(g, bufs, p):
        bufs = _tmap(lambda m, g: mu * m + (1 - mu) * g, bufs, g)
        scale = [jnp.sqrt(max(1.0, x.shape[1] / x.shape[0])) for x in p]
        p = [pi - lr * wd * pi
             - lr * si * floor_newton_schulz((1 - mu) * gi + mu * mi, abc, steps, eps)
             for pi, gi, mi, si in zip(p, g, bufs, scale, strict=True)]
        return p, bufs

    return (lambda params: _tmap(jnp.zeros_like, params), update)


def floor_schedule_free(lr, beta=0.9, b2=None, eps=1e-8, power=2.0):
    def update(g, s, p):
        z, v, total, t = s
        t = t + 1
        total = total + lr ** power
        c = lr ** power / total
        if b2 is not None:
            v = _tmap(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
            g = _tmap(lambda g, v: g / (jnp.sqrt(v / (1 - b2 ** t)) + eps), g, v)
        # y from the new z (z_{t-1} = z_t + lr g): old z is then dead once z_t is written, so
        # XLA updates z in place instead of copying it first (the textbook order costs 4x on CPU)
        z = _tmap(lambda z, g: z - lr * g, z, g)
        y = _tmap(lambda y, z, g: y + c * (z - y) + lr * (1 - c) * (beta - 1) * g, p, z, g)
        return y, (z, v, total, t)

    return (lambda params: (params, _tmap(jnp.zeros_like, params) if b2 else None, jnp.zeros(()),
                            jnp.zeros(())), update)


# name -> (jnet constructor call, floor rule, optimizer state arrays per parameter array)
OPTIMIZERS: dict[str, tuple[Callable, Callable, int]] = {
    "sgd": (lambda o: o.sgd(1e-2), lambda: floor_sgd(1e-2), 0),
    "momentum": (lambda o: o.momentum(1e-2, 0.9), lambda: floor_momentum(1e-2, 0.9), 1),
    "nesterov": (lambda o: o.nesterov(1e-2, 0.9), lambda: floor_momentum(1e-2, 0.9, True), 1),
    "adagrad": (lambda o: o.adagrad(1e-2), lambda: floor_adagrad(1e-2, 1e-10, 0.0), 1),
    "adadelta": (lambda o: o.adadelta(), lambda: floor_adadelta(0.95, 1e-6), 2),
    "rmsprop": (lambda o: o.rmsprop(1e-3, 0.9), lambda: floor_rmsprop(1e-3, 0.9, 1e-8), 1),
    "adam": (lambda o: o.adam(1e-3), lambda: floor_adam(1e-3), 2),
    "adamw": (lambda o: o.adamw(1e-3, weight_decay=1e-2), lambda: floor_adamw(1e-3, 1e-2), 2),
    "nadam": (lambda o: o.nadam(2e-3), lambda: floor_nadam(2e-3), 2),
    "adamax": (lambda o: o.adamax(2e-3), lambda: floor_adamax(2e-3), 2),
    "lion": (lambda o: o.lion(1e-4), lambda: floor_lion(1e-4), 1),
    "radam": (lambda o: o.radam(1e-3), lambda: floor_radam(1e-3), 2),
    "adafactor": (lambda o: o.adafactor(1e-2), lambda: floor_adafactor(1e-2), 0),
    "lamb": (lambda o: o.lamb(1e-3), lambda: floor_lamb(1e-3), 2),
    "lars": (lambda o: o.lars(1.0), lambda: floor_lars(1.0), 1),
    "rprop": (lambda o: o.rprop(1e-2), lambda: floor_rprop(1e-2), 2),
    "muon": (lambda o: o.muon(1e-3), lambda: floor_muon(1e-3), 1),
    "schedule_free_adamw": (lambda o: o.schedule_free_adamw(2.5e-3),
                            lambda: floor_schedule_free(2.5e-3, 0.9, 0.999), 2),
    "schedule_free_sgd": (lambda o: o.schedule_free_sgd(1e-3),
                          lambda: floor_schedule_free(1e-3, 0.9), 1),
}


def floor_train_step(forward: Callable, rule: tuple[Callable, Callable]) -> Step:
    """value_and_grad of the mean cross-entropy, then the optimizer rule."""
    _, update = rule

    def loss_fn(params, state, batch, key):
        logits, state = forward(params, state, batch[0], key)
        return cross_entropy(logits, batch[1]), state

    def step(carry, batch, key):
        params, state, opt_state = carry
        (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, state, batch,
                                                                        key)
        params, opt_state = update(grads, opt_state, params)
        return (params, state, opt_state), loss

    return step


def conv_strided(p, x, stride: int):
    y = lax.conv_general_dilated(x, p["w"], (stride, stride), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + p["b"]


def floor_strided_cnn(params, state, x, key):
    """Two stride-2 convolutions downsample instead of pooling."""
    c1, c2, d1, d2 = params
    h = jax.nn.relu(conv_strided(c2, jax.nn.relu(conv_strided(c1, x, 2)), 2))
    h = jax.nn.relu(dense(d1, h.reshape(h.shape[0], -1)))
    return dense(d2, h), state


def floor_cnn1d(params, state, x, key):
    """Conv1D ReLU Conv1D ReLU Flatten Dense, (N, T, C) channels last, SAME padding."""
    c1, c2, d = params
    for p in (c1, c2):
        x = jax.nn.relu(lax.conv_general_dilated(x, p["w"], (1,), "SAME",
                                                 dimension_numbers=("NWC", "WIO", "NWC"))
                        + p["b"])
    return dense(d, x.reshape(x.shape[0], -1)), state


def lookup(table, ids):
    """Rows of `table` (V, E) for int `ids`, a NaN row for an id outside [0, V).

    A plain ``table[ids]`` would clamp a bad id to a real row (a silently wrong answer); jnet's
    `Embedding` guards against that with a NaN row (the loss turns NaN and `jnet.fit` stops),
    a check its users need, so the floors pay for the same guard and the comparison is fair
    (XLA counts 2.2 MB of the transformer step's 279 MB of memory traffic for it; timed in
    interleaved pairs it costs ~0.5%)."""
    valid = (ids >= 0) & (ids < table.shape[0])
    return jnp.take(table, jnp.where(valid, ids, table.shape[0]), axis=0, mode="fill",
                    fill_value=jnp.nan)


def layer_norm(p, x, eps=1e-5):
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def self_attention(p, x, heads: int):
    """Multi-head scaled dot-product self-attention, (N, T, E) -> (N, T, E), no mask."""
    n, t, e = x.shape
    q, k, v = jnp.split(x @ p["w_qkv"] + p["b_qkv"], 3, axis=-1)
    q, k, v = (a.reshape(n, t, heads, e // heads) for a in (q, k, v))
    logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) / jnp.sqrt(jnp.float32(e // heads))
    out = jnp.einsum("nhqk,nkhd->nqhd", jax.nn.softmax(logits, axis=-1), v)
    return out.reshape(n, t, e) @ p["w_out"] + p["b_out"]


def transformer(heads: int):
    """Pre-LayerNorm encoder block on token ids: embed (with `lookup`'s guard, as jnet's
    `Embedding`), x + MHA(LN(x)), x + MLP(LN(x)), Flatten, Dense."""

    def floor(params, state, ids, key):
        emb, ln1, attn, ln2, d1, d2, head = params
        h = lookup(emb["embedding"], ids)
        h = h + self_attention(attn, layer_norm(ln1, h), heads)
        h = h + dense(d2, jax.nn.relu(dense(d1, layer_norm(ln2, h))))
        return dense(head, h.reshape(h.shape[0], -1)), state

    return floor


# ----------------------------------------------------------------------------------------
# The character-level GPT of scripts/train_lm.py: pre-norm causal blocks with grouped-query
# attention and rotary embeddings, repeated by one lax.scan, a final RMSNorm, the output
# projection tied to the embedding. Params: {"table": (V, E), "blocks": each leaf stacked to
# (layers, ...) with jnet's names, "final": {"scale"}}.


def rope(x, base: float):
    """Rotary embedding, half-split (GPT-NeoX / Llama) convention, x (N, T, heads, D)."""
    t, d = x.shape[1], x.shape[-1]
    angles = jnp.arange(t, dtype=jnp.float32)[:, None] * base ** (
        -jnp.arange(0, d // 2, dtype=jnp.float32) * 2 / d)
    cos, sin = jnp.cos(angles)[:, None], jnp.sin(angles)[:, None]
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def causal_attention(p, x, heads: int, kv_heads: int, base: float):
    """Causal grouped-query self-attention with RoPE, (N, T, E) -> (N, T, E)."""
    n, t, e = x.shape
    d = e // heads
    q, k, v = jnp.split(x @ p["w_qkv"] + p["b_qkv"], [heads * d, (heads + kv_heads) * d], -1)
    q = rope(q.reshape(n, t, heads, d), base).reshape(n, t, kv_heads, heads // kv_heads, d)
    k, v = rope(k.reshape(n, t, kv_heads, d), base), v.reshape(n, t, kv_heads, d)
    logits = jnp.einsum("ntkgd,nskd->nkgts", q, k) / jnp.sqrt(jnp.float32(d))
    logits = jnp.where(jnp.tril(jnp.ones((t, t), jnp.bool_)), logits, -jnp.inf)
    out = jnp.einsum("nkgts,nskd->ntkgd", jax.nn.softmax(logits, axis=-1), v)
    return out.reshape(n, t, e) @ p["w_out"] + p["b_out"]


def gpt_logits(params, ids, heads: int, kv_heads: int, base: float):
    """ids (N, T) -> logits (N, T, V); ids looked up with `lookup`'s NaN-row guard (as jnet's
    `Embedding`)."""

    def block(h, p):
        h = h + causal_attention(p["self_attn"], layer_norm(p["norm1"], h), heads, kv_heads,
                                 base)
        ff = jax.nn.gelu(dense(p["linear1"], layer_norm(p["norm2"], h)), approximate=False)
        return h + dense(p["linear2"], ff), None

    h, _ = lax.scan(block, lookup(params["table"], ids), params["blocks"])
    h = h * lax.rsqrt(jnp.mean(jnp.square(h), axis=-1, keepdims=True) + 1e-6)
    return (h * params["final"]["scale"]) @ params["table"].T


def floor_gpt_step(heads: int, kv_heads: int, base: float, rule) -> Step:
    """Next-token cross-entropy of ids (N, T + 1) (predict ids[:, 1:] from ids[:, :-1]), its
    gradient, then the optimizer rule; carry (params, opt_state)."""
    _, update = rule

    def loss_fn(params, ids):
        logp = jax.nn.log_softmax(gpt_logits(params, ids[:, :-1], heads, kv_heads, base))
        return -jnp.mean(jnp.take_along_axis(logp, ids[:, 1:, None], -1))

    def step(carry, ids, key):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, ids)
        params, opt_state = update(grads, opt_state, params)
        return (params, opt_state), loss

    return step
