"""`jnet.training.Options` (jnet.training.options): the rarely used settings of `fit`."""

import pytest

import jnet


@pytest.mark.parametrize(("kw", "match"), [
    (dict(steps_per_call=0), "steps_per_call must be a positive int"),
    (dict(validation_batch_size=2.0), "validation_batch_size must be a positive int"),
    (dict(check_finite="no"), "check_finite must be True or False"),
    (dict(drop_remainder=1), "drop_remainder must be True or False"),
    (dict(scan="auto"), "scan must be True, False or None"),
])
def test_bad_values_are_named_when_the_options_are_made(kw, match):
    with pytest.raises(jnet.ArgumentError, match=match) as err:
        jnet.training.Options(**kw)
    assert str(err.value).startswith("jnet.training.Options: ")


def test_options_must_be_an_options_object():
    with pytest.raises(jnet.ArgumentTypeError, match=r"options must be a jnet\.training\.Options"):
        jnet.fit(None, "sgd", [[0.0]], [0], epochs=1, key=0, options={"scan": False})


def test_options_are_frozen_and_have_the_documented_defaults():
    o = jnet.training.Options()
    assert (o.scan, o.steps_per_call, o.validation_batch_size, o.check_finite,
            o.drop_remainder, o.params, o.state, o.opt_state) == (None, None, 256, True, False,
                                                                  None, None, None)
    with pytest.raises(AttributeError):
        o.scan = True  # type: ignore[misc]
