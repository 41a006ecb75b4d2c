"""The v0.2 keywords of `fit` (jnet.training.deprecated): each still works for one release,
warns with a DeprecationWarning naming its replacement, and does what the replacement does."""

import jax
import numpy as np
import pytest
from _toy_data import toy_classification

import jnet
from jnet import layers as L

N, F, C = 24, 4, 3


def _data():
    return toy_classification(N, F, C)


def _model():
    return L.serial(L.Input((F,)), L.Dense(C), L.ClassificationOutput())


def _fit(**kw):
    x, y = _data()
    kw = {"epochs": 2, "batch_size": 8, "key": 0, "verbose": 0, **kw}
    return jnet.fit(_model(), "sgd", x, y, **kw)


def _same(a, b):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


_, _PARAMS, _STATE = _model().init(jax.random.key(5))
_OPT_STATE = jnet.optim.get("sgd").init(_PARAMS)


@pytest.mark.parametrize(("name", "value"), [
    ("scan", False),
    ("steps_per_call", 1),
    ("validation_batch_size", 5),
    ("check_finite", False),
    ("drop_remainder", True),
    ("params", _PARAMS),
    ("state", _STATE),
    ("opt_state", _OPT_STATE),
])
def test_a_moved_option_warns_and_equals_options(name, value):
    with pytest.warns(DeprecationWarning, match=rf"fit\({name}=\.\.\.\) is deprecated.*"
                      rf"options=jnet\.training\.Options\({name}=\.\.\.\)"):
        old = _fit(validation_data=_data(), **{name: value})
    new = _fit(validation_data=_data(), options=jnet.training.Options(**{name: value}))
    _same(old.params, new.params)
    assert old.history.history == new.history.history


def test_the_checkpoint_keywords_warn_and_equal_the_checkpoint_callback(tmp_path):
    kw = dict(checkpoint_dir=tmp_path / "old", checkpoint_every=2, keep_checkpoints=1)
    for name in kw:
        with pytest.warns(DeprecationWarning, match=rf"fit\({name}=\.\.\.\).*"
                          r"jnet\.callbacks\.Checkpoint\(dir"):
            _fit(epochs=4, **kw)
    checkpoint = jnet.callbacks.Checkpoint(tmp_path / "new", every=2, keep=1)
    _fit(epochs=4, callbacks=[checkpoint])
    names = lambda d: sorted(p.name for p in d.glob("*.safetensors"))  # noqa: E731
    assert names(tmp_path / "old") == names(tmp_path / "new") == ["ckpt_000004.safetensors"]
    with pytest.warns(DeprecationWarning, match=r"fit\(resume=\.\.\.\)"):
        resumed = _fit(epochs=5, checkpoint_dir=tmp_path / "old", resume=True)
    assert resumed.epoch == 5
    _same(resumed.params, _fit(epochs=5).params)


def test_resume_without_checkpoint_dir_is_an_error():
    with pytest.warns(DeprecationWarning), pytest.raises(
            jnet.ArgumentError, match=r"resume=True needs checkpoint_dir.*Checkpoint\(dir"):
        _fit(resume=True)


@pytest.mark.parametrize(("kw", "match"), [
    (dict(checkpoint_every=0), "checkpoint_every must be a positive int"),
    (dict(keep_checkpoints=0), "keep_checkpoints must be a positive int"),
])
def test_bad_old_values_are_named_by_their_old_keyword(kw, match):
    with pytest.warns(DeprecationWarning), pytest.raises(jnet.ArgumentError, match=match):
        _fit(**kw)


def test_live_plot_warns_and_writes_the_png(tmp_path):
    path = tmp_path / "run.png"
    with pytest.warns(DeprecationWarning, match=r"jnet\.callbacks\.LivePlot\(path\)"):
        _fit(live_plot=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_live_plot_true_draws_into_the_checkpoint_directory(tmp_path):
    with pytest.warns(DeprecationWarning):
        _fit(epochs=1, live_plot=True, checkpoint_dir=tmp_path)
    assert (tmp_path / "history.png").exists()


def test_an_unknown_keyword_is_a_jnet_error():
    with pytest.raises(jnet.ArgumentTypeError, match="unexpected keyword argument 'epoch'"):
        _fit(epoch=3)


def test_fit_has_at_most_20_parameters():
    import inspect

    assert len(inspect.signature(jnet.fit).parameters) <= 20
