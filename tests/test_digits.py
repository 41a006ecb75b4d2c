"""End to end: a small CNN with BatchNorm and Dropout learns scikit-learn's digits."""

import jax
import numpy as np

import jnet
from jnet import layers as L


def test_cnn_with_batchnorm_and_dropout_reaches_95_percent_on_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images[..., None] / 16.0).astype(np.float32)
    y = data.target.astype(np.int32)
    x, xt, y, yt = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    model = L.serial(
        L.Input((8, 8, 1)),
        L.Conv2D(16, (3, 3), padding="SAME"), L.BatchNorm(), L.ReLU(), L.MaxPool2D((2, 2)),
        L.Flatten(), L.Dropout(0.2), L.Dense(10), L.ClassificationOutput(),
    )
    result = jnet.fit(model, jnet.optim.adam(1e-2), x, y, epochs=10, batch_size=64,
                      key=jax.random.key(0), verbose=0)
    assert result.history["loss"][-1] < 0.5 * result.history["loss"][0]
    test = jnet.evaluate(model, result.params, result.state, xt, yt)
    assert test["accuracy"] >= 0.95, test
    # the running BatchNorm statistics moved away from their initial values
    bn = result.state["batch_norm_2"]
    assert not np.allclose(jax.tree.leaves(bn)[0], jax.tree.leaves(model.init(
        jax.random.key(0))[2]["batch_norm_2"])[0])
