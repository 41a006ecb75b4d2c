import jax
import jax.numpy as jnp
import numpy as np

import jnet
from jnet import layers as L

rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32")                # 256 examples, 8 features
y = (x[:, 0] > 0).astype("int32") + 2 * (x[:, 1] > 0)          # 4 classes
x, xv, y, yv = x[:192], x[192:], y[:192], y[192:]              # training / validation

model = L.serial(L.Input((8,)), L.Dense(32), L.BatchNorm(), L.ReLU(), L.Dense(4),
                 L.ClassificationOutput())
key = jax.random.key(0)
opt = jnet.optim.adam(1e-2)
_, params, state = model.init(key)
opt_state = opt.init(params)
grads = jax.tree.map(jnp.ones_like, params)                    # any gradient pytree
