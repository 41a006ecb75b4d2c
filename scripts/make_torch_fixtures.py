"""Write the PyTorch parity fixtures in tests/fixtures/ (needs torch; the tests do not).

Each ``torch_<module>.npz`` holds a random module's state dict (keys ``sd/<torch name>``), an
input ``x`` and PyTorch's output(s) ``y...`` for it, all float32 and tiny, so
`tests/test_interop.py` checks jnet against PyTorch's numbers without PyTorch installed.

    python scripts/make_torch_fixtures.py        # rewrites tests/fixtures/torch_*.npz

The sequence layers' cases (LayerNorm, Embedding, MultiheadAttention) need more than ``x``:
a padding mask and the attention's configuration. They are written to
``tests/fixtures/seq_<case>.npz`` (``sd/...``, ``x``, ``y``, and for attention ``mask``,
``num_heads``, ``causal``) and checked by tests/test_layernorm.py, test_embedding.py and
test_attention.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def make_modules(seed: int = 0) -> dict[str, tuple[torch.nn.Module, torch.Tensor]]:
    """The modules and inputs the fixtures (and the live torch tests) use. Inputs are in
    PyTorch's layout: (N, T, F) with batch_first for RNNs, (N, C, L) for sequences, NCHW for
    images."""
    torch.manual_seed(seed)
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():  # a few training batches so the running stats are not the defaults
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        for _ in range(3):
            bn(torch.randn(4, 3, 5, 5) * 2 + 1)
    bn.eval()
    return {
        "lstm": (torch.nn.LSTM(3, 4, batch_first=True), torch.randn(2, 5, 3)),
        "lstm_bi": (torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True),
                    torch.randn(2, 5, 3)),
        "gru": (torch.nn.GRU(3, 4, batch_first=True), torch.randn(2, 5, 3)),
        "linear": (torch.nn.Linear(5, 3), torch.randn(4, 5)),
        "conv2d": (torch.nn.Conv2d(2, 3, (3, 2), stride=(1, 2), padding=1),
                   torch.randn(2, 2, 6, 5)),
        "batchnorm2d": (bn, torch.randn(2, 3, 4, 4)),
        "conv1d": (torch.nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2),
                   torch.randn(2, 4, 9)),
        "conv_transpose2d": (torch.nn.ConvTranspose2d(2, 3, (3, 2), stride=(2, 3), padding=1,
                                                      output_padding=(1, 0)),
                             torch.randn(2, 2, 4, 3)),
    }


def outputs(module: torch.nn.Module, x: torch.Tensor) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = module(x)
    if isinstance(module, torch.nn.LSTM):
        y, (h, c) = out
        return {"y": y.numpy(), "h": h.numpy(), "c": c.numpy()}
    if isinstance(module, torch.nn.GRU):
        y, h = out
        return {"y": y.numpy(), "h": h.numpy()}
    return {"y": out.numpy()}


def make_sequence_cases(seed: int = 0) -> dict[str, dict]:
    """The sequence layers' cases: name -> ``{"module", "x", ...}``. Attention cases add
    ``mask`` (N, T) in jnet's convention (True on real steps; PyTorch's ``key_padding_mask`` is
    its negation), ``num_heads`` and ``causal``. Biases and affine params are drawn away from
    PyTorch's zero / one defaults so that the conversion of each one is checked."""
    torch.manual_seed(seed)
    norm = torch.nn.LayerNorm(6)
    cases = {
        "layernorm": {"module": norm, "x": torch.randn(2, 5, 6) * 3 + 1},
        "embedding": {"module": torch.nn.Embedding(10, 4), "x": torch.randint(0, 10, (3, 5))},
    }
    lengths = torch.tensor([5, 3, 1])
    mask = torch.arange(5)[None, :] < lengths[:, None]
    for causal in (False, True):
        attention = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        cases["mha_causal" if causal else "mha"] = {
            "module": attention, "x": torch.randn(3, 5, 8), "mask": mask, "num_heads": 2,
            "causal": causal}
    with torch.no_grad():
        for case in cases.values():
            for name, value in case["module"].named_parameters():
                if name.endswith("bias") or isinstance(case["module"], torch.nn.LayerNorm):
                    value.uniform_(-0.5, 1.5)
    return cases


def sequence_outputs(case: dict) -> dict[str, np.ndarray]:
    """PyTorch's output ``{"y": ...}`` for a case of `make_sequence_cases` (eval mode). For
    attention ``y`` is defined at real queries only: PyTorch computes something at padded
    queries (jnet returns 0 there), so the tests compare real steps."""
    module, x = case["module"], case["x"]
    module.eval()
    with torch.no_grad():
        if not isinstance(module, torch.nn.MultiheadAttention):
            return {"y": module(x).numpy()}
        t = x.shape[1]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool), 1) if case["causal"] else None
        y, _ = module(x, x, x, key_padding_mask=~case["mask"], attn_mask=causal,
                      need_weights=False)
    return {"y": y.numpy()}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (module, x) in make_modules().items():
        arrays = {f"sd/{k}": v.detach().numpy() for k, v in module.state_dict().items()
                  if v.dtype.is_floating_point}
        arrays.update(x=x.numpy(), **outputs(module, x))
        path = OUT / f"torch_{name}.npz"
        np.savez_compressed(path, **arrays)
        print(f"{path.relative_to(OUT.parent.parent)}: {path.stat().st_size} bytes")
    for name, case in make_sequence_cases().items():
        arrays = {f"sd/{k}": v.detach().numpy() for k, v in case["module"].state_dict().items()}
        arrays.update({k: np.asarray(v) for k, v in case.items() if k != "module"})
        arrays.update(sequence_outputs(case))
        path = OUT / f"seq_{name}.npz"
        np.savez_compressed(path, **arrays)
        print(f"{path.relative_to(OUT.parent.parent)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
