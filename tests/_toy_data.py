"""A small linearly separable classification set shared by the driver tests."""

import numpy as np


def toy_classification(n: int, features: int, classes: int, seed: int = 0):
    """(x float32 (n, features), y int32 (n,)): labels are the argmax of a random linear map,
    so a linear model can fit them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(features, classes)), axis=1).astype(np.int32)
    return x, y
