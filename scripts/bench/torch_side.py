"""The benchmark's training workloads in PyTorch: eager, and `torch.compile` of the model.

Each torch model is built from the floor's params (jnet's initial weights as lists of dicts of
arrays), converted to PyTorch's layouts: Linear weights transposed, convolution kernels
HWIO -> OIHW, images NHWC -> NCHW (converted once, outside the timed steps: NCHW is torch's
native layout), the rows of the Dense after a Flatten permuted from (h, w, c) to (c, h, w)
order, recurrent weights transposed (the gate orders already agree). Dropout multiplies by the
mask the JAX implementations draw from the same key, so all implementations do the same maths
and their first losses agree to float32 rounding.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


def available() -> bool:
    """Whether `import torch` works (the torch columns are optional)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def threads() -> int:
    """Torch's intra-op threads: the CPUs this process may run on, as XLA:CPU's thread pool."""
    return len(os.sched_getaffinity(0))


@dataclass
class TorchSpec:
    """A workload in torch: `build(floor_params, floor_state)` -> (layers dict, forward(layers,
    x, extra) -> logits); `optimizer` a name of `OPTIMIZERS`; `image`: move the channel axis
    of the batches from last to 1 (NHWC -> NCHW, NTC -> NCT); `extra(i)` the per-batch extra
    input of step i (a dropout mask) or None; `integer_inputs`: token ids."""

    build: Callable[[list, list], tuple[dict, Callable]]
    optimizer: str
    image: bool = False
    extra: Callable[[int], Any] | None = None
    integer_inputs: bool = False


def _t(a, dtype=np.float32):
    import torch

    return torch.from_numpy(np.array(a, dtype))


def linear(p, rows_chw: tuple[int, int, int] | None = None):
    """nn.Linear from a dense {"w": (in, out), "b"}; `rows_chw` = (H, W, C) of a flattened NHWC
    input: permute the rows to torch's (c, h, w) flatten order."""
    from torch import nn

    w = np.asarray(p["w"])
    if rows_chw is not None:
        h, wd, c = rows_chw
        w = w.reshape(h, wd, c, -1).transpose(2, 0, 1, 3).reshape(h * wd * c, -1)
    m = nn.Linear(*w.shape)
    with _no_grad():
        m.weight.copy_(_t(w.T))
        m.bias.copy_(_t(p["b"]))
    return m


def conv2d(p, stride: int = 1, padding: int = 1):
    from torch import nn

    w = np.asarray(p["w"])  # HWIO
    m = nn.Conv2d(w.shape[2], w.shape[3], w.shape[:2], stride=stride, padding=padding)
    with _no_grad():
        m.weight.copy_(_t(w.transpose(3, 2, 0, 1)))
        m.bias.copy_(_t(p["b"]))
    return m


def conv1d(p, padding: int):
    from torch import nn

    w = np.asarray(p["w"])  # (K, I, O)
    m = nn.Conv1d(w.shape[1], w.shape[2], w.shape[0], padding=padding)
    with _no_grad():
        m.weight.copy_(_t(w.transpose(2, 1, 0)))
        m.bias.copy_(_t(p["b"]))
    return m


def batch_norm2d(p, s):
    from torch import nn

    m = nn.BatchNorm2d(p["scale"].shape[0], eps=1e-5, momentum=0.1)  # = jnet momentum 0.9
    with _no_grad():
        m.weight.copy_(_t(p["scale"]))
        m.bias.copy_(_t(p["bias"]))
        m.running_mean.copy_(_t(s["mean"]))
        m.running_var.copy_(_t(s["var"]))
    return m


def recurrent(kind: str, p):
    """nn.LSTM / nn.GRU (batch_first) from jnet's params; jnet's one LSTM bias is b_ih."""
    from torch import nn

    w_ih, w_hh = np.asarray(p["w_ih"]), np.asarray(p["w_hh"])
    hidden = w_hh.shape[0]
    m = (nn.LSTM if kind == "lstm" else nn.GRU)(w_ih.shape[0], hidden, batch_first=True)
    b_ih, b_hh = (p["b"], np.zeros_like(p["b"])) if kind == "lstm" else (p["b_ih"], p["b_hh"])
    with _no_grad():
        m.weight_ih_l0.copy_(_t(w_ih.T))
        m.weight_hh_l0.copy_(_t(w_hh.T))
        m.bias_ih_l0.copy_(_t(b_ih))
        m.bias_hh_l0.copy_(_t(b_hh))
    return m


def _no_grad():
    import torch

    return torch.no_grad()


def optimizer(name: str, params):
    """jnet's rule `name` with the benchmark's hyperparameters (see floors.OPTIMIZERS). jnet's
    momentum v = γv + lr·g, p -= v equals torch's SGD buf = γ·buf + g, p -= lr·buf."""
    import torch

    makers = {
        "adam": lambda: torch.optim.Adam(params, lr=1e-3, eps=1e-8),
        # decoupled decay, p <- p (1 - lr wd) then the Adam step: jnet's adamw
        "adamw": lambda: torch.optim.AdamW(params, lr=1e-3, eps=1e-8, weight_decay=1e-2),
        "momentum": lambda: torch.optim.SGD(params, lr=1e-2, momentum=0.9),
        "rmsprop": lambda: torch.optim.RMSprop(params, lr=1e-3, alpha=0.9, eps=1e-8),
    }
    return makers[name]()


class Runner:
    """One workload in torch: a module built once (compiled once for "torch.compile"), its
    initial weights restored before every round so every round trains from the same start."""

    def __init__(self, spec: TorchSpec, floor_params, floor_state, batches, compiled: bool):
        import torch

        torch.set_num_threads(threads())
        self.spec, self.compiled, self.warm = spec, compiled, False
        layers, forward = spec.build(floor_params, floor_state)
        self.model = _Model(layers, forward)
        self.initial = {k: v.clone() for k, v in self.model.state_dict().items()}
        if compiled:  # time a real compile: no FX graph / kernel caches from earlier runs
            import torch._inductor.config

            torch._inductor.config.force_disable_caches = True
        self.fn = torch.compile(self.model) if compiled else self.model

        def x_of(x):
            x = np.asarray(x)
            if spec.image:  # channels last -> torch's channels first: NHWC -> NCHW, NTC -> NCT
                x = np.moveaxis(x, -1, 1)
            return torch.from_numpy(np.array(x, np.int64 if spec.integer_inputs else np.float32,
                                             order="C"))

        self.batches = [(x_of(x), torch.from_numpy(np.array(y, np.int64))) for x, y in batches]
        self.extras = [None if spec.extra is None else spec.extra(i) for i in range(len(batches))]

    def step_fn(self):
        import torch
        import torch.nn.functional as F

        self.model.load_state_dict(self.initial)
        self.model.train()
        opt = optimizer(self.spec.optimizer, self.model.parameters())

        def step(i):
            x, y = self.batches[i % len(self.batches)]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(self.fn(x, self.extras[i % len(self.batches)]), y)
            loss.backward()
            opt.step()
            return loss.detach()

        torch.manual_seed(0)
        return step

    def measure(self, steps: int, check_steps: int) -> dict:
        """A round: first step (compiles once for torch.compile), synced steps, a loop."""
        step = self.step_fn()
        t0 = time.perf_counter()
        checks = [float(step(0))]
        first = time.perf_counter() - t0
        times = []
        for i in range(1, steps + 1):
            t0 = time.perf_counter()
            loss = step(i)
            times.append(time.perf_counter() - t0)  # CPU: torch returns when the work is done
            if i < check_steps:
                checks.append(float(loss))
        t0, cpu0 = time.perf_counter(), time.process_time()
        for i in range(steps):
            loss = step(i)
        float(loss)
        loop = (time.perf_counter() - t0) / steps
        out = {"first_call_s": first, "step_median_s": statistics.median(times),
               "step_min_s": min(times), "loop_steps_per_s": 1.0 / loop, "checks": checks,
               "loop_cores": (time.process_time() - cpu0) / (loop * steps)}
        if self.compiled and not self.warm:  # compiled on this first call: minus one step
            out["compile_s"] = first - out["step_median_s"]
        self.warm = True
        return out


def _module_class():
    from torch import nn

    class Model(nn.Module):
        def __init__(self, layers: dict, forward: Callable):
            super().__init__()
            self.layers = nn.ModuleDict(layers)
            self._forward = forward

        def forward(self, x, extra):
            return self._forward(self.layers, x, extra)

    return Model


def _Model(layers, forward):  # a class defined once torch is imported
    return _module_class()(layers, forward)


# ----------------------------------------------------------------------------------------
# The workloads' models, from the floor's params (the order of jnet's children).


def _relu(x):
    import torch

    return torch.relu(x)


def mlp() -> Callable:
    def build(params, state):
        layers = {f"l{i}": linear(p) for i, p in enumerate(params)}

        def forward(m, x, extra):
            for i in range(len(params) - 1):
                x = _relu(m[f"l{i}"](x))
            return m[f"l{len(params) - 1}"](x)

        return layers, forward

    return build


def cnn(bn: bool, flat_hwc: tuple[int, int, int], stride: int = 1,
        padding: int = 1) -> Callable:
    """Conv [BN] ReLU [MaxPool] x2, Flatten, Dense ReLU [Dropout mask] Dense; pooling 2x2 when
    stride 1 (the strided CNN downsamples by its convolutions instead)."""

    def build(params, state):
        import torch.nn.functional as F

        if bn:
            c1, b1, c2, b2, d1, d2 = params
            layers = {"bn1": batch_norm2d(b1, state[0]), "bn2": batch_norm2d(b2, state[1])}
        else:
            (c1, c2, d1, d2), layers = params, {}
        layers |= {"c1": conv2d(c1, stride, padding), "c2": conv2d(c2, stride, padding),
                   "d1": linear(d1, flat_hwc), "d2": linear(d2)}

        def forward(m, x, extra):
            for conv_name, bn_name in (("c1", "bn1"), ("c2", "bn2")):
                x = m[conv_name](x)
                x = _relu(m[bn_name](x) if bn else x)
                if stride == 1:
                    x = F.max_pool2d(x, 2)
            x = _relu(m["d1"](x.flatten(1)))
            return m["d2"](x if extra is None else x * extra)

        return layers, forward

    return build


def rnn(kind: str) -> Callable:
    def build(params, state):
        layers = {"rnn": recurrent(kind, params[0]), "head": linear(params[1])}

        def forward(m, x, extra):
            out, _ = m["rnn"](x)
            return m["head"](out[:, -1])

        return layers, forward

    return build


def cnn1d(padding: int, flat_tc: tuple[int, int]) -> Callable:
    """Conv1d ReLU Conv1d ReLU Flatten Linear on (N, C, T) (batches converted from (N, T, C))."""

    def build(params, state):
        c1, c2, d = params
        t, c = flat_tc
        layers = {"c1": conv1d(c1, padding), "c2": conv1d(c2, padding),
                  "d": linear(d, (1, t, c))}  # jnet flattens (t, c), torch (c, t)

        def forward(m, x, extra):
            x = _relu(m["c2"](_relu(m["c1"](x))))
            return m["d"](x.flatten(1))

        return layers, forward

    return build


def transformer(heads: int) -> Callable:
    """nn.Embedding, pre-LayerNorm residual nn.MultiheadAttention and MLP, Flatten, Linear."""

    def build(params, state):
        from torch import nn

        emb, ln1, attn, ln2, d1, d2, head = params
        e = np.asarray(attn["w_out"]).shape[0]
        mha = nn.MultiheadAttention(e, heads, batch_first=True)
        embedding = nn.Embedding(*np.asarray(emb["embedding"]).shape)
        norms = [nn.LayerNorm(e, eps=1e-5) for _ in range(2)]
        with _no_grad():
            embedding.weight.copy_(_t(emb["embedding"]))
            mha.in_proj_weight.copy_(_t(np.asarray(attn["w_qkv"]).T))
            mha.in_proj_bias.copy_(_t(attn["b_qkv"]))
            mha.out_proj.weight.copy_(_t(np.asarray(attn["w_out"]).T))
            mha.out_proj.bias.copy_(_t(attn["b_out"]))
            for norm, p in zip(norms, (ln1, ln2), strict=True):
                norm.weight.copy_(_t(p["scale"]))
                norm.bias.copy_(_t(p["bias"]))
        layers = {"emb": embedding, "ln1": norms[0], "attn": mha, "ln2": norms[1],
                  "d1": linear(d1), "d2": linear(d2), "head": linear(head)}

        def forward(m, ids, extra):
            h = m["emb"](ids)
            a = m["ln1"](h)
            h = h + m["attn"](a, a, a, need_weights=False)[0]
            h = h + m["d2"](_relu(m["d1"](m["ln2"](h))))
            return m["head"](h.flatten(1))

        return layers, forward

    return build


# ----------------------------------------------------------------------------------------
# The character-level GPT (floors.gpt_logits in torch): per layer LayerNorm, a fused q | k | v
# Linear, RoPE (half-split), F.scaled_dot_product_attention (causal, grouped-query),
# LayerNorm, Linear GELU Linear; a final RMSNorm; logits = h @ embedding.weightᵀ (tied).


def _rope_tables(steps: int, d: int, base: float):
    """cos, sin (steps, D/2) of the half-split rotary embedding, computed as the JAX side."""
    import torch

    inv = base ** (-torch.arange(0, d // 2, dtype=torch.float32) * 2 / d)
    angles = torch.arange(steps, dtype=torch.float32)[:, None] * inv
    return torch.cos(angles), torch.sin(angles)


def _rotate(x, cos, sin):
    """x (N, heads, T, D), cos / sin (T, D/2)."""
    import torch

    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def _gpt_layers(params) -> dict:
    """nn modules from the floor's GPT params (blocks stacked on a leading layer axis)."""
    from torch import nn

    table = np.asarray(params["table"])
    blocks = {k: {n: np.asarray(a) for n, a in v.items()} for k, v in params["blocks"].items()}
    e = table.shape[1]
    embedding = nn.Embedding(*table.shape)
    final = nn.RMSNorm(e, eps=1e-6)
    with _no_grad():
        embedding.weight.copy_(_t(table))
        final.weight.copy_(_t(params["final"]["scale"]))
    layers = {"emb": embedding, "final": final}
    for i in range(blocks["linear1"]["w"].shape[0]):
        attn = blocks["self_attn"]
        layers[f"qkv{i}"] = linear({"w": attn["w_qkv"][i], "b": attn["b_qkv"][i]})
        layers[f"out{i}"] = linear({"w": attn["w_out"][i], "b": attn["b_out"][i]})
        layers[f"ff1_{i}"] = linear({k: v[i] for k, v in blocks["linear1"].items()})
        layers[f"ff2_{i}"] = linear({k: v[i] for k, v in blocks["linear2"].items()})
        for norm in ("norm1", "norm2"):
            m = nn.LayerNorm(e, eps=1e-5)
            with _no_grad():
                m.weight.copy_(_t(blocks[norm]["scale"][i]))
                m.bias.copy_(_t(blocks[norm]["bias"][i]))
            layers[f"{norm}_{i}"] = m
    return layers


def _gpt_block(m, i: int, h, heads: int, kv_heads: int, rope, cache=None):
    """Block i on h (N, T, E); `rope` = (cos, sin) of the T positions; `cache` = (k, v, pos)
    for one decoding step (k, v (N, K, max_len, D) written at pos in place)."""
    import torch.nn.functional as F

    n, t, e = h.shape
    d = e // heads
    q, k, v = m[f"qkv{i}"](m[f"norm1_{i}"](h)).split([heads * d, kv_heads * d, kv_heads * d], -1)
    q = _rotate(q.view(n, t, heads, d).transpose(1, 2), *rope)
    k = _rotate(k.view(n, t, kv_heads, d).transpose(1, 2), *rope)
    v = v.view(n, t, kv_heads, d).transpose(1, 2)
    if cache is None:
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    else:
        k_all, v_all, pos = cache
        k_all[:, :, pos:pos + 1], v_all[:, :, pos:pos + 1] = k, v
        o = F.scaled_dot_product_attention(q, k_all[:, :, :pos + 1], v_all[:, :, :pos + 1],
                                           enable_gqa=True)
    h = h + m[f"out{i}"](o.transpose(1, 2).reshape(n, t, e))
    return h + m[f"ff2_{i}"](F.gelu(m[f"ff1_{i}"](m[f"norm2_{i}"](h))))


def gpt(heads: int, kv_heads: int, base: float, steps: int) -> Callable:
    """The GPT on ids (N, T): logits flattened to (N·T, V) for F.cross_entropy against the
    flattened next ids."""

    def build(params, state):
        layers = _gpt_layers(params)
        n_layers = sum(name.startswith("qkv") for name in layers)
        d = np.asarray(params["table"]).shape[1] // heads
        rope = _rope_tables(steps, d, base)

        def forward(m, ids, extra):
            h = m["emb"](ids)
            for i in range(n_layers):
                h = _gpt_block(m, i, h, heads, kv_heads, rope)
            return (m["final"](h) @ m["emb"].weight.T).flatten(0, 1)

        return layers, forward

    return build


class Decoder:
    """Greedy decoding of the GPT with a hand-written key / value cache (torch.nn has none for
    its transformer layers): the prompt is fed token by token, then each next token is the
    argmax. `generate(prompt)` -> (tokens, logits of every step)."""

    def __init__(self, params, heads: int, kv_heads: int, base: float, length: int):
        import torch

        torch.set_num_threads(threads())
        self.m = _module_class()(_gpt_layers(params), None).layers
        self.heads, self.kv_heads, self.length = heads, kv_heads, length
        self.n_layers = sum(name.startswith("qkv") for name in self.m)
        self.d = np.asarray(params["table"]).shape[1] // heads
        self.rope = _rope_tables(length, self.d, base)

    def generate(self, prompt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.no_grad():
            caches = [(torch.zeros(1, self.kv_heads, self.length, self.d),
                       torch.zeros(1, self.kv_heads, self.length, self.d))
                      for _ in range(self.n_layers)]
            tokens, logits = [int(prompt[0])], []
            for pos in range(self.length - 1):
                h = self.m["emb"](torch.tensor([[tokens[-1]]]))
                rope = (self.rope[0][pos:pos + 1], self.rope[1][pos:pos + 1])
                for i, (k, v) in enumerate(caches):
                    h = _gpt_block(self.m, i, h, self.heads, self.kv_heads, rope, (k, v, pos))
                step_logits = (self.m["final"](h) @ self.m["emb"].weight.T)[0, 0]
                logits.append(step_logits)
                tokens.append(int(prompt[pos + 1]) if pos + 1 < len(prompt)
                              else int(step_logits.argmax()))
        return np.asarray(tokens), torch.stack(logits).numpy()
