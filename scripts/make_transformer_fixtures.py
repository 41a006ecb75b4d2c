"""Write the PyTorch parity fixtures of the transformer-era layers (needs torch; the tests do
not): ``tests/fixtures/tf_<case>.npz``.

Every case runs a random float64 PyTorch module on an input and records, in jnet's
channels-last layout: the module's state dict (``sd/<torch name>``), the input ``x``,
PyTorch's output ``y``, a random cotangent ``w`` and the gradients of ``sum(w * y)`` with
respect to ``x`` (``grad_x``) and to every parameter (``grad_sd/<torch name>``, in PyTorch's
layout, so the same converter that maps the weights maps their gradients). Attention cases
add ``mask`` (N, T), True on real steps, with ``w`` zero at padded queries (PyTorch computes
values there, jnet returns 0), and the configuration as scalars.

    python scripts/make_transformer_fixtures.py     # rewrites tests/fixtures/tf_*.npz

tests/test_transformer_parity.py checks the committed files always and fresh draws of
`make_cases` when torch is installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """(N, *spatial, C) -> (N, C, *spatial)."""
    return x.movedim(-1, 1)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1)


def _perturb(module: torch.nn.Module) -> None:
    """Draw every parameter away from PyTorch's ones / zeros, so each conversion is checked."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias") or p.ndim == 1:
                p.uniform_(-0.5, 1.5)


def _norm_cases() -> dict[str, dict]:
    cases = {}
    for name, module, shape in (
        ("rmsnorm", torch.nn.RMSNorm(6, eps=1e-6), (2, 5, 6)),
        ("groupnorm", torch.nn.GroupNorm(2, 6), (2, 4, 3, 6)),
        ("instancenorm", torch.nn.InstanceNorm2d(4, affine=True), (2, 5, 3, 4)),
    ):
        spatial = name != "rmsnorm"

        def forward(x, module=module, spatial=spatial):
            return channels_last(module(channels_first(x))) if spatial else module(x)

        cases[name] = {"module": module, "x": torch.randn(*shape) * 3 + 1, "forward": forward}
    return cases


class RopeGQAttention(torch.nn.Module):
    """Grouped-query self-attention with half-split rotary embeddings, written with PyTorch's
    ``F.scaled_dot_product_attention(enable_gqa=True)`` and Hugging Face's ``rotate_half``
    (Llama / GPT-NeoX), in jnet's parameter layout: ``qkv`` (q | k | v), ``out``."""

    def __init__(self, e: int, heads: int, kv_heads: int, base: float, causal: bool):
        super().__init__()
        self.heads, self.kv_heads, self.d, self.base, self.causal = (
            heads, kv_heads, e // heads, base, causal)
        self.qkv = torch.nn.Linear(e, (heads + 2 * kv_heads) * self.d)
        self.out = torch.nn.Linear(e, e)

    def rope(self, u: torch.Tensor) -> torch.Tensor:  # u (N, heads, T, D)
        t, d = u.shape[2], self.d
        inv_freq = 1.0 / self.base ** (torch.arange(0, d, 2, dtype=u.dtype) / d)
        freqs = torch.outer(torch.arange(t, dtype=u.dtype), inv_freq)
        emb = torch.cat([freqs, freqs], -1)
        half = torch.cat([-u[..., d // 2:], u[..., :d // 2]], -1)  # rotate_half
        return u * emb.cos() + half * emb.sin()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        split = (self.heads * self.d, self.kv_heads * self.d, self.kv_heads * self.d)
        q, k, v = (a.reshape(n, t, -1, self.d).transpose(1, 2)
                   for a in self.qkv(x).split(split, -1))
        q, k = self.rope(q), self.rope(k)
        allowed = mask[:, None, None, :]
        if self.causal:
            allowed = allowed & torch.tril(torch.ones(t, t, dtype=torch.bool))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True)
        return self.out(y.transpose(1, 2).reshape(n, t, -1))


def _attention_cases() -> dict[str, dict]:
    mask = torch.arange(6)[None, :] < torch.tensor([6, 4, 1])[:, None]
    cases = {}
    for name, heads, kv, causal in (("gqa_rope", 4, 2, False), ("mqa_rope_causal", 4, 1, True)):
        module = RopeGQAttention(8, heads, kv, 100.0, causal)
        cases[name] = {"module": module, "x": torch.randn(3, 6, 8), "mask": mask,
                       "num_heads": heads, "num_kv_heads": kv, "causal": causal, "rope": 100.0,
                       "forward": lambda x, m=module, mask=mask: m(x, mask)}
    return cases


def _block_cases() -> dict[str, dict]:
    """nn.TransformerEncoderLayer, bidirectional (encoder) and causal (decoder-only)."""
    lengths = torch.tensor([5, 3, 5])
    mask = torch.arange(5)[None, :] < lengths[:, None]
    causal_mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    cases = {}
    for name, norm_first, activation, causal in (
        ("encoder_post_relu", False, "relu", False), ("encoder_pre_gelu", True, "gelu", False),
        ("decoder_pre_gelu", True, "gelu", True), ("decoder_post_relu", False, "relu", True),
    ):
        module = torch.nn.TransformerEncoderLayer(8, 2, 12, dropout=0.1, activation=activation,
                                                  batch_first=True, norm_first=norm_first)

        def forward(x, m=module, causal=causal):
            return m(x, src_mask=causal_mask if causal else None,
                     src_key_padding_mask=~mask)

        cases[name] = {"module": module, "x": torch.randn(3, 5, 8), "mask": mask,
                       "norm_first": norm_first, "activation": activation, "causal": causal,
                       "forward": forward}
    return cases


def _conv_cases() -> dict[str, dict]:
    """Conv3d, a depthwise-separable pair, and nn.Upsample (channels first in PyTorch)."""
    separable = torch.nn.Sequential()
    separable.add_module("depthwise", torch.nn.Conv2d(3, 6, (3, 2), stride=(2, 1), padding=1,
                                                      dilation=(1, 2), groups=3, bias=False))
    separable.add_module("pointwise", torch.nn.Conv2d(6, 4, 1))
    cases = {
        "conv3d": (torch.nn.Conv3d(2, 3, (3, 2, 2), stride=(1, 2, 1), padding=1,
                                   dilation=(1, 1, 2)), (2, 4, 5, 6, 2)),
        "separable": (separable, (2, 7, 6, 3)),
        "upsample_nearest": (torch.nn.Upsample(scale_factor=(2, 3), mode="nearest"),
                             (2, 3, 4, 2)),
        "upsample_bilinear": (torch.nn.Upsample(scale_factor=(2, 3), mode="bilinear",
                                                align_corners=False), (2, 3, 4, 2)),
    }
    return {name: {"module": module, "x": torch.randn(*shape),
                   "forward": lambda x, m=module: channels_last(m(channels_first(x)))}
            for name, (module, shape) in cases.items()}


def make_cases(seed: int = 0) -> dict[str, dict]:
    """name -> ``{"module", "x" (jnet layout), "forward": x -> y (jnet layout), extras}``."""
    torch.manual_seed(seed)
    cases = {**_norm_cases(), **_attention_cases(), **_block_cases(),
             **_conv_cases()}
    for case in cases.values():
        case["module"].double()
        _perturb(case["module"])
        case["x"] = case["x"].double()
    return cases


def run_case(case: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """PyTorch's outputs and gradients for a case of `make_cases`, as a flat dict of arrays."""
    module, forward = case["module"], case["forward"]
    module.eval()  # dropout off: the parity is of the deterministic maths
    x = case["x"].clone().requires_grad_(True)
    y = forward(x)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 1),
                    dtype=y.dtype)
    if "mask" in case:
        w = w * case["mask"][:, :, None]
    module.zero_grad()
    (y * w).sum().backward()
    arrays = {f"sd/{k}": v.detach().numpy() for k, v in module.state_dict().items()}
    arrays.update({f"grad_sd/{k}": p.grad.numpy() for k, p in module.named_parameters()})
    arrays.update(x=x.detach().numpy(), y=y.detach().numpy(), w=w.numpy(),
                  grad_x=x.grad.numpy())
    arrays.update({k: np.asarray(v) for k, v in case.items()
                   if k not in ("module", "x", "forward")})
    return arrays


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, case in make_cases().items():
        path = OUT / f"tf_{name}.npz"
        np.savez_compressed(path, **run_case(case))
        print(f"{path.relative_to(OUT.parent.parent)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
