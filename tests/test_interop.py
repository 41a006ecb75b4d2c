"""PyTorch state dicts into jnet: outputs match PyTorch's to 1e-5.

Two sources of PyTorch numbers: committed fixtures (tests/fixtures/torch_*.npz, written by
scripts/make_torch_fixtures.py), checked always, and freshly drawn torch modules, checked when
torch is installed (the optional ``torch`` extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnet
from jnet import interop
from jnet import layers as L

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = sorted((ROOT / "tests" / "fixtures").glob("torch_*.npz"))
MODULES = ["lstm", "lstm_bi", "gru", "linear", "conv2d", "batchnorm2d", "conv1d",
           "conv_transpose2d"]


def nchw_to_nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def jnet_outputs(name: str, sd: dict, x: np.ndarray) -> dict:
    """Convert the state dict, build the matching jnet layer and run it on x (torch layout);
    returns the outputs named and laid out as `make_torch_fixtures.outputs` names them."""
    if name in ("lstm", "gru"):
        convert = interop.lstm_from_torch if name == "lstm" else interop.gru_from_torch
        params = convert(sd)
        hidden = params["w_hh"].shape[0]
        layer = (L.LSTM if name == "lstm" else L.GRU)(hidden, True, True)
        y, carry = layer.apply(params, {}, x)[0]
        out = {"y": y}
        if name == "lstm":
            out["h"], out["c"] = carry[0][None], carry[1][None]
        else:
            out["h"] = carry[None]
        return out
    if name == "lstm_bi":
        params = interop.bidirectional_from_torch(sd, "LSTM")
        layer = L.Bidirectional(L.LSTM(params["forward"]["w_hh"].shape[0], True, True))
        y, (fw, bw) = layer.apply(params, {"forward": {}, "backward": {}}, x)[0]
        return {"y": y, "h": np.stack([fw[0], bw[0]]), "c": np.stack([fw[1], bw[1]])}
    if name == "linear":
        params = interop.dense_from_torch(sd)
        return {"y": L.Dense(params["w"].shape[1]).apply(params, {}, x)[0]}
    if name == "conv2d":
        params = interop.conv2d_from_torch(sd)
        kh, kw, _, out = params["w"].shape
        layer = L.Conv2D(out, (kh, kw), strides=(1, 2), padding=1)
        y, _ = layer.apply(params, {}, nchw_to_nhwc(x))
        return {"y": np.transpose(y, (0, 3, 1, 2))}
    if name == "conv1d":
        params = interop.conv1d_from_torch(sd)
        layer = L.Conv1D(params["w"].shape[2], 3, strides=2, padding=2, dilation=2,
                         feature_group_count=2)
        y, _ = layer.apply(params, {}, np.transpose(x, (0, 2, 1)))
        return {"y": np.transpose(y, (0, 2, 1))}
    if name == "conv_transpose2d":
        params = interop.conv_transpose2d_from_torch(sd)
        layer = L.ConvTranspose2D(params["w"].shape[3], (3, 2), strides=(2, 3), padding=1,
                                  output_padding=(1, 0))
        y, _ = layer.apply(params, {}, nchw_to_nhwc(x))
        return {"y": np.transpose(y, (0, 3, 1, 2))}
    if name == "batchnorm2d":
        params, state = interop.batchnorm_from_torch(sd)
        y, new_state = L.BatchNorm().apply(params, state, nchw_to_nhwc(x), train=False)
        assert new_state is state or jax.tree.all(jax.tree.map(np.array_equal, new_state, state))
        return {"y": np.transpose(y, (0, 3, 1, 2))}
    raise AssertionError(name)


def assert_matches_torch(name: str, sd: dict, x: np.ndarray, want: dict) -> None:
    got = jnet_outputs(name, sd, x)
    assert set(got) == set(want), (name, sorted(got), sorted(want))
    for key, value in want.items():
        np.testing.assert_allclose(np.asarray(got[key]), value, atol=1e-5, rtol=1e-5,
                                   err_msg=f"{name}: {key}")


def test_every_module_has_a_fixture():
    assert [p.stem.removeprefix("torch_") for p in FIXTURES] == sorted(MODULES)
    assert all(p.stat().st_size < 8_000 for p in FIXTURES)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture_parity(path):
    with np.load(path) as f:
        sd = {k.removeprefix("sd/"): f[k] for k in f.files if k.startswith("sd/")}
        want = {k: f[k] for k in f.files if not k.startswith("sd/") and k != "x"}
        x = f["x"]
    assert_matches_torch(path.stem.removeprefix("torch_"), sd, x, want)


def test_batchnorm_fixture_stats_are_not_defaults():
    """Parity on trained running stats: PyTorch stored its unbiased variance, copied as is."""
    with np.load(ROOT / "tests" / "fixtures" / "torch_batchnorm2d.npz") as f:
        assert np.abs(f["sd/running_mean"]).min() > 0.05
        assert np.abs(f["sd/running_var"] - 1).max() > 0.05


def _fixture_script():
    spec = importlib.util.spec_from_file_location(
        "make_torch_fixtures", ROOT / "scripts" / "make_torch_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("seed", [1, 2])
def test_live_torch_parity(seed):
    pytest.importorskip("torch")
    script = _fixture_script()
    for name, (module, x) in script.make_modules(seed).items():
        sd = {k: v.detach().numpy() for k, v in module.state_dict().items()}
        assert_matches_torch(name, sd, x.numpy(), script.outputs(module, x))


def test_live_torch_stacked_and_bias_free():
    torch = pytest.importorskip("torch")
    torch.manual_seed(3)
    lstm = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True, bias=False)
    model = torch.nn.Sequential()
    model.add_module("rnn", lstm)
    x = torch.randn(2, 6, 3)
    with torch.no_grad():
        want = lstm(x)[0].numpy()
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    stacked = L.serial(L.LSTM(4, return_sequences=True), L.LSTM(4, return_sequences=True))
    params = {f"lstm_{k}": interop.lstm_from_torch(sd, "rnn.", layer=k) for k in (0, 1)}
    got, _ = stacked.apply(params, {"lstm_0": {}, "lstm_1": {}}, x.numpy())
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_errors():
    sd = {"weight_ih_l0": np.zeros((16, 3)), "weight_hh_l0": np.zeros((16, 4))}
    with pytest.raises(jnet.ArgumentError, match="pass the right prefix"):
        interop.lstm_from_torch({"enc." + k: v for k, v in sd.items()})
    with pytest.raises(ValueError, match="expected weight_hh_l0 of shape"):
        interop.gru_from_torch(sd)  # an LSTM's (4H, H) weights are not a GRU's (3H, H)
    with pytest.raises(ValueError, match="proj_size"):
        interop.lstm_from_torch({**sd, "weight_hr_l0": np.zeros((2, 4))})
    with pytest.raises(ValueError, match="direction"):
        interop.lstm_from_torch(sd, direction="left")
    with pytest.raises(jnet.ArgumentError, match="weight_ih_l0_reverse"):
        interop.bidirectional_from_torch(sd, "LSTM")
    with pytest.raises(ValueError, match="4-D OIHW"):
        interop.conv2d_from_torch({"weight": np.zeros((3, 3))})
    params = interop.lstm_from_torch(sd)  # bias=False: zero biases
    np.testing.assert_array_equal(params["b"], np.zeros(16))
    assert interop.dense_from_torch({"weight": np.ones((2, 3))}).keys() == {"w"}


def test_float64_state_dicts_keep_their_dtype():
    """A double-precision module converts to float64 params (not silently float32)."""
    rng = np.random.default_rng(0)
    sd = {"weight": rng.normal(size=(3, 4)), "bias": rng.normal(size=(3,))}
    params = interop.dense_from_torch(sd)
    assert params["w"].dtype == np.float64 and params["b"].dtype == np.float64
    np.testing.assert_array_equal(params["w"], sd["weight"].T)
    assert interop.dense_from_torch({k: v.astype(np.float32) for k, v in sd.items()})[
        "w"].dtype == np.float32
    with pytest.raises(jnet.ArgumentError, match="floating-point 'weight'"):
        interop.dense_from_torch({"weight": np.ones((3, 4), np.int64)})


def test_torch_tensors_that_require_grad_or_are_bfloat16_convert_directly():
    """``module.state_dict(keep_vars=True)`` holds Parameters that require grad, and
    ``module.bfloat16()`` tensors NumPy cannot hold: both convert without the user's
    ``.detach().numpy()``, the values exact and bfloat16 kept."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    ref = {k: v.detach().numpy().copy() for k, v in lin.state_dict().items()}
    got = interop.dense_from_torch(lin.state_dict(keep_vars=True))
    np.testing.assert_array_equal(got["w"], ref["weight"].T)
    np.testing.assert_array_equal(got["b"], ref["bias"])
    half = interop.dense_from_torch(lin.bfloat16().state_dict())
    assert half["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(half["w"].astype(np.float32),
                                  lin.weight.detach().float().numpy().T)


def test_grouped_conv_transpose2d_is_an_argument_error():
    # (I, O / G, kh, kw) = (4, 3, 3, 3) with a bias of O = 6: groups = 2 (built from NumPy)
    sd = {"weight": np.ones((4, 3, 3, 3), np.float32), "bias": np.zeros(6, np.float32)}
    with pytest.raises(jnet.ArgumentError, match=r"grouped ConvTranspose2d \(groups=2\)"):
        interop.conv_transpose2d_from_torch(sd)


def test_a_module_instead_of_its_state_dict_is_a_type_error():
    with pytest.raises(jnet.ArgumentTypeError, match=r"state_dict\(\)"):
        interop.dense_from_torch(object())
