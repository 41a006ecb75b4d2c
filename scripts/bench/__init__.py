"""Parts of `scripts/bench.py`: hand-written JAX floors (`floors`) and the PyTorch side
(`torch_side`). Run the benchmark through `scripts/bench.py`."""
