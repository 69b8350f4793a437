"""equilab: equivariant deep learning in JAX — swappable tensor products, generative models,
reproduced tables."""

__version__ = "0.1.0"
