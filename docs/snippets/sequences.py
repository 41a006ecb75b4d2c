import jax
import jax.numpy as jnp

import jnet
from jnet import layers as L

N, T, F = 3, 8, 5                                   # 3 sequences of 8 steps, 5 features
model = L.serial(L.LSTM(16, return_sequences=True), L.Dense(4))
_, params, state = model.init(jax.random.key(0), (T, F))
x = jax.random.normal(jax.random.key(1), (N, T, F))
